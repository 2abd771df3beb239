/** Type of the shard-key column. `bigint` also covers `integer` and `smallint` columns. */
export type ShardKeyType = 'bigint' | 'text' | 'uuid';

/** An inclusive range of hash buckets owned by one shard. */
export interface BucketRange {
  /** First bucket, inclusive. */
  from: number;
  /** Last bucket, inclusive. */
  to: number;
}

/** One shard of a validated map. */
export interface Shard {
  /** Unique name, for example `shard-0`. */
  name: string;
  /** Position in the map's list, 0-based: the `modulo` rule maps to it. */
  index: number;
  /** Connection URL with `${VAR}` already substituted. Contains the password: show only through `redactUrl`. */
  url: string;
  /** How other shards reach this one for replication, when it differs from `url`. Default: `url`. */
  replicationUrl?: string;
  /** Hash buckets this shard owns (`hash` strategy only; empty for `modulo`). */
  buckets: BucketRange[];
}

/** Placement rule: `modulo` (tenant mod shard count) or `hash` (buckets owned by shards). */
export type PlacementRule = { strategy: 'modulo' } | { strategy: 'hash'; buckets: number };

/** Settings of `shardctl migrate` that the map may set. */
export interface MigrateSettings {
  /** `lock_timeout` for migration DDL, in milliseconds. Default 5000 (0 disables). */
  lockTimeoutMs: number;
  /** `statement_timeout` for migration statements, in milliseconds. Default 0 (none). */
  statementTimeoutMs: number;
}

/** What the map says about the fleet's routers. */
export interface RouterSettings {
  /**
   * How long a router (`createRouter`) serves the placement directory from memory before checking its
   * version again, in milliseconds. Default 2000. A move waits this long plus a margin after its switch
   * before it deletes the source rows, so that no router still routing the tenant to its old shard
   * finds the rows gone.
   */
  directoryTtlMs: number;
}

/** Margin a move's cleanup waits beyond the routers' directory TTL (a router's re-read takes time too). */
export const CLEANUP_MARGIN_MS = 500;

/**
 * A validated shard map: every field present, every reference checked.
 * Produced by `loadShardMap` or `parseShardMap`; never built by hand from YAML.
 *
 * @example
 * const map = await loadShardMap('shards.yaml');
 * map.shards.map((s) => s.name); // ['shard-0', 'shard-1']
 */
export interface ShardMap {
  /** Format version; only 1 exists. */
  version: 1;
  /** Path of the file it was read from (as given), or `<inline>`. */
  file: string;
  /**
   * Shard-key column and its type. `columns` names the tables whose tenant column has another name
   * (for example `{ tenants: 'id' }` when every other table uses `tenant_id`); read it through
   * {@link shardKeyColumn}.
   */
  shardKey: { column: string; type: ShardKeyType; columns: Record<string, string> };
  placement: PlacementRule;
  /** Shards, in the listed order. */
  shards: Shard[];
  /** Name of the shard holding the catalog (placement directory, move journal). Default: the first shard. */
  catalog: string;
  /** Absolute path of the migrations folder. Default: `./migrations` beside the map. */
  migrations: string;
  /** Tenant-scoped tables; `null` means every table having the shard-key column. */
  tables: string[] | null;
  /** Reference tables, present on every shard and never moved. Default `[]`. */
  reference: string[];
  migrate: MigrateSettings;
  routers: RouterSettings;
}

/** The configuration as written, before validation: every field unknown. */
export type RawShardMap = Record<string, unknown>;

/**
 * The column that holds the tenant in a table: the map's per-table override (`shardKey.columns`), else
 * `shardKey.column`. A table is named as in the map: `schema.users` matches an override for
 * `schema.users` or for the bare `users` (a bare name means that table in any schema, as in `tables`);
 * a bare `users` matches `users` or `public.users`.
 *
 * @example
 * shardKeyColumn(map, 'public.tenants'); // 'id' with shardKey: { column: tenant_id, columns: { tenants: id } }
 * shardKeyColumn(map, 'users'); // 'tenant_id'
 */
export function shardKeyColumn(map: Pick<ShardMap, 'shardKey'>, table: string): string {
  const cols = map.shardKey.columns ?? {};
  const dot = table.indexOf('.');
  const bare = dot < 0 ? table : table.slice(dot + 1);
  return cols[table] ?? cols[bare] ?? (dot < 0 ? cols[`public.${bare}`] : undefined) ?? map.shardKey.column;
}
