import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { PoolClient } from 'pg';
import { crashPoint } from '../crash-points.js';
import { ShardctlError } from '../errors.js';
import { quoteIdent, quoteLiteral, quoteTable } from '../db/sql.js';
import { applyLocalSettings, withTransaction } from '../db/transaction.js';
import { copyGid, newCopyAttempt } from './copy-prepared.js';
import { advanceSequences, clearTarget, onSide, streams, type CopyOptions, type CopyStats } from './copy-tenant.js';
import { FENCE_BYPASS, tenantFilter, tenantSetting } from './fence.js';
import type { TenantTable } from './tenant-tables.js';

/** A foreign key of a copied table whose parent is not copied (a reference table): checked on the target. */
export interface OuterKey {
  name: string;
  child: string;
  parent: string;
  cols: string[];
  pcols: string[];
}

/** A piece of work of one stream: a table, or a range of its integer key column. */
interface CopyUnit {
  table: TenantTable;
  rows: number;
  /** `column >= lo` (when set) and `column < hi` (when set). */
  range?: { column: string; lo?: bigint; hi?: bigint };
}

/** What {@link copyTenantParallel} needs besides the sessions. */
export interface ParallelCopyOptions extends CopyOptions {
  moveId: number;
  /** Rows per table as planned (to split the largest tables into ranges). */
  plannedRows: Record<string, number>;
  /** Durably records that attempt `attempt` commits (the move's journal), before any COMMIT PREPARED. */
  decide(attempt: string): Promise<void>;
  /** The foreign keys to reference tables, from {@link parallelCopyRefusal}. */
  outerKeys: OuterKey[];
}

/**
 * Why the target cannot take a parallel copy into `streams` sessions, or the foreign keys each stream
 * must check itself. A parallel copy writes each stream in its own target transaction, so a child row's
 * parent may sit in another, uncommitted one: the streams write with `session_replication_role =
 * replica` (as PostgreSQL's own logical replication applies rows: no triggers, so no foreign-key
 * triggers) and prepare their transactions to commit them together. That is exact only when (1) the
 * target allows it (prepared transactions, the right to set the parameter), (2) no ordinary trigger of
 * the application would be skipped, and (3) every foreign key between copied tables carries the shard
 * key on both sides, so the parent row of a copied row is a copied row (the checksums then prove it
 * there); keys to other tables (reference tables) are checked by each stream on the target.
 *
 * @example
 * const r = await parallelCopyRefusal(target, tables, 4); if ('reason' in r) console.log(r.reason);
 */
export async function parallelCopyRefusal(
  target: PoolClient,
  tables: TenantTable[],
  streamCount: number,
): Promise<{ reason: string } | { outerKeys: OuterKey[] }> {
  const s = await target.query<{ mpt: number; used: number; can: boolean }>(
    `SELECT current_setting('max_prepared_transactions')::int AS mpt,
            (SELECT count(*)::int FROM pg_prepared_xacts) AS used,
            has_parameter_privilege('session_replication_role', 'SET') AS can`,
  );
  const { mpt, used, can } = s.rows[0]!;
  if (mpt - used < streamCount)
    return {
      reason: `the target allows ${mpt} prepared transactions (${used} in use) and a parallel copy prepares one per stream (${streamCount})`,
    };
  if (!can)
    return { reason: 'the target role may not SET session_replication_role (superuser or GRANT SET ON PARAMETER)' };
  const names = tables.map((t) => t.table);
  const trg = await target.query<{ t: string; name: string }>(
    `SELECT n.nspname || '.' || c.relname AS t, g.tgname AS name
       FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE NOT g.tgisinternal AND g.tgenabled = 'O' AND g.tgname NOT LIKE 'shardctl%'
        AND (n.nspname || '.' || c.relname) = ANY($1)`,
    [names],
  );
  if (trg.rows[0])
    return { reason: `trigger ${trg.rows[0].name} on ${trg.rows[0].t} would not fire in a parallel copy` };
  return checkForeignKeys(target, tables);
}

