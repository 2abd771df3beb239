import { quoteIdent, quoteLiteral, quoteTable } from '../db/sql.js';
import type { ShardMap } from '../config/shard-map.js';
import { ruleSql } from '../placement/placement.js';

/** A tenant table and the column that holds the tenant in it (`shardKey.columns`, else `shardKey.column`). */
export interface KeyedTable {
  table: string;
  keyColumn: string;
}

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
 * placed elsewhere. Each table is read by its own tenant column (`tenants.id` beside `users.tenant_id`).
 * Verify and the router's data check on a fleet whose rule is not recorded share it.
 * Result columns: `tbl`, `tenant` (text, NULL for rows without a key), `rows` (text).
 *
 * @example
 * const q = misplacedRowsSql(map, [{ table: 'public.users', keyColumn: 'tenant_id' }], 1, ['7'], ['4']);
 * await client.query(q.sql, q.params);
 */
export function misplacedRowsSql(
  map: ShardMap,
  tables: KeyedTable[],
  shardIndex: number,
  here: string[],
  elsewhere: string[],
): MisplacedQuery {
  const arr = ARRAY_TYPE[map.shardKey.type];
  const params: unknown[] = [shardIndex];
  const param = (value: unknown) => `$${params.push(value)}`;
  const owners = map.placement.strategy === 'hash' ? param(bucketOwners(map)) : '';
  const hereP = here.length > 0 ? param(here) : '';
  const elsewhereP = elsewhere.length > 0 ? param(elsewhere) : '';
  const conditions = (key: string): string[] => {
    let notMine: string;
    if (map.placement.strategy === 'modulo') {
      // k % n is in (-n, n): the row is this shard's when it equals i or i - n (one modulo per row,
      // the cost that matters on a table of millions).
      const n = map.shards.length;
      notMine = `(${key} % ${n}) NOT IN ($1::int4, $1::int4 - ${n})`;
    } else {
      notMine = `(${owners}::int4[])[(${ruleSql(map, key)}) + 1] <> $1::int4`;
    }
    // Empty directory arrays are left out of the SQL rather than tested on every row.
    return [
      `${key} IS NULL`,
      ...(elsewhereP ? [`${key} = ANY(${elsewhereP}::${arr})`] : []),
      hereP ? `(${notMine} AND ${key} <> ALL(${hereP}::${arr}))` : notMine,
    ];
  };
  const one = ({ table, keyColumn }: KeyedTable) => {
    const key = `t.${quoteIdent(keyColumn)}`;
    return `SELECT ${quoteLiteral(table)}::text AS tbl, ${key}::text AS tenant, count(*)::text AS rows
  FROM ${quoteTable(table)} t
 WHERE ${conditions(key).join('\n    OR ')}
 GROUP BY 2`;
  };
  return { sql: tables.map(one).join('\nUNION ALL\n'), params };
}

/** Owner shard index of each bucket (`hash` strategy), as a dense array. */
export function bucketOwners(map: ShardMap): number[] {
  if (map.placement.strategy !== 'hash') return [];
  const owners = new Array<number>(map.placement.buckets).fill(-1);
  for (const s of map.shards) for (const r of s.buckets) for (let b = r.from; b <= r.to; b++) owners[b] = s.index;
  return owners;
}
