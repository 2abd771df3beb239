import type { PoolClient } from 'pg';
import type { ShardMap } from '../config/shard-map.js';
import { ensureCatalogSchema } from '../catalog/catalog-schema.js';
import { setPlacement } from '../catalog/directory.js';
import { ShardPools, withAdvisoryLock } from '../db/shard-pools.js';
import { ExitCode, fromDriverError, ShardctlError } from '../errors.js';
import { compileRule } from '../placement/placement.js';
import { parseTenant, tenantText } from '../placement/tenant-key.js';
import { writeRuleState } from '../rebalance/rule-state.js';
import { createRouter } from '../router/create-router.js';
import { readLedger } from '../verify/ledger-files.js';
import { quoteIdent, quoteTable } from '../verify/misplaced-sql.js';
import { copyTenant, crashPoint, deleteTenantRows, tenantChecksums, type CopyProgress } from './copy-tenant.js';
import { addFence, installFenceTriggers, removeFence } from './fence.js';
import { createMove, inFlightMove, readMove, SWITCHED_STATES, transition, type MovePlanRecord, type MoveRecord, type MoveState } from './move-journal.js';
import { readTenantTables, type TenantTable } from './tenant-tables.js';

/** What a move will do, shown before anything changes (`--dry-run` prints it and stops). */
export interface MovePreview {
  tenant: string;
  source: string;
  target: string;
  /** Tenant tables in copy order (parents first) with the tenant's rows and bytes. */
  tables: { table: string; rows: number; bytes: number }[];
  rows: number;
  bytes: number;
  /** Rough duration in seconds (copy, verify, cleanup), from rows and bytes. */
  estimateSeconds: number;
}

/** A progress event of a move. */
export interface MoveEvent {
  moveId: number;
  phase: MoveState | 'cleanup' | 'waiting';
  message?: string;
  table?: string;
  rows?: number;
  bytes?: number;
  totalRows?: number;
  totalBytes?: number;
}

/** Options of {@link moveTenant}, {@link resumeMove} and {@link abortMove}. */
export interface MoveOptions {
  /** Keep the source rows after the switch until `moves cleanup`. Default false. */
  keepSource?: boolean;
  /** Called with progress events. */
  onProgress?: (e: MoveEvent) => void;
  /** Asked with the preview before anything changes; a false answer stops (nothing changed). Default: go. */
  confirm?: (preview: MovePreview) => Promise<boolean>;
  /** Connection timeout, ms. Default 5000. */
  timeoutMs?: number;
  /** How long to wait for transactions older than the fence, and for table locks, ms. Default 30000. */
  waitMs?: number;
  /** Rows per delete batch in cleanup. Default 50000. */
  batch?: number;
  /** Fleet plan this move belongs to. */
  planId?: number;
  /** Throttle the copy to this many bytes per second (`--max-rate`). Default: no limit. */
  maxBytesPerSecond?: number;
}

/** Result of a move command. */
export interface MoveResult {
  move: MoveRecord;
  preview?: MovePreview;
}

const MOVE_LOCK_BASE = 100_000;

function key(map: ShardMap) {
  return { column: map.shardKey.column, type: map.shardKey.type };
}

async function tenantStats(c: PoolClient, tables: TenantTable[], tenant: string, map: ShardMap): Promise<{ table: string; rows: number; bytes: number }[]> {
  const out = [];
  for (const t of tables) {
    const r = await c.query<{ n: string; b: string }>(
      `SELECT count(*)::text AS n, coalesce(sum(pg_column_size(x.*)), 0)::text AS b FROM ${quoteTable(t.table)} x WHERE ${quoteIdent(map.shardKey.column)} = $1`,
      [tenant],
    );
    out.push({ table: t.table, rows: Number(r.rows[0]!.n), bytes: Number(r.rows[0]!.b) });
  }
  return out;
}

function refuse(message: string, code: string, hint?: string, details?: unknown, exitCode: (typeof ExitCode)[keyof typeof ExitCode] = ExitCode.Failed): ShardctlError {
  return new ShardctlError(message, { code, exitCode, ...(hint ? { hint } : {}), ...(details !== undefined ? { details } : {}) });
}

