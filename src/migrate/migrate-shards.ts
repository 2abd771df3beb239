/*
 * Why not Kysely's Migrator: it keeps names but no checksums (an edited applied file goes unnoticed),
 * has one global switch for transactions rather than a per-file no-transaction directive, and waits on
 * its lock instead of polling pg_try_advisory_lock, which deadlocks with CREATE INDEX CONCURRENTLY.
 * This runner keeps a ledger with checksums per shard, runs each file in its own transaction unless the
 * file says otherwise, and only ever polls for the lock.
 */
import type { PoolClient } from 'pg';
import type { Shard, ShardMap } from '../config/shard-map.js';
import { ensureCatalogSchema } from '../catalog/catalog-schema.js';
import { LockKey } from '../db/lock-keys.js';
import { forEachShard, type ShardResult } from '../db/for-each-shard.js';
import { lockHolder, ShardPools, withAdvisoryLock, type LockHolder } from '../db/shard-pools.js';
import { ExitCode, fromDriverError, ShardctlError, type PgErrorFields } from '../errors.js';
import { writeRuleState } from '../catalog/rule-state.js';
import { invalidIndexes } from '../catalog/leftovers.js';
import { withTransaction } from '../db/transaction.js';
import { SHARDCTL_VERSION } from '../version.js';
import { compareIds, lineColumn, readMigrationFolder, type MigrationFile } from './migration-files.js';

/** The advisory lock key of migrate runs ({@link LockKey.migrate}), for library users that inspect it. */
export const MIGRATE_LOCK_KEY = LockKey.migrate;

/** A ledger row. */
export interface AppliedMigration {
  id: string;
  name: string;
  checksum: string;
  appliedAt: string;
  durationMs: number;
}

/** A reason a shard's history cannot be migrated safely. */
export interface Drift {
  kind: 'checksum-changed' | 'file-missing' | 'out-of-order';
  id: string;
  message: string;
}

/** Where a failed file failed. */
export interface MigrationFailure {
  id: string;
  file: string;
  message: string;
  pg?: PgErrorFields;
  /** Line and column in the file, from PostgreSQL's position. */
  line?: number;
  column?: number;
  /** INVALID indexes the failed file left behind (failed CREATE INDEX CONCURRENTLY). */
  invalidIndexes?: string[];
  hint?: string;
}

/** What `migrate` did on one shard. */
export interface ShardMigration {
  status: 'applied' | 'up-to-date' | 'dry-run' | 'failed' | 'drift' | 'interrupted';
  applied: { id: string; name: string; ms: number }[];
  /** Pending files not applied (all of them on dry-run; the rest after a failure). */
  pending: string[];
  failure?: MigrationFailure;
  drift?: Drift[];
}

/** Progress of a migrate run. */
export interface MigrateEvent {
  shard: string;
  phase: 'locking' | 'applying' | 'applied' | 'failed' | 'done';
  id?: string;
  file?: string;
  ms?: number;
}

/** Options of {@link migrateShards}. */
export interface MigrateOptions {
  /** Apply up to and including this id. Default: all. */
  to?: string;
  /** Only these shards. Default: all. */
  shards?: string[];
  /** Shards at once. Default: all shards, at most 16. */
  concurrency?: number;
  /** Migrate this shard first; the others only if it succeeded. */
  canary?: string;
  /** Say per shard what would run; change nothing. */
  dryRun?: boolean;
  /** Stop every shard at the first failure anywhere. */
  failFast?: boolean;
  /** How long to keep polling for each shard's migrate lock, ms. Default 10000. */
  lockTimeoutMs?: number;
  /** Connection timeout, ms. Default 5000. */
  timeoutMs?: number;
  /** Stops the run: running statements are cancelled (their transactions roll back), nothing new starts. */
  signal?: AbortSignal;
  onProgress?: (e: MigrateEvent) => void;
}

/** Reads a shard's ledger with timestamps (empty when shardctl never migrated it). */
export async function readLedgerRows(client: PoolClient): Promise<AppliedMigration[] | null> {
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass('shardctl.migrations')::text AS t");
  if (!exists.rows[0]?.t) return null;
  const r = await client.query<{ id: string; name: string; checksum: string; applied_at: Date; duration_ms: number }>(
    'SELECT id, name, checksum, applied_at, duration_ms FROM shardctl.migrations',
  );
  return r.rows
    .map((x) => ({
      id: x.id,
      name: x.name,
      checksum: x.checksum,
      appliedAt: new Date(x.applied_at).toISOString(),
      durationMs: x.duration_ms,
    }))
    .sort((a, b) => compareIds(a.id, b.id));
}

