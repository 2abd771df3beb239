import type { Command } from 'commander';
import { ExitCode, execEverywhere, ShardctlError, type ExecReport } from '../../index.js';
import { confirm } from '../confirm.js';
import { usage } from '../options.js';
import { err, globals, mapOf, out, outJson, outTable, timeoutOf, type CliContext } from '../context.js';

interface ExecOpts {
  reference?: boolean;
  allShards?: boolean;
  dryRun?: boolean;
  yes?: boolean;
  param?: string[];
}

async function showExec(ctx: CliContext, report: ExecReport, dryRun: boolean): Promise<void> {
  await outTable(
    ctx,
    ['shard', dryRun ? 'rows it would change' : 'rows changed'],
    report.shards.map((s) => [s.shard, s.rows]),
  );
  if (dryRun) return out(ctx, `dry run: rolled back on ${report.shards.length} shard(s); nothing changed`);
  out(
    ctx,
    `committed on ${report.shards.length} shard(s) in one transaction${report.transactionId ? ` (two-phase commit ${report.transactionId})` : ''}`,
  );
  if (report.unfinished.length > 0)
    err(
      ctx,
      `committed, but ${report.unfinished.join(', ')} could not be told yet: run \`shardctl recover\` to finish there`,
    );
}

/** Asks before a write on every shard; refuses without a terminal unless --yes. */
async function confirmed(ctx: CliContext, opts: ExecOpts, shards: number): Promise<boolean> {
  if (opts.yes || opts.dryRun) return true;
  const ok = await confirm(ctx, `run this statement on all ${shards} shards in one two-phase commit?`);
  if (ok === undefined)
    throw new ShardctlError('exec writes every shard: pass --yes to run it without a terminal (or --dry-run first)', {
      code: 'CONFIRM_NEEDED',
      exitCode: ExitCode.Usage,
    });
  return ok;
}

/** `shardctl exec "<DML>" --reference`: one statement on every shard, all-or-nothing. */
export function registerExec(program: Command, ctx: CliContext): void {
  program
    .command('exec')
    .description('run one statement on every shard in one two-phase commit: committed everywhere or nowhere')
    .argument('<sql>', 'the statement (INSERT, UPDATE, DELETE, ...)')
    .option('--reference', 'it writes reference tables: it must change the same number of rows on every shard')
    .option('--all-shards', 'any statement; the row counts may differ between shards')
    .option('-p, --param <value...>', 'parameters $1, $2, ... (text)')
    .option('--dry-run', 'run it and roll back everywhere: print the rows it would change per shard')
    .option('--yes', 'do not ask for confirmation')
    .action(async (statement: string, opts: ExecOpts, cmd: Command) => {
      if (Boolean(opts.reference) === Boolean(opts.allShards))
        throw usage('exec needs exactly one of --reference and --all-shards');
      const map = await mapOf(cmd, ctx);
      if (!(await confirmed(ctx, opts, map.shards.length))) return out(ctx, 'nothing changed');
      const report = await execEverywhere(map, statement, {
        mode: opts.reference ? 'reference' : 'all-shards',
        dryRun: Boolean(opts.dryRun),
        params: opts.param ?? [],
        timeoutMs: timeoutOf(cmd),
      });
      if (globals(cmd).json) return outJson(ctx, report);
      await showExec(ctx, report, Boolean(opts.dryRun));
    });
}