/**
 * Plans a move and runs every preflight check, changing nothing: unknown tenant or shard, target equal
 * to source, no rows, different migration ledgers or columns, a table without primary key, primary keys
 * already on the target (listed), a move of the tenant in flight.
 *
 * @example
 * const preview = await planMove(map, 123, 'shard-2');
 */
export async function planMove(map: ShardMap, tenantValue: unknown, to: string, options: { timeoutMs?: number } = {}): Promise<MovePreview> {
  const tenant = tenantText(parseTenant(tenantValue, map.shardKey.type));
  if (!map.shards.some((s) => s.name === to)) {
    throw refuse(`unknown target shard "${to}"; the map has ${map.shards.map((s) => s.name).join(', ')}`, 'UNKNOWN_SHARD', undefined, undefined, ExitCode.Usage);
  }
  const router = await createRouter(map, { pool: { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 2 } });
  try {
    const source = router.locate(tenant).shard;
    if (source === to) throw refuse(`tenant ${tenant} already lives on ${to}`, 'SAME_SHARD', 'pick another --to shard', undefined, ExitCode.Usage);
    const pools = router.pools;
    const inflight = await pools.withShard(map.catalog, (c) => inFlightMove(c, tenant));
    if (inflight) {
      throw refuse(`a move of tenant ${tenant} is already in flight: move ${inflight.id} (${inflight.source} -> ${inflight.target}) is ${inflight.state}`, 'MOVE_IN_FLIGHT', `resume it with \`shardctl rebalance --resume ${inflight.id}\` or abort it with \`shardctl rebalance --abort ${inflight.id}\``);
    }
    const [srcTables, dstTables] = await Promise.all([pools.withShard(source, (c) => readTenantTables(c, map)), pools.withShard(to, (c) => readTenantTables(c, map))]);
    if (srcTables.length === 0) throw refuse(`shard ${source} has no tenant tables (no table has column ${map.shardKey.column})`, 'NO_TABLES');
    const noPk = srcTables.filter((t) => t.primaryKey.length === 0).map((t) => t.table);
    if (noPk.length > 0) throw refuse(`tenant table(s) without a primary key: ${noPk.join(', ')}: a move cannot prove what it copied`, 'NO_PRIMARY_KEY', 'add a primary key, or list only keyed tables in the map\'s tables:');
    // Schemas must match: by migration ledger where either shard has one, and by columns always.
    const [srcLedger, dstLedger] = await Promise.all([pools.withShard(source, readLedger), pools.withShard(to, readLedger)]);
    if (srcLedger !== null || dstLedger !== null) {
      const sig = (l: typeof srcLedger) => (l ?? []).map((e) => `${e.id}:${e.checksum}`).join(',');
      if (sig(srcLedger) !== sig(dstLedger)) {
        const at = (l: typeof srcLedger) => (l && l.length ? `${l[l.length - 1]!.id} (${l.length} applied)` : 'no migrations');
        throw refuse(`${source} is at ${at(srcLedger)} but ${to} is at ${at(dstLedger)}: their schemas may differ`, 'MIGRATION_MISMATCH', 'run `shardctl migrate` so both are at the same migration');
      }
    }
    const dstByName = new Map(dstTables.map((t) => [t.table, t]));
    const colDiffs: string[] = [];
    for (const t of srcTables) {
      const d = dstByName.get(t.table);
      if (!d) {
        colDiffs.push(`${t.table} is missing on ${to}`);
        continue;
      }
      const sig = (x: TenantTable) => x.allColumns.map((c) => `${c.name} ${c.type}${c.generated ? ' generated' : ''}`).join(', ');
      if (sig(t) !== sig(d)) colDiffs.push(`${t.table}: ${source} has (${sig(t)}), ${to} has (${sig(d)})`);
    }
    if (colDiffs.length > 0) throw refuse(`tenant tables differ between ${source} and ${to}: ${colDiffs.join('; ')}`, 'SCHEMA_MISMATCH', 'bring both shards to the same schema first (shardctl verify shows the drift)');
    const stats = await pools.withShard(source, (c) => tenantStats(c, srcTables, tenant, map));
    const rows = stats.reduce((a, s) => a + s.rows, 0);
    if (rows === 0) throw refuse(`tenant ${tenant} has no rows on ${source}`, 'NO_ROWS', 'check the tenant id with `shardctl locate`');
    const conflicts = await pools.withShard(to, (c) => existingKeys(c, srcTables, tenant, map));
    if (conflicts.length > 0) {
      throw refuse(
        `tenant ${tenant} already has rows on ${to}: ${conflicts.map((c) => `${c.table} (${c.keys.join(', ')}${c.more ? ', ...' : ''})`).join('; ')}; nothing was copied`,
        'TARGET_HAS_ROWS',
        'find out where these rows come from (shardctl verify --tenant ' + tenant + ') and remove them before moving',
        conflicts,
      );
    }
    const bytes = stats.reduce((a, s) => a + s.bytes, 0);
    return { tenant, source, target: to, tables: stats, rows, bytes, estimateSeconds: Math.ceil(rows / 150_000 + bytes / 40_000_000 + 1) };
  } finally {
    await router.close();
  }
}