/**
 * Compares a ledger with the files: an applied file whose checksum changed, a ledger entry whose file
 * is gone, and a file never applied whose id is lower than an applied one (history out of order).
 *
 * @example
 * findDrift(ledger, files) // [{ kind: 'checksum-changed', id: '0003', ... }]
 */
export function findDrift(ledger: AppliedMigration[], files: MigrationFile[]): Drift[] {
  const byId = new Map(files.map((f) => [f.id, f]));
  const applied = new Set(ledger.map((e) => e.id));
  const out: Drift[] = [];
  for (const e of ledger) {
    const f = byId.get(e.id);
    if (!f) out.push({ kind: 'file-missing', id: e.id, message: `${e.id}_${e.name} was applied but its file is gone` });
    else if (f.checksum !== e.checksum)
      out.push({
        kind: 'checksum-changed',
        id: e.id,
        message: `${f.file} changed after it was applied (applied ${e.checksum.slice(0, 12)}, file now ${f.checksum.slice(0, 12)})`,
      });
  }
  const maxApplied = ledger.reduce<string | undefined>(
    (m, e) => (m === undefined || compareIds(e.id, m) > 0 ? e.id : m),
    undefined,
  );
  if (maxApplied !== undefined) {
    for (const f of files) {
      if (!applied.has(f.id) && compareIds(f.id, maxApplied) < 0)
        out.push({
          kind: 'out-of-order',
          id: f.id,
          message: `${f.file} is not applied but ${maxApplied} after it is: history out of order`,
        });
    }
  }
  return out;
}

function failureOf(e: unknown, f: MigrationFile, shard: string): MigrationFailure {
  const err = fromDriverError(e, { shard });
  const pos = err.pg?.position;
  const lc = pos !== undefined ? lineColumn(f.sql, pos) : undefined;
  const raw = (e as { message?: string }).message ?? err.message;
  return {
    id: f.id,
    file: f.file,
    message: raw,
    ...(err.pg ? { pg: err.pg } : {}),
    ...(lc ? { line: lc.line, column: lc.column } : {}),
    ...(err.pg?.hint ? { hint: err.pg.hint } : {}),
  };
}

/** What one shard's run needs besides its connection. */
interface ShardRun {
  pools: ShardPools;
  map: ShardMap;
  shard: Shard;
  files: MigrationFile[];
  options: MigrateOptions;
  stopAll: () => boolean;
  emit: (e: Omit<MigrateEvent, 'shard'>) => void;
}

const LEDGER_INSERT =
  'INSERT INTO shardctl.migrations (id, name, checksum, duration_ms, shardctl_version) VALUES ($1, $2, $3, $4, $5)';

function ledgerValues(f: MigrationFile, t0: number): unknown[] {
  return [f.id, f.name, f.checksum, Math.round(performance.now() - t0), SHARDCTL_VERSION];
}

/**
 * Runs one file and records it in the ledger: in one transaction with the map's lock and statement
 * timeouts, or, for a `no-transaction` file (CREATE INDEX CONCURRENTLY cannot run inside one), as
 * plain statements with session timeouts reset afterwards.
 */
async function applyFile(c: PoolClient, f: MigrationFile, map: ShardMap, t0: number): Promise<void> {
  // Settings as text, not lockTimeoutMs/statementTimeoutMs: 0 here means "no limit", as PostgreSQL reads it.
  const timeouts = {
    lock_timeout: `${map.migrate.lockTimeoutMs}`,
    statement_timeout: `${map.migrate.statementTimeoutMs}`,
  };
  if (!f.noTransaction) {
    await withTransaction(
      c,
      async () => {
        await c.query(f.sql);
        await c.query(LEDGER_INSERT, ledgerValues(f, t0));
      },
      { settings: timeouts },
    );
    return;
  }
  await c.query('SELECT set_config($1, $2, false), set_config($3, $4, false)', [
    'lock_timeout',
    timeouts.lock_timeout,
    'statement_timeout',
    timeouts.statement_timeout,
  ]);
  try {
    await c.query(f.sql);
  } finally {
    await c.query('RESET lock_timeout; RESET statement_timeout').catch(() => undefined);
  }
  await c.query(LEDGER_INSERT, ledgerValues(f, t0));
}