/** Splits the foreign keys of the copied tables into inner ones (must carry the shard key) and outer ones. */
async function checkForeignKeys(
  target: PoolClient,
  tables: TenantTable[],
): Promise<{ reason: string } | { outerKeys: OuterKey[] }> {
  const byName = new Map(tables.map((t) => [t.table, t]));
  const fks = await target.query<OuterKey>(
    `SELECT x.conname AS name, cn.nspname || '.' || c.relname AS child, pn.nspname || '.' || p.relname AS parent,
            ARRAY(SELECT a.attname::text FROM unnest(x.conkey) WITH ORDINALITY k(n, o)
                    JOIN pg_attribute a ON a.attrelid = x.conrelid AND a.attnum = k.n ORDER BY k.o) AS cols,
            ARRAY(SELECT a.attname::text FROM unnest(x.confkey) WITH ORDINALITY k(n, o)
                    JOIN pg_attribute a ON a.attrelid = x.confrelid AND a.attnum = k.n ORDER BY k.o) AS pcols
       FROM pg_constraint x
       JOIN pg_class c ON c.oid = x.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
       JOIN pg_class p ON p.oid = x.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
      WHERE x.contype = 'f' AND x.conparentid = 0 AND (cn.nspname || '.' || c.relname) = ANY($1)`,
    [tables.map((t) => t.table)],
  );
  const outerKeys: OuterKey[] = [];
  for (const fk of fks.rows) {
    const parent = byName.get(fk.parent);
    if (!parent) {
      outerKeys.push(fk);
      continue;
    }
    const child = byName.get(fk.child)!;
    const carries = fk.cols.some((c, i) => c === child.keyColumn && fk.pcols[i] === parent.keyColumn);
    if (!carries)
      return {
        reason: `foreign key ${fk.name} of ${fk.child} does not include the shard key (${child.keyColumn} -> ${parent.keyColumn}): its parent rows need not be the tenant's`,
      };
  }
  return { outerKeys };
}

/** The integer primary-key column a table's rows can be split by, if any. */
function rangeColumn(t: TenantTable): string | undefined {
  const ints = new Set(['smallint', 'integer', 'bigint']);
  return t.primaryKey.find((c) => c !== t.keyColumn && ints.has(t.allColumns.find((a) => a.name === c)?.type ?? ''));
}

/**
 * Cuts the copy into units, largest first: a table of more than a stream's share of the rows is split
 * into equal ranges of its integer key column (bounds read in the copy's snapshot).
 */
async function planUnits(
  source: PoolClient,
  tables: TenantTable[],
  plannedRows: Record<string, number>,
  streamCount: number,
  key: { column: string; type: string },
): Promise<CopyUnit[]> {
  const total = tables.reduce((a, t) => a + (plannedRows[t.table] ?? 0), 0);
  const share = Math.max(1, Math.ceil(total / streamCount));
  const units: CopyUnit[] = [];
  for (const t of tables) {
    const rows = plannedRows[t.table] ?? 0;
    const parts = Math.min(streamCount, Math.ceil(rows / share));
    const column = rangeColumn(t);
    if (parts < 2 || rows < 20_000 || !column) {
      units.push({ table: t, rows });
      continue;
    }
    const b = await source.query<{ lo: string | null; hi: string | null }>(
      `SELECT min(${quoteIdent(column)})::text AS lo, max(${quoteIdent(column)})::text AS hi FROM ${quoteTable(t.table)} WHERE ${tenantFilter(t.keyColumn, key.type)}`,
    );
    const { lo, hi } = b.rows[0]!;
    if (lo === null || hi === null) {
      units.push({ table: t, rows });
      continue;
    }
    const [min, span] = [BigInt(lo), BigInt(hi) - BigInt(lo) + 1n];
    const cut = (i: number) => min + (span * BigInt(i)) / BigInt(parts);
    for (let i = 0; i < parts; i++)
      units.push({
        table: t,
        rows: Math.ceil(rows / parts),
        range: { column, ...(i > 0 ? { lo: cut(i) } : {}), ...(i < parts - 1 ? { hi: cut(i + 1) } : {}) },
      });
  }
  return units.sort((a, b) => b.rows - a.rows);
}

