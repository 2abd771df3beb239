import { Option, type Command } from 'commander';
import {
  createMigration,
  ExitCode,
  migrateShards,
  migrationStatus,
  type MigrateEvent,
  type MigrationStatusReport,
  type ShardMigration,
  type ShardResult,
} from '../../index.js';
import { err, globals, mapOf, out, outJson, outTable, timeoutOf, type CliContext } from '../context.js';
import { durationOption, wholeNumberOption } from '../options.js';
import { createProgress, type Progress } from '../progress.js';

interface MigrateOpts {
  to?: string;
  shard?: string[];
  concurrency?: number;
  canary?: string;
  dryRun?: boolean;
  failFast?: boolean;
  /** ms, parsed by the option's parser. */
  lockTimeout: number;
}

/** Exit code of a migrate run: 0 all good, 3 drift, 6 locked, 1 any other failure, 2 was thrown earlier. */
export function migrateExitCode(results: ShardResult<ShardMigration>[]): number {
  if (results.some((r) => r.status === 'ok' && r.value.status === 'drift')) return ExitCode.Drift;
  if (results.some((r) => r.status === 'failed' && r.error.code === 'LOCKED')) return ExitCode.Locked;
  if (
    results.some(
      (r) =>
        r.status === 'failed' ||
        r.status === 'skipped' ||
        (r.status === 'ok' && (r.value.status === 'failed' || r.value.status === 'interrupted')),
    )
  )
    return ExitCode.Failed;
  return ExitCode.Ok;
}

function describe(r: ShardResult<ShardMigration>): string[] {
  if (r.status === 'skipped') return [`${r.shard}: skipped (${r.reason})`];
  if (r.status === 'failed')
    return [
      `${r.error.message.startsWith(`shard ${r.shard}:`) ? r.error.message : `${r.shard}: ${r.error.message}`}${r.error.hint ? ` (hint: ${r.error.hint})` : ''}`,
    ];
  const v = r.value;
  const lines: string[] = [];
  if (v.status === 'dry-run') lines.push(`${r.shard}: would apply ${v.pending.join(', ')}`);
  else if (v.status === 'up-to-date') lines.push(`${r.shard}: up to date`);
  else if (v.applied.length)
    lines.push(`${r.shard}: applied ${v.applied.map((a) => `${a.id} (${a.ms} ms)`).join(', ')}`);
  if (v.status === 'drift') for (const d of v.drift ?? []) lines.push(`${r.shard}: drift: ${d.message}`);
  if (v.failure) {
    const f = v.failure;
    lines.push(
      `${r.shard}: FAILED ${f.file}${f.line ? `:${f.line}:${f.column}` : ''}: ${f.message}${f.pg?.code ? ` (SQLSTATE ${f.pg.code})` : ''}`,
    );
    if (f.pg?.detail) lines.push(`${r.shard}:   detail: ${f.pg.detail}`);
    if (f.hint) lines.push(`${r.shard}:   hint: ${f.hint}`);
    lines.push(`${r.shard}:   not applied: ${v.pending.join(', ')}`);
  }
  if (v.status === 'interrupted') lines.push(`${r.shard}: interrupted; not applied: ${v.pending.join(', ')}`);
  return lines;
}

/** Live progress per shard: what each shard is doing now. */
function migrateProgress(progress: Progress): (e: MigrateEvent) => void {
  const state = new Map<string, string>();
  return (e) => {
    if (e.phase === 'locking' || e.phase === 'done') return;
    state.set(
      e.shard,
      e.phase === 'applying'
        ? `applying ${e.file}`
        : e.phase === 'applied'
          ? `applied ${e.file} (${e.ms} ms)`
          : e.phase,
    );
    progress.update(`${e.shard}: ${state.get(e.shard)}`, e);
  };
}

