import type { Command } from 'commander';
import {
  applyFixes,
  copyReferenceTable,
  ExitCode,
  ShardctlError,
  VERIFY_CHECKS,
  verifyCluster,
  type Finding,
  type VerifyCheck,
  type VerifyReport,
  type ShardMap,
} from '../../index.js';
import { confirm } from '../confirm.js';
import { err, globals, mapOf, out, outJson, outTable, timeoutOf, type CliContext } from '../context.js';

interface VerifyOpts {
  shard?: string[];
  tenant?: string;
  only?: string[];
  fix?: boolean;
  yes?: boolean;
  from?: string;
}

/** The report's names of checks as `--only` takes them (`schema`, not `schema-drift`), so they can be pasted. */
const ONLY_NAME: Record<string, string> = { 'schema-drift': 'schema', 'migration-drift': 'migrations' };
const checkName = (check: string) => ONLY_NAME[check] ?? check;

type Fixes = Parameters<typeof applyFixes>[1];
type Applied = Awaited<ReturnType<typeof applyFixes>>;

/** --fix: lists the repairs, asks (unless --yes), applies them; undefined when nothing was applied. */
async function confirmAndFix(
  map: ShardMap,
  fixes: Fixes,
  opts: VerifyOpts,
  cmd: Command,
  ctx: CliContext,
): Promise<Applied | undefined> {
  if (!opts.fix || fixes.length === 0) return undefined;
  if (!globals(cmd).json) {
    out(ctx, `fixes (${fixes.length}):`);
    for (const f of fixes) out(ctx, `  ${f.shard}: ${f.description}: ${f.sql}`);
  }
  const ok = opts.yes || (await confirm(ctx, `apply these ${fixes.length} fixes?`));
  if (ok === undefined) {
    throw new ShardctlError('--fix needs confirmation: pass --yes to apply the listed fixes without a terminal', {
      code: 'CONFIRM_NEEDED',
      exitCode: ExitCode.Usage,
      details: { fixes },
    });
  }
  return ok ? applyFixes(map, fixes, { timeoutMs: timeoutOf(cmd) }) : undefined;
}

async function showFindings(ctx: CliContext, report: VerifyReport, fixes: Fixes, applied: Applied | undefined) {
  await outTable(
    ctx,
    ['finding', 'shard', 'table', 'tenant', 'detail'],
    report.findings.slice(0, 200).map((f: Finding) => [f.kind, f.shard, f.table, f.tenant, f.message]),
  );
  if (report.findings.length > 200) out(ctx, `... and ${report.findings.length - 200} more (use --json for all)`);
  out(ctx, `verify: ${report.findings.length} finding(s) on ${report.shards.length} shard(s)`);
  if (applied)
    for (const a of applied)
      err(
        ctx,
        `${a.status === 'ok' ? 'fixed' : 'fix failed'}: ${a.fix.shard}: ${a.fix.description}${a.error ? `: ${a.error}` : ''}`,
      );
  else if (fixes.length > 0) err(ctx, `${fixes.length} finding(s) can be repaired with --fix`);
}

async function verifyAction(opts: VerifyOpts, cmd: Command, ctx: CliContext): Promise<void> {
  const map = await mapOf(cmd, ctx);
  const report = await verifyCluster(map, {
    ...(opts.shard ? { shards: opts.shard } : {}),
    ...(opts.tenant !== undefined ? { tenant: opts.tenant } : {}),
    ...(opts.only ? { only: opts.only as VerifyCheck[] } : {}),
    timeoutMs: timeoutOf(cmd),
  });
  const fixes = report.findings.flatMap((f) => (f.fix ? [f.fix] : []));
  const applied = await confirmAndFix(map, fixes, opts, cmd, ctx);
  const copied = await fixReferenceTables(map, report, opts, cmd, ctx);
  ctx.exitCode = report.ok ? ExitCode.Ok : ExitCode.Failed;
  if (globals(cmd).json)
    return outJson(ctx, { ...report, ...(applied ? { fixes: applied } : {}), ...(copied ? { copied } : {}) });
  if (report.ok) {
    out(
      ctx,
      `verify: ${report.shards.length} shard(s) consistent (checks: ${report.checks.map(checkName).join(', ')}) in ${report.durationMs} ms`,
    );
    return;
  }
  await showFindings(ctx, report, opts.fix ? [] : fixes, applied);
}

/**
 * --fix --from SHARD: copies each drifted reference table from the shard the operator names to every
 * other shard, one two-phase commit per table. Without --from, says how (shardctl never picks the copy).
 */
async function fixReferenceTables(
  map: ShardMap,
  report: VerifyReport,
  opts: VerifyOpts,
  cmd: Command,
  ctx: CliContext,
): Promise<Awaited<ReturnType<typeof copyReferenceTable>>[] | undefined> {
  const tables = [
    ...new Set(report.findings.flatMap((f) => (f.kind === 'reference-drift' && f.table ? [f.table] : []))),
  ];
  if (!opts.fix || tables.length === 0) return undefined;
  if (!opts.from) {
    err(
      ctx,
      `reference table(s) ${tables.join(', ')} differ between shards: repair with --fix --from SHARD (the shard whose copy is right)`,
    );
    return undefined;
  }
  const ok = opts.yes || (await confirm(ctx, `copy ${tables.join(', ')} from ${opts.from} to every other shard?`));
  if (ok === undefined)
    throw new ShardctlError('--fix --from needs confirmation: pass --yes to copy without a terminal', {
      code: 'CONFIRM_NEEDED',
      exitCode: ExitCode.Usage,
    });
  if (!ok) return undefined;
  const done = [];
  for (const t of tables) {
    const r = await copyReferenceTable(map, t, opts.from, { timeoutMs: timeoutOf(cmd) });
    if (!globals(cmd).json)
      err(
        ctx,
        `copied ${t} (${r.rows} rows) from ${opts.from}: ${r.shards.map((s) => `${s.shard} ${s.changed} changed`).join(', ')}`,
      );
    done.push(r);
  }
  return done;
}

/** `shardctl verify`: proves the cluster consistent, or lists what is not. */
export function registerVerify(program: Command, ctx: CliContext): void {
  program
    .command('verify')
    .description('check every row is on its shard, schemas and ledgers agree, and nothing is left behind (reads only)')
    .option('--shard <name...>', 'only these shards')
    .option('--tenant <id>', 'only this tenant: where its rows are, its moves and fences')
    .option('--only <check...>', `only these checks: ${VERIFY_CHECKS.join(', ')}`)
    .option('--fix', 'repair what is safe (orphaned replication objects, INVALID indexes): list, confirm, apply')
    .option('--yes', 'apply the listed fixes without asking')
    .option(
      '--from <shard>',
      'with --fix: copy drifted reference tables from this shard to the others (one two-phase commit)',
    )
    .action((opts: VerifyOpts, cmd: Command) => verifyAction(opts, cmd, ctx));
}