async function existingKeys(c: PoolClient, tables: TenantTable[], tenant: string, map: ShardMap): Promise<{ table: string; keys: string[]; more: boolean }[]> {
  const out = [];
  for (const t of tables) {
    const pk = t.primaryKey.map(quoteIdent);
    const r = await c.query<{ k: string }>(
      `SELECT ROW(${pk.join(', ')})::text AS k FROM ${quoteTable(t.table)} WHERE ${quoteIdent(map.shardKey.column)} = $1 ORDER BY ${pk.join(', ')} LIMIT 21`,
      [tenant],
    );
    if (r.rows.length > 0) out.push({ table: t.table, keys: r.rows.slice(0, 20).map((x) => x.k), more: r.rows.length > 20 });
  }
  return out;
}

/**
 * Moves a tenant to another shard, fenced: its writes are rejected on the source by the database
 * while its rows are copied, verified and switched; other tenants are never blocked. Every step is
 * journaled before it runs, so {@link resumeMove} or {@link abortMove} can finish or undo it after a
 * crash. Returns the final journal record (state `done`, or `switched` with `keepSource`).
 *
 * @example
 * const { move } = await moveTenant(map, 123, 'shard-2', { onProgress: console.log });
 */
export async function moveTenant(map: ShardMap, tenantValue: unknown, to: string, options: MoveOptions = {}): Promise<MoveResult> {
  const preview = await planMove(map, tenantValue, to, options);
  if (options.confirm && !(await options.confirm(preview))) {
    throw refuse('move not confirmed: nothing changed', 'NOT_CONFIRMED', undefined, undefined, ExitCode.Usage);
  }
  const pools = await ShardPools.open(map, { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 4, applicationName: 'shardctl move' });
  try {
    const plan: MovePlanRecord = { tables: preview.tables };
    let move: MoveRecord;
    try {
      move = await pools.withShard(map.catalog, async (c) => {
        await ensureCatalogSchema(c);
        await writeRuleState(c, map, { ifAbsent: true });
        return createMove(c, { tenant: preview.tenant, source: preview.source, target: preview.target, keepSource: options.keepSource ?? false, plan, planId: options.planId ?? null });
      });
    } catch (e) {
      if ((e as ShardctlError).pg?.code === '23505') throw refuse(`a move of tenant ${preview.tenant} is already in flight`, 'MOVE_IN_FLIGHT', 'see `shardctl moves`');
      throw e;
    }
    crashPoint('after-plan');
    return { move: await drive(map, pools, move.id, options), preview };
  } finally {
    await pools.close();
  }
}

/**
 * Continues a move from its journal: a failed move retries from the step that failed; a move
 * interrupted anywhere redoes its current step (every step is idempotent).
 *
 * @example
 * await resumeMove(map, 7);
 */
export async function resumeMove(map: ShardMap, id: number, options: MoveOptions = {}): Promise<MoveResult> {
  const pools = await ShardPools.open(map, { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 4, applicationName: 'shardctl move' });
  try {
    return { move: await drive(map, pools, id, options) };
  } finally {
    await pools.close();
  }
}

async function loadMove(pools: ShardPools, map: ShardMap, id: number): Promise<MoveRecord> {
  const m = await pools.withShard(map.catalog, (c) => readMove(c, id));
  if (!m) throw refuse(`no move ${id} in the journal of ${map.catalog}`, 'UNKNOWN_MOVE', 'list moves with `shardctl moves`', undefined, ExitCode.Usage);
  return m;
}