/** Runs `fn` on `c` so that aborting `signal` cancels its running statement from a second connection. */
async function cancellable<T>(run: ShardRun, c: PoolClient, fn: () => Promise<T>): Promise<T> {
  const signal = run.options.signal;
  if (!signal) return fn();
  const pid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  const cancel = () =>
    void run.pools
      .withShard(run.shard.name, (k) => k.query('SELECT pg_cancel_backend($1)', [pid]))
      .catch(() => undefined);
  signal.addEventListener('abort', cancel);
  try {
    return await fn();
  } finally {
    signal.removeEventListener('abort', cancel);
  }
}

/** The failure of `f`, naming the INVALID indexes a failed concurrent build left behind. */
async function failureWithLeftovers(
  c: PoolClient,
  e: unknown,
  f: MigrationFile,
  shard: string,
  invalidBefore: Set<string> | undefined,
): Promise<MigrationFailure> {
  const failure = failureOf(e, f, shard);
  if (!invalidBefore) return failure;
  const left = (await invalidIndexes(c)).map((x) => x.index).filter((x) => !invalidBefore.has(x));
  if (left.length > 0) {
    failure.invalidIndexes = left;
    failure.hint = `the failed build left INVALID index(es) ${left.join(', ')}: drop them with DROP INDEX CONCURRENTLY ${left.join(', ')}; then fix the file and run migrate again (or let \`shardctl verify --fix\` drop them)`;
  }
  return failure;
}

/** Applies `pending` in order; stops at the first failure, an abort, or a fail-fast stop elsewhere. */
async function applyPending(run: ShardRun, c: PoolClient, pending: MigrationFile[]): Promise<ShardMigration> {
  const { options, emit } = run;
  const applied: ShardMigration['applied'] = [];
  const rest = (i: number) => pending.slice(i).map((p) => p.id);
  for (const [i, f] of pending.entries()) {
    if (options.signal?.aborted || run.stopAll()) return { status: 'interrupted', applied, pending: rest(i) };
    emit({ phase: 'applying', id: f.id, file: f.file });
    const t0 = performance.now();
    const invalidBefore = f.noTransaction ? new Set((await invalidIndexes(c)).map((x) => x.index)) : undefined;
    try {
      await cancellable(run, c, () => applyFile(c, f, run.map, t0));
    } catch (e) {
      const failure = await failureWithLeftovers(c, e, f, run.shard.name, invalidBefore);
      emit({ phase: 'failed', id: f.id, file: f.file });
      return { status: options.signal?.aborted ? 'interrupted' : 'failed', applied, pending: rest(i), failure };
    }
    const ms = Math.round(performance.now() - t0);
    applied.push({ id: f.id, name: f.name, ms });
    emit({ phase: 'applied', id: f.id, file: f.file, ms });
  }
  emit({ phase: 'done' });
  return { status: applied.length > 0 ? 'applied' : 'up-to-date', applied, pending: [] };
}

/** Reads the ledger, then reports drift, reports a dry run, or applies what is pending. */
async function migrateLocked(run: ShardRun, c: PoolClient): Promise<ShardMigration> {
  const { files, options } = run;
  const ledger = (await readLedgerRows(c)) ?? [];
  const drift = findDrift(ledger, files);
  if (drift.length > 0) return { status: 'drift', applied: [], pending: [], drift };
  const done = new Set(ledger.map((e) => e.id));
  const pending = files.filter(
    (f) => !done.has(f.id) && (options.to === undefined || compareIds(f.id, options.to) <= 0),
  );
  if (options.dryRun)
    return { status: pending.length ? 'dry-run' : 'up-to-date', applied: [], pending: pending.map((f) => f.id) };
  return applyPending(run, c, pending);
}

