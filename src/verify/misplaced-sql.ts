import { quoteIdent, quoteLiteral, quoteTable } from '../db/sql.js';
import type { ShardMap } from '../config/shard-map.js';
import { ruleSql } from '../placement/placement.js';

/** Parameters and SQL of the misplaced-rows check of one table on one shard. */
export interface MisplacedQuery {
  sql: string;
  params: unknown[];
}

const ARRAY_TYPE = { bigint: 'int8[]', text: 'text[]', uuid: 'uuid[]' } as const;

/**
 * The SQL, run on one shard, that counts per table and tenant the rows that do not belong there:
 * rows whose owner (the directory's entry, else the rule) is another shard, and rows without a shard
 * key. The rule is evaluated by PostgreSQL itself (`ruleSql`), so each table is scanned once, in one
 * statement for all tables, and no row travels to the client. Directory exceptions are passed as two
 * small arrays (left out when empty): tenants placed on this shard against the rule and tenants
 * placed elsewhere.
 * Result columns: `tbl`, `tenant` (text, NULL for rows without a key), `rows` (text).
 *
 * @example
 * const q = misplacedRowsSql(map, ['public.users', 'public.invoices'], 1, ['7'], ['4']);
 * await client.query(q.sql, q.params);
 */
export function misplacedRowsSql(
  map: ShardMap,
  tables: string[],
  shardIndex: number,
  here: string[],
  elsewhere: string[],
): MisplacedQuery {
  const key = `t.${quoteIdent(map.shardKey.column)}`;
  const arr = ARRAY_TYPE[map.shardKey.type];
  const rule = ruleSql(map, key);
  const params: unknown[] = [shardIndex];
  const param = (value: unknown) => `$${params.push(value)}`;
  let notMine: string;
  if (map.placement.strategy === 'modulo') {
    // k % n is in (-n, n): the row is this shard's when it equals i or i - n (one modulo per row,
    // the cost that matters on a table of millions).
    const n = map.shards.length;
    notMine = `(${key} % ${n}) NOT IN ($1::int4, $1::int4 - ${n})`;
  } else {
    notMine = `(${param(bucketOwners(map))}::int4[])[(${rule}) + 1] <> $1::int4`;
  }
  // Empty directory arrays are left out of the SQL rather than tested on every row.
  const conditions = [
    `${key} IS NULL`,
    ...(elsewhere.length > 0 ? [`${key} = ANY(${param(elsewhere)}::${arr})`] : []),
    here.length > 0 ? `(${notMine} AND ${key} <> ALL(${param(here)}::${arr}))` : notMine,
  ];
  const one = (
    table: string,
  ) => `SELECT ${quoteLiteral(table)}::text AS tbl, ${key}::text AS tenant, count(*)::text AS rows
  FROM ${quoteTable(table)} t
 WHERE ${conditions.join('\n    OR ')}
 GROUP BY 2`;
  return { sql: tables.map(one).join('\nUNION ALL\n'), params };
}

/** Owner shard index of each bucket (`hash` strategy), as a dense array. */
export function bucketOwners(map: ShardMap): number[] {
  if (map.placement.strategy !== 'hash') return [];
  const owners = new Array<number>(map.placement.buckets).fill(-1);
  for (const s of map.shards) for (const r of s.buckets) for (let b = r.from; b <= r.to; b++) owners[b] = s.index;
  return owners;
}
