import type { ShardMap } from '../config/shard-map.js';
import { readCatalogVersion } from '../catalog/catalog-schema.js';
import { redactUrl } from '../redact.js';
import { forEachShard, type ShardResult } from '../db/for-each-shard.js';
import { ShardPools } from '../db/shard-pools.js';
import { ShardctlError } from '../errors.js';
import { replicationLeftovers } from '../catalog/leftovers.js';
import { TENANT_TABLES_SQL, tenantTablesParams } from '../catalog/user-tables.js';

/** A shard as listed by `shardctl shards`: never with its password. */
export interface ShardSummary {
  name: string;
  index: number;
  /** URL with the password replaced by `***`. */
  url: string;
  /** Bucket ranges as text, for example `0-2047` (`hash` only). */
  buckets?: string;
  catalog: boolean;
}

/** What `shards --check` learns from one reachable shard. */
export interface ShardHealth {
  /** Round trip of `SELECT 1` after connecting, in ms. */
  latencyMs: number;
  /** `server_version`, for example `18.4`. */
  serverVersion: string;
  /** `pg_database_size` of the shard's database, in bytes. */
  databaseBytes: number;
  /** Estimated rows of tenant tables (from planner statistics, not a count). */
  tenantRowsEstimate: number;
  /** Tables counted as tenant tables. */
  tenantTables: number;
  /** Internal schema version; 0 when shardctl never wrote to this shard. */
  catalogVersion: number;
  /** shardctl's replication slots on this shard, with the WAL each keeps (an unconsumed slot fills the disk). */
  replicationSlots: { name: string; active: boolean; retainedWalBytes: number }[];
  /** shardctl transactions prepared here and not yet finished (in doubt until `shardctl recover`). */
  preparedTransactions: number;
  /** `max_prepared_transactions`: 0 means this shard cannot take part in a transaction across shards. */
  maxPreparedTransactions: number;
}

/**
 * Lists the shards of a map with redacted URLs; connects to nothing.
 *
 * @example
 * listShards(map)[0].url // the URL with its password masked
 */
export function listShards(map: ShardMap): ShardSummary[] {
  return map.shards.map((s) => ({
    name: s.name,
    index: s.index,
    url: redactUrl(s.url),
    ...(map.placement.strategy === 'hash'
      ? { buckets: s.buckets.map((r) => (r.from === r.to ? `${r.from}` : `${r.from}-${r.to}`)).join(',') || '(none)' }
      : {}),
    catalog: s.name === map.catalog,
  }));
}

/** Options of {@link checkShards}. */
export interface CheckShardsOptions {
  /** Connection and query timeout per shard, in ms. Default 5000. */
  timeoutMs?: number;
}

/**
 * Bounds one shard's whole check (connect and queries) as a backstop to the driver's own timeouts. A
 * race against one promise rather than a wait for a condition, so not a `pollUntil` (db/poll.ts) loop:
 * polling would only add latency to every answer.
 */
async function withDeadline<T>(p: Promise<T>, ms: number, shard: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ShardctlError(`shard ${shard}: timed out after ${ms} ms`, { code: 'UNREACHABLE', shard })),
      ms,
    );
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** How one shard's tenant data compares with the fleet's mean. */
export interface ShardBalance {
  shard: string;
  /** Bytes of tenant tables (with indexes and TOAST). */
  bytes: number;
  /** Tenants found (a sampled table may miss tiny tenants: then `estimated`). */
  tenants: number;
  /** (bytes - mean) / mean; 0 when the fleet is empty. */
  skew: number;
  estimated: boolean;
}

/**
 * Turns measured shard sizes into the balance view of `shards --check`: bytes, tenant count and skew
 * against the mean of the measured shards.
 *
 * @example
 * shardBalance([{ shard: 'a', bytes: 150, ... }, { shard: 'b', bytes: 50, ... }]) // skews 0.5 and -0.5
 */
export function shardBalance(
  sizes: { shard: string; bytes: number; tenants: unknown[]; estimated: boolean }[],
): ShardBalance[] {
  const mean = sizes.reduce((a, s) => a + s.bytes, 0) / (sizes.length || 1);
  return sizes.map((s) => ({
    shard: s.shard,
    bytes: s.bytes,
    tenants: s.tenants.length,
    skew: mean > 0 ? (s.bytes - mean) / mean : 0,
    estimated: s.estimated,
  }));
}
/**
 * Connects to every shard in parallel, each within the timeout, and reports its health or the
 * reason it is unreachable (refused, timed out, authentication failed). Reads only.
 *
 * @example
 * const results = await checkShards(map, { timeoutMs: 2000 });
 * results.filter((r) => r.status === 'failed').map((r) => r.shard);
 */
export async function checkShards(
  map: ShardMap,
  options: CheckShardsOptions = {},
): Promise<ShardResult<ShardHealth>[]> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const pools = await ShardPools.open(map, {
    connectTimeoutMs: timeoutMs,
    maxPerShard: 1,
    statementTimeoutMs: timeoutMs,
  });
  try {
    return await forEachShard(map.shards, (shard) =>
      withDeadline(
        pools.withShard(shard.name, async (client) => {
          const t0 = performance.now();
          await client.query('SELECT 1');
          const latencyMs = performance.now() - t0;
          const info = await client.query<{ v: string; size: string; prepared: number; maxp: number }>(
            `SELECT current_setting('server_version') AS v, pg_database_size(current_database())::text AS size,
                    current_setting('max_prepared_transactions')::int AS maxp,
                    (SELECT count(*)::int FROM pg_prepared_xacts
                      WHERE database = current_database() AND starts_with(gid, 'shardctl_')) AS prepared`,
          );
          const tables = await client.query<{ reltuples: number }>(TENANT_TABLES_SQL, tenantTablesParams(map));
          const catalogVersion = await readCatalogVersion(client);
          const slots = (await replicationLeftovers(client)).filter((r) => r.kind === 'replication-slot');
          return {
            latencyMs: Math.round(latencyMs * 100) / 100,
            serverVersion: info.rows[0]!.v,
            databaseBytes: Number(info.rows[0]!.size),
            // reltuples is -1 for a table never analysed; count it as unknown (0) rather than negative.
            tenantRowsEstimate: Math.round(tables.rows.reduce((sum, r) => sum + Math.max(0, r.reltuples), 0)),
            tenantTables: tables.rows.length,
            catalogVersion,
            replicationSlots: slots.map((r) => ({
              name: r.name,
              active: r.active ?? false,
              retainedWalBytes: r.retainedWalBytes ?? 0,
            })),
            preparedTransactions: info.rows[0]!.prepared,
            maxPreparedTransactions: info.rows[0]!.maxp,
          };
        }),
        timeoutMs + 1000,
        shard.name,
      ),
    );
  } finally {
    await pools.close();
  }
}
