import { Transform, type TransformCallback } from 'node:stream';
import { crashPoint } from '../crash-points.js';
import { pipeline } from 'node:stream/promises';
import type { PoolClient } from 'pg';
import { ShardctlError } from '../errors.js';
import { quoteIdent, quoteLiteral, quoteTable } from '../db/sql.js';
import { withTransaction } from '../db/transaction.js';
import { bindTenant, FENCE_BYPASS, tenantFilter, tenantSetting } from './fence.js';
import type { TenantTable } from './tenant-tables.js';

/** Progress of a table copy. */
export interface CopyProgress {
  table: string;
  rows: number;
  bytes: number;
}

/** Rows and bytes copied per table, and time. */
export interface CopyStats {
  tables: Record<string, { rows: number; bytes: number; ms: number }>;
  rows: number;
  bytes: number;
  ms: number;
  /** Parallel streams the copy used (1: one target transaction). */
  streams?: number;
  /** Why the copy used one stream when more were asked for. */
  singleStreamReason?: string;
}

let copyStreams: typeof import('pg-copy-streams') | undefined;

/** pg-copy-streams, loaded once. */
export async function streams(): Promise<typeof import('pg-copy-streams')> {
  if (!copyStreams) {
    const m = await import('pg-copy-streams');
    copyStreams = (m as unknown as { default?: typeof import('pg-copy-streams') }).default ?? m;
  }
  return copyStreams;
}

/**
 * Deletes the tenant's rows from tables, children first, in batches (so that a big tenant never
 * holds one huge transaction), with the fence bypassed for these transactions only.
 *
 * @returns rows deleted per table
 */
export async function deleteTenantRows(
  client: PoolClient,
  tables: TenantTable[],
  tenant: string | string[],
  key: { column: string; type: string },
  options: { batch?: number; onBatch?: (table: string, rows: number) => void } = {},
): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const batch = options.batch ?? 50_000;
  for (const t of [...tables].reverse()) {
    out[t.table] = 0;
    for (;;) {
      // By row address: a TID scan whatever the table's statistics say (a table just filled by a copy
      // has none, and a join plan built on that can take minutes per batch). The tenant test stays on
      // the DELETE: in a partitioned table one address names a row in every partition.
      const filter = tenantFilter(t.keyColumn, key.type);
      const r = await withTransaction(
        client,
        () =>
          client.query(
            `DELETE FROM ${quoteTable(t.table)} WHERE ctid = ANY (ARRAY(SELECT ctid FROM ${quoteTable(t.table)} WHERE ${filter} LIMIT ${batch})) AND ${filter}`,
          ),
        { settings: { ...FENCE_BYPASS, ...tenantSetting(tenant) } },
      );
      const n = r.rowCount ?? 0;
      out[t.table] = (out[t.table] ?? 0) + n;
      if (n > 0) options.onBatch?.(t.table, n);
      if (n < batch) break;
    }
  }
  return out;
}

const SIDE = Symbol('shardctl.copy-side');

/** Marks an error as raised by the source or the target (the first mark stays), and returns it. */
export function onSide(e: unknown, side: 'source' | 'target'): unknown {
  if (e && typeof e === 'object' && !(SIDE in e)) (e as Record<symbol, unknown>)[SIDE] = side;
  return e;
}

/**
 * The shard that raised an error of {@link copyTenant}: the target when it refused a row (a foreign key,
 * a constraint, the commit), the source otherwise. A copy error must name the shard whose log explains it.
 *
 * @example
 * throw fromDriverError(e, { shard: copyErrorShard(e, { source: 'shard-0', target: 'shard-1' }) });
 */
export function copyErrorShard(e: unknown, shards: { source: string; target: string }): string {
  const side = e && typeof e === 'object' ? (e as Record<symbol, unknown>)[SIDE] : undefined;
  return side === 'target' ? shards.target : shards.source;
}

/**
 * Streams one tenant's rows of every table from the source to the target with COPY, parents first,
 * in ONE target transaction: a crash or error leaves the target without a partial copy. The source is
 * read in one REPEATABLE READ snapshot. Generated columns are left to the target to compute; identity
 * columns are copied as they are (COPY accepts given values); afterwards every sequence feeding a copied
 * column is advanced past the largest value on the target, or the copy fails.
 */
