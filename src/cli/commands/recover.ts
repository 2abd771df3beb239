import type { Command } from 'commander';
import { Option } from 'commander';
import { ExitCode, recoverTransactions, type RecoverReport } from '../../index.js';
import { durationOption } from '../options.js';
import { err, globals, mapOf, out, outJson, outTable, timeoutOf, type CliContext } from '../context.js';

interface RecoverOpts {
  wait?: number;
  minAge?: number;
  dryRun?: boolean;
}

async function showReport(ctx: CliContext, report: RecoverReport): Promise<void> {
  if (report.transactions.length > 0)
    await outTable(
      ctx,
      ['shard', 'prepared transaction', 'age', 'decision', 'action'],
      report.transactions.map((t) => [
        t.shard,
        t.gid,
        `${t.ageSeconds.toFixed(1)} s`,
        t.decision,
        t.error ? `${t.action}: ${t.error}` : t.action,
      ]),
    );
  const count = (a: string) => report.transactions.filter((t) => t.action === a).length;
  out(
    ctx,
    `recover: ${report.transactions.length} prepared transaction(s): ${count('committed')} committed, ${count('rolled-back')} rolled back, ${count('left-pending')} pending; ${report.pruned} decision record(s) pruned`,
  );
  for (const u of report.unreachable) err(ctx, `${u.shard}: not checked: ${u.error}`);
  if (count('left-pending') > 0)
    err(
      ctx,
      "pending: a coordinator still holds the decision open (its session on the catalog shard, application_name 'shardctl 2pc'); run recover again, or end that session",
    );
}

/** `shardctl recover`: finishes the two-phase commits that a crash left prepared. */
export function registerRecover(program: Command, ctx: CliContext): void {
  program
    .command('recover')
    .description(
      'commit or roll back every shardctl transaction left prepared on any shard, from its decision record on the catalog shard',
    )
    .addOption(
      new Option(
        '--wait <duration>',
        'how long to wait for a coordinator still deciding, per transaction (default 2s)',
      ).argParser(durationOption('--wait', { minMs: 0 })),
    )
    .addOption(
      new Option('--min-age <duration>', 'leave transactions prepared more recently than this (default 0)').argParser(
        durationOption('--min-age', { minMs: 0 }),
      ),
    )
    .option('--dry-run', 'show what would be committed or rolled back; change nothing')
    .action(async (opts: RecoverOpts, cmd: Command) => {
      const map = await mapOf(cmd, ctx);
      const report = await recoverTransactions(map, {
        ...(opts.wait !== undefined ? { waitMs: opts.wait } : {}),
        ...(opts.minAge !== undefined ? { minAgeMs: opts.minAge } : {}),
        dryRun: Boolean(opts.dryRun),
        timeoutMs: timeoutOf(cmd),
      });
      ctx.exitCode = report.ok ? ExitCode.Ok : ExitCode.Failed;
      if (globals(cmd).json) return outJson(ctx, report);
      await showReport(ctx, report);
    });
}
