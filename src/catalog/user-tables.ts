/**
 * The tenant tables of a shard: ordinary and partitioned tables (not partitions, not shardctl's own,
 * not system schemas) that have the shard-key column `$1`, optionally limited to the names in `$2`.
 * Columns: table_name (schema.table), schema_name, relname, reltuples.
 */
export const TENANT_TABLES_SQL = `
  SELECT n.nspname || '.' || c.relname AS table_name, n.nspname AS schema_name, c.relname, c.reltuples::float8 AS reltuples
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $1 AND NOT a.attisdropped AND a.attnum > 0
   WHERE c.relkind IN ('r', 'p')
     AND NOT c.relispartition
     AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'shardctl') AND n.nspname NOT LIKE 'pg_toast%'
     AND ($2::text[] IS NULL OR c.relname = ANY($2) OR (n.nspname || '.' || c.relname) = ANY($2))
   ORDER BY 1`;