export async function copyTenant(
  source: PoolClient,
  target: PoolClient,
  tables: TenantTable[],
  tenant: string | string[],
  key: { column: string; type: string },
  options: CopyOptions = {},
): Promise<CopyStats> {
  const start = performance.now();
  const stats: CopyStats = { tables: {}, rows: 0, bytes: 0, ms: 0 };
  // The target commits first: a source commit (read only) cannot fail in a way that voids the copy.
  await withTransaction(
    source,
    () =>
      withTransaction(
        target,
        async () => {
          // An online move copies in the snapshot its replication slot starts from (first in the transaction).
          await (async () => {
            if (options.snapshot) await source.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(options.snapshot)}`);
            await bindTenant(source, tenant);
          })().catch((e: unknown) => Promise.reject(onSide(e, 'source')));
          await clearTarget(target, tables, key);
          for (const t of tables) await copyTable(source, target, t, key, stats, start, options);
          await advanceSequences(target, tables);
          crashPoint('before-copy-commit');
        },
        // The target may hold a tombstone fence of this tenant from an earlier move away from it.
        { settings: { ...FENCE_BYPASS, ...tenantSetting(tenant) } },
        // Whatever was not marked as the source's inside is the target's (its statements, its commit).
      ).catch((e: unknown) => Promise.reject(onSide(e, 'target'))),
    { isolation: 'repeatable read', readOnly: true },
  );
  stats.ms = Math.round(performance.now() - start);
  return stats;
}

/** Options of {@link copyTenant}. */
export interface CopyOptions {
  onProgress?: (p: CopyProgress) => void;
  /** Throttle, bytes per second (`--max-rate`). */
  maxBytesPerSecond?: number;
  /** Exported snapshot to read the source in (an online move's slot snapshot). */
  snapshot?: string;
}

/**
 * Prepares the target transaction: constraints deferred when tables reference each other in a cycle
 * (parents are copied before children otherwise), and rows an earlier attempt committed removed, so a
 * resumed copy starts from nothing.
 */
export async function clearTarget(target: PoolClient, tables: TenantTable[], key: { column: string; type: string }) {
  if (tables.some((t, i) => t.parents.some((p) => tables.findIndex((x) => x.table === p) >= i)))
    await target.query('SET CONSTRAINTS ALL DEFERRED');
  for (const t of [...tables].reverse())
    await target.query(`DELETE FROM ${quoteTable(t.table)} WHERE ${tenantFilter(t.keyColumn, key.type)}`);
}

/** Counts the bytes of a table's COPY stream, reports progress and holds chunks to keep under `--max-rate`. */
function copyMeter(table: string, stats: CopyStats, start: number, options: CopyOptions) {
  const limit = options.maxBytesPerSecond;
  const meter = { bytes: 0, chunks: 0, stream: undefined as unknown as Transform };
  meter.stream = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      meter.bytes += chunk.length;
      meter.chunks++;
      if (meter.chunks === 1) crashPoint(`mid-copy:${table}`);
      if (meter.chunks % 64 === 0) options.onProgress?.({ table, rows: -1, bytes: meter.bytes });
      // --max-rate: hold the chunk until the average rate is back under the limit.
      const wait = limit ? ((stats.bytes + meter.bytes) / limit) * 1000 - (performance.now() - start) : 0;
      if (wait > 0) setTimeout(() => cb(null, chunk), wait);
      else cb(null, chunk);
    },
  });
  return meter;
}

/** Pipes one table's tenant rows from the source's COPY TO into the target's COPY FROM. */
async function copyTable(
  source: PoolClient,
  target: PoolClient,
  t: TenantTable,
  key: { column: string; type: string },
  stats: CopyStats,
  start: number,
  options: CopyOptions,
): Promise<void> {
  // pg-copy-streams: `to` reads COPY ... TO STDOUT, `from` writes COPY ... FROM STDIN.
  const { to: copyTo, from: copyFrom } = await streams();
  const t0 = performance.now();
  crashPoint(`before-copy:${t.table}`);
  const cols = t.columns.map(quoteIdent).join(', ');
  const reader = source.query(
    copyTo(
      `COPY (SELECT ${cols} FROM ${quoteTable(t.table)} WHERE ${tenantFilter(t.keyColumn, key.type)}) TO STDOUT (FORMAT binary)`,
    ),
  );
  const writer = target.query(copyFrom(`COPY ${quoteTable(t.table)} (${cols}) FROM STDIN (FORMAT binary)`));
  reader.on('error', (e) => onSide(e, 'source'));
  writer.on('error', (e) => onSide(e, 'target'));
  const meter = copyMeter(t.table, stats, start, options);
  await pipeline(reader, meter.stream, writer);
  const rows = Number((writer as unknown as { rowCount?: number }).rowCount ?? 0);
  // Statistics inside the transaction (ANALYZE counts its own inserts): a table a move emptied keeps
  // "no rows" statistics, and the foreign-key checks of the next table's COPY are planned from them;
  // with two indexes on the tenant column the planner may pick the wrong one and scan the whole
  // tenant per row (minutes instead of seconds). Also gives the app's first queries a good plan.
  await target.query(`ANALYZE ${quoteTable(t.table)}`);
  stats.tables[t.table] = { rows, bytes: meter.bytes, ms: Math.round(performance.now() - t0) };
  stats.rows += rows;
  stats.bytes += meter.bytes;
  options.onProgress?.({ table: t.table, rows, bytes: meter.bytes });
  crashPoint(`after-copy:${t.table}`);
}

/**
 * Advances every sequence feeding a column of the tables past the largest value now in that column
 * (all tenants), never backwards. Fails when a sequence cannot hold the value (its maximum is lower).
 */
export async function advanceSequences(client: PoolClient, tables: TenantTable[]): Promise<void> {
  for (const t of tables) {
    for (const s of t.sequences) {
      const r = await client.query<{ maxv: string | null; last: string; maxseq: string; called: boolean }>(
        `SELECT (SELECT max(${quoteIdent(s.column)})::text FROM ${quoteTable(t.table)}) AS maxv,
                sq.last_value::text AS last, s.seqmax::text AS maxseq, sq.is_called AS called
           FROM pg_sequence s, LATERAL (SELECT last_value, is_called FROM ${s.sequence}) sq
          WHERE s.seqrelid = to_regclass($1)`,
        [s.sequence],
      );
      const row = r.rows[0];
      if (!row)
        throw new ShardctlError(
          `cannot advance sequence ${s.sequence} of ${t.table}.${s.column}: not found on the target`,
          { code: 'SEQUENCE' },
        );
      if (row.maxv === null) continue;
      const max = BigInt(row.maxv);
      if (max > BigInt(row.maxseq)) {
        throw new ShardctlError(
          `sequence ${s.sequence} cannot go past ${max} (its maximum is ${row.maxseq}): copied rows would collide with new ones`,
          { code: 'SEQUENCE' },
        );
      }
      const next = row.called ? BigInt(row.last) : BigInt(row.last) - 1n;
      if (max > next) await client.query('SELECT setval($1::regclass, $2::int8, true)', [s.sequence, max.toString()]);
    }
  }
}

/**
 * Session settings that make the text form of values the same on every server (checksums compare
 * rows as text), for the current transaction.
 */
export const STABLE_TEXT_SETTINGS =
  "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'";

/** Row count and an order-independent checksum of one tenant's rows in a table, computed in SQL. */
export async function tenantChecksums(
  client: PoolClient,
  tables: TenantTable[],
  tenant: string | string[],
  key: { column: string; type: string },
  options: { snapshot?: string } = {},
): Promise<Record<string, { rows: string; sum: string }>> {
  const out: Record<string, { rows: string; sum: string }> = {};
  await withTransaction(
    client,
    async () => {
      if (options.snapshot) await client.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(options.snapshot)}`);
      // The text form of values depends on session settings: fix them so both sides print alike.
      await client.query(STABLE_TEXT_SETTINGS);
      await bindTenant(client, tenant);
      for (const t of tables) {
        const cols = t.allColumns.map((c) => quoteIdent(c.name)).join(', ');
        const r = await client.query<{ n: string; h: string }>(
          `SELECT count(*)::text AS n,
                  coalesce(sum(('x' || substr(md5(ROW(${cols})::text), 1, 15))::bit(60)::int8::numeric), 0)::text AS h
             FROM ${quoteTable(t.table)} WHERE ${tenantFilter(t.keyColumn, key.type)}`,
        );
        out[t.table] = { rows: r.rows[0]!.n, sum: r.rows[0]!.h };
      }
    },
    { isolation: 'repeatable read', readOnly: true },
  );
  return out;
}