/** Runs a move's steps from its journal state, holding the move's lock on the catalog. */
async function drive(map: ShardMap, pools: ShardPools, id: number, options: MoveOptions): Promise<MoveRecord> {
  const lockClient = await pools.pool(map.catalog).connect();
  try {
    return await withAdvisoryLock(lockClient, MOVE_LOCK_BASE + id, () => steps(map, pools, id, options), { purpose: `move ${id}`, shard: map.catalog, timeoutMs: 3000 });
  } finally {
    lockClient.release();
  }
}

async function record(pools: ShardPools, map: ShardMap, id: number, state: MoveState, extra: Parameters<typeof transition>[3] = {}): Promise<void> {
  await pools.withShard(map.catalog, (c) => transition(c, id, state, extra));
  crashPoint(`after-state:${state}`);
}

async function steps(map: ShardMap, pools: ShardPools, id: number, options: MoveOptions): Promise<MoveRecord> {
  let m = await loadMove(pools, map, id);
  const emit = (e: Omit<MoveEvent, 'moveId'>) => options.onProgress?.({ moveId: id, ...e });
  if (m.state === 'done' || m.state === 'aborted') return m;
  let state: MoveState = m.state === 'failed' ? (m.failedIn ?? 'planned') : m.state;
  const k = key(map);
  let tables: TenantTable[] | undefined;
  const tenantTables = async () => (tables ??= (await pools.withShard(m.source, (c) => readTenantTables(c, map))).filter((t) => m.plan.tables.some((p) => p.table === t.table)));
  try {
    if (state === 'planned') {
      await record(pools, map, id, 'fenced', { message: `fencing tenant ${m.tenant} on ${m.source}` });
      state = 'fenced';
    }
    if (state === 'fenced') {
      emit({ phase: 'fenced', message: `fencing tenant ${m.tenant} on ${m.source}` });
      await fence(pools, map, m, await tenantTables(), options.waitMs ?? 30_000);
      crashPoint('after-fence');
      await record(pools, map, id, 'copying', { message: 'copying' });
      state = 'copying';
    }
    if (state === 'copying') {
      const ts = await tenantTables();
      const totalRows = m.plan.tables.reduce((a, t) => a + t.rows, 0);
      const totalBytes = m.plan.tables.reduce((a, t) => a + t.bytes, 0);
      const src = await pools.pool(m.source).connect();
      const dst = await pools.pool(m.target).connect();
      let stats;
      try {
        stats = await copyTenant(src, dst, ts, m.tenant, k, {
          onProgress: (p: CopyProgress) => emit({ phase: 'copying', table: p.table, ...(p.rows >= 0 ? { rows: p.rows } : {}), bytes: p.bytes, totalRows, totalBytes }),
          ...(options.maxBytesPerSecond ? { maxBytesPerSecond: options.maxBytesPerSecond } : {}),
        });
      } finally {
        src.release();
        dst.release();
      }
      crashPoint('after-copy');
      await record(pools, map, id, 'copied', { stats: { copy: stats }, message: `copied ${stats.rows} rows, ${stats.bytes} bytes in ${stats.ms} ms` });
      state = 'copied';
    }
    if (state === 'copied') {
      emit({ phase: 'copied', message: 'verifying' });
      const ts = await tenantTables();
      const [a, b] = await Promise.all([pools.withShard(m.source, (c) => tenantChecksums(c, ts, m.tenant, k)), pools.withShard(m.target, (c) => tenantChecksums(c, ts, m.tenant, k))]);
      const bad = ts.filter((t) => a[t.table]!.rows !== b[t.table]!.rows || a[t.table]!.sum !== b[t.table]!.sum);
      if (bad.length > 0) {
        const detail = bad.map((t) => `${t.table}: source ${a[t.table]!.rows} rows (checksum ${a[t.table]!.sum}), target ${b[t.table]!.rows} rows (checksum ${b[t.table]!.sum})`).join('; ');
        // Redo the copy on resume: the target's rows are not trusted.
        await record(pools, map, id, 'failed', { failedIn: 'copying', error: `verification failed: ${detail}`, message: 'verification failed' });
        throw refuse(`move ${id}: verification failed, not switched: ${detail}`, 'VERIFY_FAILED', `the tenant stays on ${m.source} (still fenced): \`shardctl rebalance --resume ${id}\` copies again, \`--abort ${id}\` undoes the move`);
      }
      await record(pools, map, id, 'verified', { stats: { verify: Object.fromEntries(ts.map((t) => [t.table, a[t.table]])) }, message: 'source and target agree' });
      state = 'verified';
    }
    if (state === 'verified') {
      emit({ phase: 'verified', message: `switching tenant ${m.tenant} to ${m.target}` });
      const rule = compileRule(map);
      // The directory change and the journal state commit together.
      await pools.withTransaction(map.catalog, async (c) => {
        await setPlacement(c, m.tenant, m.target, { ruleShard: rule(parseTenant(m.tenant, map.shardKey.type)).shard.name, moveId: id });
        await transition(c, id, 'switched', { message: `tenant ${m.tenant} now lives on ${m.target}` });
      });
      crashPoint('after-state:switched');
      state = 'switched';
    }
    if (state === 'switched') {
      // Idempotent, so it also runs on resume: the fence on the source stays as a tombstone (a writer
      // with a stale map gets an error, not a lost row); a tombstone an earlier move left on the target
      // goes, since the tenant lives there again.
      await pools.withShard(m.source, (c) => addFence(c, { tenant: m.tenant, moveId: id, target: m.target, reason: `tenant ${m.tenant} moved to ${m.target} by move ${id}` }));
      await pools.withShard(m.target, (c) => removeFence(c, m.tenant));
    }
    if (state === 'switched') {
      if (m.keepSource) {
        emit({ phase: 'switched', message: `source rows kept on ${m.source}: remove them with \`shardctl moves cleanup ${id}\`` });
        return loadMove(pools, map, id);
      }
      await cleanupSource(pools, map, m, await tenantTables(), options, emit);
      await record(pools, map, id, 'cleaned', { message: `source rows of tenant ${m.tenant} deleted from ${m.source}` });
      state = 'cleaned';
    }
    if (state === 'cleaned') {
      await record(pools, map, id, 'done', { message: 'done' });
    }
    return loadMove(pools, map, id);
  } catch (e) {
    const err = fromDriverError(e);
    if (!SWITCHED_STATES.includes(state) && err.code !== 'VERIFY_FAILED') {
      await pools
        .withShard(map.catalog, (c) => transition(c, id, 'failed', { failedIn: state, error: err.message, message: `failed in ${state}` }))
        .catch(() => undefined);
    }
    throw new ShardctlError(`move ${id} of tenant ${m.tenant}: ${err.message}`, {
      code: err.code,
      exitCode: err.exitCode,
      hint: SWITCHED_STATES.includes(state)
        ? `the tenant already lives on ${m.target}; finish with \`shardctl rebalance --resume ${id}\``
        : `tenant ${m.tenant} stays on ${m.source}${state === 'planned' ? '' : ' and is fenced there'}: \`shardctl rebalance --resume ${id}\` retries, \`shardctl rebalance --abort ${id}\` undoes the move`,
      ...(err.pg ? { pg: err.pg } : {}),
      cause: e,
    });
  }
}

