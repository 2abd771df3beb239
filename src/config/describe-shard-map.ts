import type { ShardMap } from './shard-map.js';

/** What `shardctl validate` reports about a valid map. */
export interface ShardMapSummary {
  file: string;
  strategy: 'modulo' | 'hash';
  /** The key column and type, with the per-table columns: `tenant_id (bigint); tenants.id`. */
  shardKey: string;
  /** Tables whose tenant column is not the map's `column` (`shardKey.columns`). */
  keyColumns?: Record<string, string>;
  shards: number;
  catalog: string;
  /** `hash` only: bucket count and how many each shard owns. */
  buckets?: { total: number; perShard: Record<string, number> };
  migrations: string;
  tables: string[] | 'auto';
  reference: string[];
}

/**
 * Summarises a validated map for `shardctl validate`.
 *
 * @example
 * describeShardMap(map).strategy // 'modulo'
 */
export function describeShardMap(map: ShardMap): ShardMapSummary {
  return {
    file: map.file,
    strategy: map.placement.strategy,
    shardKey: `${map.shardKey.column} (${map.shardKey.type})${keyColumnsText(map)}`,
    ...(Object.keys(map.shardKey.columns ?? {}).length > 0 ? { keyColumns: { ...map.shardKey.columns } } : {}),
    shards: map.shards.length,
    catalog: map.catalog,
    ...(map.placement.strategy === 'hash'
      ? {
          buckets: {
            total: map.placement.buckets,
            perShard: Object.fromEntries(
              map.shards.map((s) => [s.name, s.buckets.reduce((n, r) => n + r.to - r.from + 1, 0)]),
            ),
          },
        }
      : {}),
    migrations: map.migrations,
    tables: map.tables ?? 'auto',
    reference: map.reference,
  };
}

/** `; tenants.id, accounts.account_id` for the tables that name their own tenant column, else nothing. */
function keyColumnsText(map: ShardMap): string {
  const entries = Object.entries(map.shardKey.columns ?? {});
  return entries.length === 0 ? '' : `; ${entries.map(([t, c]) => `${t}.${c}`).join(', ')}`;
}