async function migrateOne(
  pools: ShardPools,
  map: ShardMap,
  shard: Shard,
  files: MigrationFile[],
  options: MigrateOptions,
  stopAll: () => boolean,
): Promise<ShardMigration> {
  const emit = (e: Omit<MigrateEvent, 'shard'>) => options.onProgress?.({ shard: shard.name, ...e });
  const run: ShardRun = { pools, map, shard, files, options, stopAll, emit };
  return pools.withShard(shard.name, async (c) => {
    if (!options.dryRun) await ensureCatalogSchema(c);
    if (shard.name === map.catalog && !options.dryRun) await writeRuleState(c, map, { ifAbsent: true });
    emit({ phase: 'locking' });
    if (options.dryRun) return migrateLocked(run, c);
    return withAdvisoryLock(c, MIGRATE_LOCK_KEY, () => migrateLocked(run, c), {
      timeoutMs: options.lockTimeoutMs ?? 10_000,
      purpose: 'migrate',
      shard: shard.name,
    });
  });
}

/**
 * Applies pending migrations to the selected shards in parallel; on each shard in id order, each file
 * in its own transaction unless marked `-- shardctl:no-transaction`. One run at a time per shard (an
 * advisory lock taken by polling). A failing file stops its shard; other shards go on unless `failFast`.
 * A shard whose history drifted from the files is not touched. Returns a result per shard.
 *
 * @example
 * const results = await migrateShards(map, { canary: 'shard-0' });
 */
export async function migrateShards(
  map: ShardMap,
  options: MigrateOptions = {},
): Promise<ShardResult<ShardMigration>[]> {
  const files = await readMigrationFolder(map.migrations);
  if (options.to !== undefined && !files.some((f) => f.id === options.to)) {
    throw new ShardctlError(
      `--to ${options.to} names no migration file (ids: ${files.map((f) => f.id).join(', ') || 'none'})`,
      { code: 'USAGE', exitCode: ExitCode.Usage },
    );
  }
  const names = new Set(map.shards.map((s) => s.name));
  for (const n of [...(options.shards ?? []), ...(options.canary ? [options.canary] : [])]) {
    if (!names.has(n))
      throw new ShardctlError(`unknown shard "${n}"; the map has ${[...names].join(', ')}`, {
        code: 'UNKNOWN_SHARD',
        exitCode: ExitCode.Usage,
      });
  }
  const selected = options.shards ? map.shards.filter((s) => options.shards!.includes(s.name)) : map.shards;
  const pools = await ShardPools.open(map, {
    connectTimeoutMs: options.timeoutMs ?? 5000,
    maxPerShard: 2,
    applicationName: 'shardctl migrate',
  });
  let failed = false;
  const stopAll = () => Boolean(options.failFast && failed);
  const one = async (s: Shard) => {
    const r = await migrateOne(pools, map, s, files, options, stopAll);
    if (r.status === 'failed' || r.status === 'drift') failed = true;
    return r;
  };
  try {
    const results: ShardResult<ShardMigration>[] = [];
    let rest = selected;
    if (options.canary) {
      const canary = map.shards.find((s) => s.name === options.canary)!;
      const [first] = await forEachShard([canary], one);
      results.push(first!);
      rest = selected.filter((s) => s.name !== canary.name);
      const ok = first!.status === 'ok' && ['applied', 'up-to-date', 'dry-run'].includes(first!.value.status);
      if (!ok) {
        for (const s of rest)
          results.push({ shard: s.name, status: 'skipped', reason: `canary ${canary.name} did not succeed` });
        return order(results, selected, canary);
      }
    }
    const limit = options.concurrency ?? Math.min(16, rest.length || 1);
    results.push(
      ...(await forEachShard(rest, one, {
        concurrency: limit,
        failFast: options.failFast ?? false,
        ...(options.signal ? { signal: options.signal } : {}),
      })),
    );
    return order(results, selected, options.canary ? map.shards.find((s) => s.name === options.canary) : undefined);
  } finally {
    await pools.close();
  }
}

function order(
  results: ShardResult<ShardMigration>[],
  selected: Shard[],
  canary?: Shard,
): ShardResult<ShardMigration>[] {
  const all = canary && !selected.includes(canary) ? [canary, ...selected] : selected;
  return all.map((s) => results.find((r) => r.shard === s.name)!).filter(Boolean);
}

/** Who holds the migrate lock of a shard, if anyone (for status). */
export async function migrateLockHolder(client: PoolClient): Promise<LockHolder | undefined> {
  return lockHolder(client, MIGRATE_LOCK_KEY);
}
