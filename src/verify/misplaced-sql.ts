import type { ShardMap } from '../config/shard-map.js';
import { ruleSql } from '../placement/placement.js';

/** Parameters and SQL of the misplaced-rows check of one table on one shard. */
export interface MisplacedQuery {
  sql: string;
  params: unknown[];
}

const ARRAY_TYPE = { bigint: 'int8[]', text: 'text[]', uuid: 'uuid[]' } as const;

/** Quotes a possibly schema-qualified table name (`schema.table` or `table`). */
export function quoteTable(name: string): string {
  return name
    .split('.')
    .map((p) => `"${p.replace(/"/g, '""')}"`)
    .join('.');
}

/** Quotes one identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * The SQL, run on one shard, that counts per tenant the rows of a table that do not belong there:
 * rows whose owner (the directory's entry, else the rule) is another shard, and rows without a shard
 * key. The rule is evaluated by PostgreSQL itself (`ruleSql`), so the check scans the table once and
 * moves no row to the client. Directory exceptions are passed as two small arrays: tenants placed on
 * this shard against the rule (`$2`) and tenants placed elsewhere (`$3`).
 *
 * @param owners for `hash`: owner shard index of every bucket; for `modulo`: ignored
 * @example
 * const q = misplacedRowsSql(map, 'public.users', 1, ['7'], ['4']);
 * await client.query(q.sql, q.params);
 */
export function misplacedRowsSql(map: ShardMap, table: string, shardIndex: number, here: string[], elsewhere: string[]): MisplacedQuery {
  const key = `t.${quoteIdent(map.shardKey.column)}`;
  const arr = ARRAY_TYPE[map.shardKey.type];
  const rule = ruleSql(map, key);
  const owner = map.placement.strategy === 'modulo' ? rule : `($4::int4[])[(${rule}) + 1]`;
  const params: unknown[] = [shardIndex, here, elsewhere];
  if (map.placement.strategy === 'hash') params.push(bucketOwners(map));
  const sql = `SELECT ${key}::text AS tenant, count(*)::text AS rows
  FROM ${quoteTable(table)} t
 WHERE ${key} IS NULL
    OR ${key} = ANY($3::${arr})
    OR ((${owner}) <> $1::int4 AND ${key} <> ALL($2::${arr}))
 GROUP BY 1`;
  return { sql, params };
}

/** Owner shard index of each bucket (`hash` strategy), as a dense array. */
export function bucketOwners(map: ShardMap): number[] {
  if (map.placement.strategy !== 'hash') return [];
  const owners = new Array<number>(map.placement.buckets).fill(-1);
  for (const s of map.shards) for (const r of s.buckets) for (let b = r.from; b <= r.to; b++) owners[b] = s.index;
  return owners;
}