/** The WHERE clause of a unit's rows on the source. */
function unitFilter(u: CopyUnit, key: { column: string; type: string }): string {
  const parts = [tenantFilter(u.table.keyColumn, key.type)];
  if (u.range?.lo !== undefined) parts.push(`${quoteIdent(u.range.column)} >= ${u.range.lo.toString()}`);
  if (u.range?.hi !== undefined) parts.push(`${quoteIdent(u.range.column)} < ${u.range.hi.toString()}`);
  return parts.join(' AND ');
}

/** Shared by the streams: bytes so far (for `--max-rate` over all streams), tables whose first chunk passed. */
interface CopyShared {
  stats: CopyStats;
  start: number;
  options: CopyOptions;
  started: Set<string>;
}

/** Counts a unit's bytes into the shared stats and holds chunks to keep all streams under `--max-rate`. */
function unitMeter(table: string, shared: CopyShared) {
  const limit = shared.options.maxBytesPerSecond;
  const meter = { bytes: 0, stream: undefined as unknown as Transform };
  meter.stream = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      meter.bytes += chunk.length;
      shared.stats.bytes += chunk.length;
      if (!shared.started.has(table)) {
        shared.started.add(table);
        crashPoint(`mid-copy:${table}`);
      }
      const wait = limit ? (shared.stats.bytes / limit) * 1000 - (performance.now() - shared.start) : 0;
      if (wait > 0) setTimeout(() => cb(null, chunk), wait);
      else cb(null, chunk);
    },
  });
  return meter;
}

/** Pipes one unit from a stream's source session into its target session. */
async function copyUnit(
  source: PoolClient,
  target: PoolClient,
  u: CopyUnit,
  key: { column: string; type: string },
  shared: CopyShared,
) {
  const { to: copyTo, from: copyFrom } = await streams();
  const t0 = performance.now();
  const name = u.table.table;
  crashPoint(`before-copy:${name}`);
  const cols = u.table.columns.map(quoteIdent).join(', ');
  const reader = source.query(
    copyTo(`COPY (SELECT ${cols} FROM ${quoteTable(name)} WHERE ${unitFilter(u, key)}) TO STDOUT (FORMAT binary)`),
  );
  const writer = target.query(copyFrom(`COPY ${quoteTable(name)} (${cols}) FROM STDIN (FORMAT binary)`));
  reader.on('error', (e) => onSide(e, 'source'));
  writer.on('error', (e) => onSide(e, 'target'));
  const meter = unitMeter(name, shared);
  await pipeline(reader, meter.stream, writer);
  const rows = Number((writer as unknown as { rowCount?: number }).rowCount ?? 0);
  const s = (shared.stats.tables[name] ??= { rows: 0, bytes: 0, ms: 0 });
  s.rows += rows;
  s.bytes += meter.bytes;
  s.ms += Math.round(performance.now() - t0);
  shared.stats.rows += rows;
  shared.options.onProgress?.({ table: name, rows: s.rows, bytes: s.bytes });
  crashPoint(`after-copy:${name}`);
}

/**
 * Checks, in a stream's own transaction, that every row it wrote of `child` finds its parent in the
 * reference table on the target, and locks those parents as a foreign-key check would (FOR KEY SHARE),
 * so that no one deletes them before the commit.
 */