/** Runs `fn` with Ctrl-C turned into an abort of `controller` (running migrations roll back). */
async function withSigintAbort<T>(progress: Progress, controller: AbortController, fn: () => Promise<T>): Promise<T> {
  const onSigint = () => {
    progress.update('interrupted: cancelling running migrations (their transactions roll back)');
    controller.abort();
  };
  process.once('SIGINT', onSigint);
  try {
    return await fn();
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}

function migrateJson(ok: boolean, results: ShardResult<ShardMigration>[]): unknown {
  return {
    ok,
    shards: results.map((r) =>
      r.status === 'ok'
        ? { shard: r.shard, ...r.value }
        : r.status === 'failed'
          ? { shard: r.shard, status: 'failed', error: r.error.toJSON() }
          : { shard: r.shard, status: 'skipped', reason: r.reason },
    ),
  };
}

async function migrateAction(opts: MigrateOpts, cmd: Command, ctx: CliContext): Promise<void> {
  const map = await mapOf(cmd, ctx);
  const json = globals(cmd).json;
  const progress = await createProgress(cmd, ctx);
  const controller = new AbortController();
  const results = await withSigintAbort(progress, controller, () =>
    migrateShards(map, {
      ...(opts.to !== undefined ? { to: opts.to } : {}),
      ...(opts.shard ? { shards: opts.shard } : {}),
      ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
      ...(opts.canary ? { canary: opts.canary } : {}),
      dryRun: opts.dryRun ?? false,
      failFast: opts.failFast ?? false,
      lockTimeoutMs: opts.lockTimeout,
      timeoutMs: timeoutOf(cmd),
      signal: controller.signal,
      onProgress: migrateProgress(progress),
    }),
  );
  ctx.exitCode = migrateExitCode(results);
  progress.done();
  if (json) return outJson(ctx, migrateJson(ctx.exitCode === 0, results));
  for (const r of results) {
    const bad = r.status !== 'ok' || ['failed', 'drift', 'interrupted'].includes(r.value.status);
    for (const line of describe(r)) (bad ? err : out)(ctx, line);
  }
  if (controller.signal.aborted)
    err(
      ctx,
      'interrupted: running transactions were rolled back; the ledger shows what was applied (shardctl migrate status)',
    );
}

const STATUS_MARK: Record<string, string> = {
  applied: 'applied',
  pending: 'pending',
  'checksum-changed': 'CHANGED',
  'file-missing': 'NO FILE',
  'out-of-order': 'OUT OF ORDER',
};

async function showStatus(ctx: CliContext, report: MigrationStatusReport): Promise<void> {
  const ids = [
    ...new Set([
      ...report.files.map((f) => f.id),
      ...report.shards.flatMap((s) => (s.status === 'ok' ? Object.keys(s.value.cells) : [])),
    ]),
  ];
  await outTable(
    ctx,
    ['shard', ...ids],
    report.shards.map((s) =>
      s.status === 'ok'
        ? [s.shard, ...ids.map((id) => STATUS_MARK[s.value.cells[id] ?? ''] ?? '')]
        : [s.shard, ...ids.map(() => (s.status === 'failed' ? 'unreachable' : ''))],
    ),
  );
  for (const s of report.shards) {
    if (s.status === 'ok' && s.value.lockedBy)
      out(
        ctx,
        `${s.shard}: a migrate run holds the lock: pid ${s.value.lockedBy.pid} (${s.value.lockedBy.applicationName}) since ${s.value.lockedBy.since}`,
      );
    if (s.status === 'failed') out(ctx, `${s.shard}: ${s.error.message}`);
  }
  out(ctx, report.summary);
}

function registerStatus(migrate: Command, ctx: CliContext): void {
  migrate
    .command('status')
    .description('matrix of shards and migrations (applied, pending, changed) and a summary line')
    .option('--check', 'exit 0 when up to date, 4 when pending, 3 on drift, 5 when a shard is unreachable')
    .action(async (opts: { check?: boolean }, cmd: Command) => {
      const map = await mapOf(cmd, ctx);
      const report = await migrationStatus(map, { timeoutMs: timeoutOf(cmd) });
      if (opts.check) ctx.exitCode = report.exitCode;
      else if (report.exitCode === ExitCode.Partial) ctx.exitCode = ExitCode.Failed;
      if (globals(cmd).json) return outJson(ctx, report);
      await showStatus(ctx, report);
    });
}

function registerCreate(migrate: Command, ctx: CliContext): void {
  migrate
    .command('create')
    .description('write a new migration file with the next id')
    .argument('<name>', 'what it does, e.g. "add invoice index"')
    .option('--no-transaction', 'mark it to run outside a transaction (CREATE INDEX CONCURRENTLY)')
    .action(async (name: string, opts: { transaction?: boolean }, cmd: Command) => {
      const map = await mapOf(cmd, ctx);
      const file = await createMigration(map, name, { noTransaction: opts.transaction === false });
      if (globals(cmd).json) return outJson(ctx, { file });
      out(ctx, `created ${file}`);
    });
}

/** `shardctl migrate`, `migrate status`, `migrate create`. */
export function registerMigrate(program: Command, ctx: CliContext): void {
  const migrate = program
    .command('migrate')
    .description('apply pending migrations to every shard, in parallel, with a per-shard ledger')
    .option('--to <id>', 'apply up to and including this migration')
    .option('--shard <name...>', 'only these shards')
    .option('--concurrency <n>', 'shards at once (default: all, at most 16)', wholeNumberOption('--concurrency'))
    .option('--canary <shard>', 'migrate this shard first; the rest only if it succeeded')
    .option('--dry-run', 'print per shard what would run')
    .option('--fail-fast', 'stop every shard at the first failure')
    .addOption(
      new Option('--lock-timeout <duration>', "how long to wait for another run's lock on a shard, e.g. 10s")
        .argParser(durationOption('--lock-timeout', { minMs: 0 }))
        .default(10_000, '10s'),
    )
    .action((opts: MigrateOpts, cmd: Command) => migrateAction(opts, cmd, ctx));
  registerStatus(migrate, ctx);
  registerCreate(migrate, ctx);
}
