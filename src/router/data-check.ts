import type { PoolClient } from 'pg';
import type { ShardMap } from '../config/shard-map.js';
import { misplacedRowsSql, type KeyedTable } from '../catalog/misplaced-sql.js';
import { TENANT_TABLES_SQL, tenantTablesParams } from '../catalog/user-tables.js';
import { forEachShard } from '../db/for-each-shard.js';
import type { ShardPools } from '../db/shard-pools.js';
import { keyCast, quoteIdent, quoteTable } from '../db/sql.js';
import { withTransaction } from '../db/transaction.js';
import { ExitCode, ShardctlError } from '../errors.js';

/**
 * What the shards' rows say about where tenants live, for a fleet whose catalog records no placement
 * rule: the map's rule is then unproven (the map may have grown since the data was placed, or the
 * fleet was sharded by hand), so the router checks it against the data instead of trusting it.
 */
export interface DataPlacement {
  /** Tenants (canonical text) whose rows sit on one shard other than the one the map names. */
  elsewhere: Map<string, string>;
  /** Tenants with rows on two or more shards: no answer is right for them. */
  split: Map<string, string[]>;
}

/** The tenant tables of one shard, each with its tenant column. */
export async function keyedTables(c: PoolClient, map: ShardMap): Promise<KeyedTable[]> {
  const r = await c.query<{ table_name: string; key_column: string }>(TENANT_TABLES_SQL, tenantTablesParams(map));
  return r.rows.map((t) => ({ table: t.table_name, keyColumn: t.key_column }));
}

/** A typed refusal naming the shard whose rows could not be read. */
function uncheckable(shard: string, cause: Error): ShardctlError {
  return new ShardctlError(
    `the catalog records no placement rule and shard ${shard} could not be checked (${cause.message}): shardctl will not answer from an unproven rule`,
    {
      code: 'RULE_UNRECORDED',
      exitCode: ExitCode.Failed,
      shard,
      hint: 'make every shard reachable, or run `shardctl adopt` once: it checks every row and records the rule',
      cause,
    },
  );
}

/**
 * Scans every shard once (the misplaced-rows SQL of verify: each table read once, the rule evaluated
 * by PostgreSQL) for rows that are not where the map's rule and the directory put them, then asks the
 * shards those tenants should be on whether they hold rows there too. Throws `RULE_UNRECORDED` when a
 * shard cannot be read: an unchecked shard could hold any tenant.
 *
 * @example
 * const found = await scanPlacement(map, pools, directory.entries); found.elsewhere.get('-7') // 's2'
 */
export async function scanPlacement(
  map: ShardMap,
  pools: ShardPools,
  directory: Map<string, string>,
  owner: (tenant: string) => string,
): Promise<DataPlacement> {
  const results = await forEachShard(map.shards, (shard) =>
    pools.withShard(shard.name, (c) =>
      withTransaction(
        c,
        async () => {
          const tables = await keyedTables(c, map);
          if (tables.length === 0) return { tables, tenants: [] as string[] };
          const here: string[] = [];
          const elsewhere: string[] = [];
          for (const [t, s] of directory) (s === shard.name ? here : elsewhere).push(t);
          const q = misplacedRowsSql(map, tables, shard.index, here, elsewhere);
          const rows = (await c.query<{ tenant: string | null }>(q.sql, q.params)).rows;
          return { tables, tenants: [...new Set(rows.flatMap((r) => (r.tenant === null ? [] : [r.tenant])))] };
        },
        { readOnly: true, isolation: 'repeatable read' },
      ),
    ),
  );
  const where = new Map<string, string[]>();
  const tablesOf = new Map<string, KeyedTable[]>();
  for (const r of results) {
    if (r.status === 'failed') throw uncheckable(r.shard, r.error);
    if (r.status !== 'ok') continue;
    tablesOf.set(r.shard, r.value.tables);
    for (const t of r.value.tenants) where.set(t, [...(where.get(t) ?? []), r.shard]);
  }
  await addOwnerRows(map, pools, where, owner, tablesOf);
  const out: DataPlacement = { elsewhere: new Map(), split: new Map() };
  for (const [t, shards] of where) {
    if (shards.length === 1) out.elsewhere.set(t, shards[0]!);
    else out.split.set(t, shards);
  }
  return out;
}

/** Adds the owner shard to the tenants found misplaced that also have rows on it (a split tenant). */
async function addOwnerRows(
  map: ShardMap,
  pools: ShardPools,
  where: Map<string, string[]>,
  owner: (tenant: string) => string,
  tablesOf: Map<string, KeyedTable[]>,
): Promise<void> {
  const byOwner = new Map<string, string[]>();
  for (const t of where.keys()) byOwner.set(owner(t), [...(byOwner.get(owner(t)) ?? []), t]);
  for (const [shard, tenants] of byOwner) {
    const tables = tablesOf.get(shard);
    if (!tables || tables.length === 0) continue;
    const present = await pools
      .withShard(shard, (c) => tenantsPresent(c, map, tables, tenants))
      .catch((e: Error) => {
        throw uncheckable(shard, e);
      });
    for (const t of present) where.get(t)!.push(shard);
  }
}

/** Which of `tenants` have at least one row in any of `tables` on this shard (by each table's key index). */
export async function tenantsPresent(
  c: PoolClient,
  map: ShardMap,
  tables: KeyedTable[],
  tenants: string[],
): Promise<string[]> {
  if (tables.length === 0 || tenants.length === 0) return [];
  const arr = `${keyCast(map.shardKey.type)}[]`;
  const sql = tables
    .map(
      ({ table, keyColumn }) =>
        `SELECT DISTINCT ${quoteIdent(keyColumn)}::text AS t FROM ${quoteTable(table)} WHERE ${quoteIdent(keyColumn)} = ANY($1::${arr})`,
    )
    .join('\nUNION\n');
  return (await c.query<{ t: string }>(sql, [tenants])).rows.map((r) => r.t);
}