async function checkOuterKey(
  target: PoolClient,
  fk: OuterKey,
  childKey: string,
  key: { column: string; type: string },
) {
  const join = fk.cols.map((c, i) => `p.${quoteIdent(fk.pcols[i]!)} = c.${quoteIdent(c)}`).join(' AND ');
  const notNull = fk.cols.map((c) => `c.${quoteIdent(c)} IS NOT NULL`).join(' AND ');
  const mine = `SELECT 1 FROM ${quoteTable(fk.child)} c WHERE c.${tenantFilter(childKey, key.type)} AND ${join}`;
  await target.query(
    `SELECT count(*) FROM (SELECT 1 FROM ${quoteTable(fk.parent)} p WHERE EXISTS (${mine}) FOR KEY SHARE OF p) x`,
  );
  const r = await target.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${quoteTable(fk.child)} c WHERE c.${tenantFilter(childKey, key.type)} AND ${notNull}
        AND NOT EXISTS (SELECT 1 FROM ${quoteTable(fk.parent)} p WHERE ${join})`,
  );
  if (r.rows[0]!.n > 0)
    throw onSide(
      new ShardctlError(
        `${r.rows[0]!.n} rows of ${fk.child} reference rows of ${fk.parent} that the target lacks (foreign key ${fk.name})`,
        { code: 'FOREIGN_KEY' },
      ),
      'target',
    );
}

/** One stream: takes units off the shared queue until none is left, then checks its reference-table keys. */
async function runStream(
  source: PoolClient,
  target: PoolClient,
  queue: CopyUnit[],
  key: { column: string; type: string },
  shared: CopyShared,
  outerKeys: OuterKey[],
): Promise<TenantTable[]> {
  const touched: TenantTable[] = [];
  for (let u = queue.shift(); u; u = queue.shift()) {
    await copyUnit(source, target, u, key, shared);
    if (!touched.includes(u.table)) touched.push(u.table);
  }
  for (const t of touched)
    for (const fk of outerKeys.filter((k) => k.child === t.table)) await checkOuterKey(target, fk, t.keyColumn, key);
  return touched;
}

/** Runs `fn` for every stream and waits for all of them; the first failure is thrown once all ended. */
async function allStreams<T>(n: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const settled = await Promise.allSettled(Array.from({ length: n }, (_, i) => fn(i)));
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}

/**
 * Copies one tenant's rows in `sources.length` parallel streams (one source and one target session each),
 * all reading one snapshot of the source (`options.snapshot`, else one exported by `exporter` for the
 * copy), each writing its own target transaction, and commits those transactions together: all are
 * PREPAREd, the move's journal records the attempt as committed (`options.decide`), then each is
 * COMMIT PREPARED. A crash before the decision leaves prepared transactions that the next attempt (or
 * abort) rolls back; after it, ones that it commits ({@link resolveCopyTransactions}). So no reader
 * sees a partial copy, and nothing half-done survives resume or abort. The caller has checked
 * {@link parallelCopyRefusal} and resolved earlier attempts' transactions.
 *
 * @example
 * const stats = await copyTenantParallel([s1, s2], [t1, t2], s0, tables, '7', key, { moveId: 3, plannedRows, decide, outerKeys: [] });
 */
export async function copyTenantParallel(
  sources: PoolClient[],
  targets: PoolClient[],
  exporter: PoolClient | undefined,
  tables: TenantTable[],
  tenant: string | string[],
  key: { column: string; type: string },
  options: ParallelCopyOptions,
): Promise<CopyStats> {
  const start = performance.now();
  const shared: CopyShared = { stats: { tables: {}, rows: 0, bytes: 0, ms: 0 }, start, options, started: new Set() };
  // The rows of an earlier attempt go first, committed: a stream's insert would wait on an uncommitted delete.
  await withTransaction(targets[0]!, () => clearTarget(targets[0]!, tables, key), {
    settings: { ...FENCE_BYPASS, ...tenantSetting(tenant) },
  }).catch((e: unknown) => Promise.reject(onSide(e, 'target')));
  const own = !options.snapshot && exporter;
  try {
    if (own) await exporter.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const snapshot =
      options.snapshot ?? (await exporter!.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0]!.s;
    const stats = await copyInStreams(sources, targets, tables, tenant, key, options, shared, snapshot);
    stats.ms = Math.round(performance.now() - start);
    return stats;
  } catch (e) {
    throw onSide(e, 'source');
  } finally {
    if (own) await exporter.query('COMMIT').catch(() => undefined);
  }
}

/** Opens every stream's transactions in the snapshot, copies, then commits them together. */
async function copyInStreams(
  sources: PoolClient[],
  targets: PoolClient[],
  tables: TenantTable[],
  tenant: string | string[],
  key: { column: string; type: string },
  options: ParallelCopyOptions,
  shared: CopyShared,
  snapshot: string,
): Promise<CopyStats> {
  const n = sources.length;
  await allStreams(n, async (i) => {
    await sources[i]!.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await sources[i]!.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshot)}`);
    await applyLocalSettings(sources[i]!, { settings: tenantSetting(tenant) });
    await targets[i]!.query('BEGIN').catch((e: unknown) => Promise.reject(onSide(e, 'target')));
    await applyLocalSettings(targets[i]!, {
      settings: { ...FENCE_BYPASS, ...tenantSetting(tenant), session_replication_role: 'replica' },
    }).catch((e: unknown) => Promise.reject(onSide(e, 'target')));
  });
  try {
    const queue = await planUnits(sources[0]!, tables, options.plannedRows, n, key);
    const touched = await allStreams(n, (i) =>
      runStream(sources[i]!, targets[i]!, queue, key, shared, options.outerKeys).catch((e: unknown) =>
        Promise.reject(onSide(e, 'target')),
      ),
    );
    // One session after another: each only moves a sequence forward, past what it sees (its own rows).
    for (const [i, t] of touched.entries())
      await advanceSequences(targets[i]!, t).catch((e: unknown) => Promise.reject(onSide(e, 'target')));
    crashPoint('before-copy-commit');
    await commitTogether(targets, options);
  } catch (e) {
    // Streams still in their transaction end it; prepared ones were settled by commitTogether, or are
    // left for resolveCopyTransactions (a COMMIT PREPARED that failed after the decision).
    await Promise.all(targets.map((t) => t.query('ROLLBACK').catch(() => undefined)));
    throw e;
  } finally {
    await Promise.all(sources.map((s) => s.query('COMMIT').catch(() => undefined)));
  }
  await analyzeCopied(targets, tables);
  shared.stats.streams = n;
  return shared.stats;
}