async function fence(pools: ShardPools, map: ShardMap, m: MoveRecord, tables: TenantTable[], waitMs: number): Promise<void> {
  const fenceXid = await pools.withShard(m.source, async (c) => {
    await ensureCatalogSchema(c);
    await c.query('BEGIN');
    try {
      // Creating a trigger waits for running writers of the table: bounded, never queued forever.
      await c.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.floor(waitMs))}`);
      await installFenceTriggers(c, tables.map((t) => t.table), map.shardKey.column);
      await addFence(c, { tenant: m.tenant, moveId: m.id, target: m.target, reason: `move ${m.id} of tenant ${m.tenant} to ${m.target} in progress` });
      const x = await c.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x');
      await c.query('COMMIT');
      return x.rows[0]!.x;
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
  });
  // A transaction older than the fence may still write the tenant's rows (its snapshot does not see
  // the fence): wait until every transaction that started before the fence has ended.
  const deadline = Date.now() + waitMs;
  await pools.withShard(m.source, async (c) => {
    for (;;) {
      const r = await c.query<{ done: boolean }>('SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8 AS done', [fenceXid]);
      if (r.rows[0]?.done) return;
      if (Date.now() > deadline) {
        throw refuse(`transactions older than the fence are still open on ${m.source} after ${waitMs} ms`, 'OLD_TRANSACTIONS', 'find them in pg_stat_activity (xact_start) and end them, then resume');
      }
      await new Promise((r2) => setTimeout(r2, 50));
    }
  });
}

async function cleanupSource(pools: ShardPools, map: ShardMap, m: MoveRecord, tables: TenantTable[], options: MoveOptions, emit: (e: Omit<MoveEvent, 'moveId'>) => void): Promise<void> {
  emit({ phase: 'cleanup', message: `deleting tenant ${m.tenant}'s rows from ${m.source}` });
  await pools.withShard(m.source, (c) =>
    deleteTenantRows(c, tables, m.tenant, key(map), { batch: options.batch ?? 50_000, onBatch: (table, rows) => {
      emit({ phase: 'cleanup', table, rows });
      crashPoint('mid-cleanup');
    } }),
  );
}

/**
 * Removes the source rows of a switched move kept with `--keep-source`, and finishes it.
 *
 * @example
 * await cleanupMove(map, 7);
 */
export async function cleanupMove(map: ShardMap, id: number, options: MoveOptions = {}): Promise<MoveResult> {
  const pools = await ShardPools.open(map, { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 4, applicationName: 'shardctl move' });
  try {
    const m = await loadMove(pools, map, id);
    if (m.state !== 'switched' && m.state !== 'cleaned') {
      throw refuse(`move ${id} is ${m.state}: only a switched move has source rows to clean up`, 'BAD_STATE', undefined, undefined, ExitCode.Usage);
    }
    if (m.keepSource) await pools.withShard(map.catalog, (c) => c.query('UPDATE shardctl.moves SET keep_source = false WHERE id = $1', [id]));
    return { move: await drive(map, pools, id, options) };
  } finally {
    await pools.close();
  }
}

/**
 * Undoes a move that has not switched: deletes what it copied to the target, removes its fence,
 * leaves the directory unchanged, and records `aborted`. A switched move cannot be aborted (move the
 * tenant back instead).
 *
 * @example
 * await abortMove(map, 7);
 */
export async function abortMove(map: ShardMap, id: number, options: MoveOptions = {}): Promise<MoveResult> {
  const pools = await ShardPools.open(map, { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 4, applicationName: 'shardctl move' });
  try {
    const lockClient = await pools.pool(map.catalog).connect();
    try {
      return await withAdvisoryLock(
        lockClient,
        MOVE_LOCK_BASE + id,
        async () => {
          const m = await loadMove(pools, map, id);
          if (m.state === 'aborted') return { move: m };
          if (SWITCHED_STATES.includes(m.state) || (m.state === 'failed' && m.failedIn !== null && SWITCHED_STATES.includes(m.failedIn))) {
            throw refuse(`move ${id} already switched tenant ${m.tenant} to ${m.target}: it cannot be aborted`, 'ALREADY_SWITCHED', `move the tenant back with \`shardctl rebalance --tenant ${m.tenant} --to ${m.source}\``, undefined, ExitCode.Usage);
          }
          if (m.state === 'done') throw refuse(`move ${id} is done`, 'ALREADY_DONE', undefined, undefined, ExitCode.Usage);
          const tables = (await pools.withShard(m.target, (c) => readTenantTables(c, map))).filter((t) => m.plan.tables.some((p) => p.table === t.table));
          await pools.withShard(m.target, (c) => deleteTenantRows(c, tables, m.tenant, key(map), { batch: options.batch ?? 50_000 }));
          crashPoint('abort-after-delete');
          await pools.withShard(m.source, (c) => removeFence(c, m.tenant, id));
          await record(pools, map, id, 'aborted', { message: `aborted: ${m.target} rows removed, fence lifted, tenant stays on ${m.source}` });
          return { move: await loadMove(pools, map, id) };
        },
        { purpose: `move ${id}`, shard: map.catalog },
      );
    } finally {
      lockClient.release();
    }
  } finally {
    await pools.close();
  }
}
