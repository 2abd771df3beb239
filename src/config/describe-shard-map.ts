import type { ShardMap } from './shard-map.js';

/** What `shardctl validate` reports about a valid map. */
export interface ShardMapSummary {
  file: string;
  strategy: 'modulo' | 'hash';
  shardKey: string;
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
    shardKey: `${map.shardKey.column} (${map.shardKey.type})`,
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