/** PREPAREs every stream's transaction, records the decision, then COMMIT PREPAREs each (see above). */
async function commitTogether(targets: PoolClient[], options: ParallelCopyOptions): Promise<void> {
  const attempt = newCopyAttempt();
  const gids = targets.map((_, i) => copyGid(options.moveId, attempt, i));
  const prepared: string[] = [];
  const failOnTarget = (e: unknown) => Promise.reject(onSide(e, 'target'));
  try {
    for (const [i, t] of targets.entries()) {
      await t.query(`PREPARE TRANSACTION '${gids[i]}'`).catch(failOnTarget);
      prepared.push(gids[i]!);
    }
  } catch (e) {
    for (const [i, gid] of prepared.entries())
      await targets[i]!.query(`ROLLBACK PREPARED '${gid}'`).catch(() => undefined);
    throw e;
  }
  crashPoint('copy:after-prepares');
  await options.decide(attempt);
  crashPoint('copy:after-decision');
  await targets[0]!.query(`COMMIT PREPARED '${gids[0]}'`).catch(failOnTarget);
  crashPoint('copy:after-first-commit');
  await Promise.all(targets.slice(1).map((t, i) => t.query(`COMMIT PREPARED '${gids[i + 1]}'`).catch(failOnTarget)));
}

/**
 * Statistics for the copied tables, one table per session at a time: a table a move filled has none,
 * and the application's first queries (and the next move's checks) are planned from them.
 */
async function analyzeCopied(targets: PoolClient[], tables: TenantTable[]): Promise<void> {
  const queue = [...tables];
  await allStreams(targets.length, async (i) => {
    for (let t = queue.shift(); t; t = queue.shift()) await targets[i]!.query(`ANALYZE ${quoteTable(t.table)}`);
  });
}
