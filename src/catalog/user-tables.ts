import type { ShardMap } from '../config/shard-map.js';

/**
 * The tenant tables of a shard: ordinary and partitioned tables (not partitions, not shardctl's own,
 * not system schemas) that have their shard-key column, optionally limited to the names in `$2`. The
 * column is `$1` unless the jsonb `$3` (the map's `shardKey.columns`: `schema.table` or bare table
 * name -> column) names another. Pass {@link tenantTablesParams} as the parameters.
 * Columns: table_name (schema.table), schema_name, relname, reltuples, key_column.
 */
export const TENANT_TABLES_SQL = `
  SELECT n.nspname || '.' || c.relname AS table_name, n.nspname AS schema_name, c.relname, c.reltuples::float8 AS reltuples,
         a.attname::text AS key_column
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped AND a.attnum > 0
     AND a.attname = coalesce($3::jsonb ->> (n.nspname || '.' || c.relname), $3::jsonb ->> c.relname, $1)
   WHERE c.relkind IN ('r', 'p')
     AND NOT c.relispartition
     AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'shardctl') AND n.nspname NOT LIKE 'pg_toast%'
     AND ($2::text[] IS NULL OR c.relname = ANY($2) OR (n.nspname || '.' || c.relname) = ANY($2))
   ORDER BY 1`;

/**
 * The parameters of {@link TENANT_TABLES_SQL} for a map: key column, table list, per-table columns.
 *
 * @example
 * await client.query(TENANT_TABLES_SQL, tenantTablesParams(map));
 */
export function tenantTablesParams(map: Pick<ShardMap, 'shardKey' | 'tables'>): [string, string[] | null, string] {
  return [map.shardKey.column, map.tables, JSON.stringify(map.shardKey.columns ?? {})];
}
