import type { PoolClient } from 'pg';
import type { ShardMap } from '../config/shard-map.js';
import { ensureCatalogSchema } from '../catalog/catalog-schema.js';
import { forEachShard } from '../db/for-each-shard.js';
import { ADVISORY_NAMESPACE, LockKey } from '../db/lock-keys.js';
import { ShardPools } from '../db/shard-pools.js';
import { withTransaction } from '../db/transaction.js';
import type { ShardResult } from '../db/for-each-shard.js';
import { ExitCode, ShardctlError } from '../errors.js';
import { compileRule } from '../placement/placement.js';
import { parseTenant } from '../placement/tenant-key.js';
import { TENANT_TABLES_SQL, tenantTablesParams } from '../catalog/user-tables.js';
import { quoteIdent, quoteTable } from '../db/sql.js';
import { FROZEN, writeRuleState } from '../catalog/rule-state.js';

/** Result of {@link freezePlacements}. */
export interface FreezeReport {
  /** Tenants recorded in the directory. */
  tenants: number;
  /** Tenants found per shard. */
  perShard: Record<string, number>;
}

/** Advisory lock key serialising directory rewrites (freeze, prune) on the catalog. */

/**
 * Records every tenant's current shard in the directory, found by scanning the shard-key values of
 * the tenant tables on every shard, and marks the rule state frozen: from then on any placement rule
 * (a grown or shrunk shard list) routes every existing tenant to where its rows are. Refuses, writing
 * nothing, when a shard is unreachable or a tenant has rows on two shards.
 *
 * @example
 * const { tenants } = await freezePlacements(map); // then edit the shard list
 */
export async function freezePlacements(map: ShardMap, options: { timeoutMs?: number } = {}): Promise<FreezeReport> {
  const pools = await ShardPools.open(map, {
    connectTimeoutMs: options.timeoutMs ?? 5000,
    maxPerShard: 1,
    applicationName: 'shardctl freeze',
  });
  try {
    const results = await forEachShard(map.shards, (shard) => pools.withShard(shard.name, (c) => tenantsOn(c, map)));
    const { where, perShard } = tenantShards(map, results);
    const tenants = [...where.keys()];
    const shards = tenants.map((t) => where.get(t)![0]!);
    await pools.withShard(map.catalog, async (c) => {
      await ensureCatalogSchema(c);
      await withTransaction(c, async () => {
        await c.query('SELECT pg_advisory_xact_lock($1::int4, $2::int4)', [ADVISORY_NAMESPACE, LockKey.directory]);
        await c.query(
          `INSERT INTO shardctl.placements (tenant, shard) SELECT * FROM unnest($1::text[], $2::text[])
           ON CONFLICT (tenant) DO UPDATE SET shard = excluded.shard, updated_at = now()`,
          [tenants, shards],
        );
        await writeRuleState(c, FROZEN, { map });
      });
    });
    return { tenants: tenants.length, perShard };
  } finally {
    await pools.close();
  }
}

/** The distinct tenants with rows in any tenant table of one shard, as text. */
async function tenantsOn(c: PoolClient, map: ShardMap): Promise<string[]> {
  const tables = (await c.query<{ table_name: string; key_column: string }>(TENANT_TABLES_SQL, tenantTablesParams(map)))
    .rows;
  if (tables.length === 0) return [];
  // Each table by its own tenant column (tenants.id, users.tenant_id).
  const sql = tables
    .map((t) => {
      const key = quoteIdent(t.key_column);
      return `SELECT DISTINCT ${key}::text AS tenant FROM ${quoteTable(t.table_name)} WHERE ${key} IS NOT NULL`;
    })
    .join('\nUNION\n');
  return (await c.query<{ tenant: string }>(sql)).rows.map((r) => r.tenant);
}

/**
 * Each tenant's shards (canonical tenant text) and the tenant count per shard; refuses when a shard was
 * not scanned or a tenant has rows on two shards.
 */
function tenantShards(
  map: ShardMap,
  results: ShardResult<string[]>[],
): { where: Map<string, string[]>; perShard: Record<string, number> } {
  const failed = results.filter((r) => r.status === 'failed');
  if (failed.length > 0) {
    throw new ShardctlError(
      `cannot freeze: ${failed.map((f) => (f.status === 'failed' ? f.error.message : '')).join('; ')}`,
      {
        code: 'UNREACHABLE',
        hint: 'every shard must be reachable: a tenant on a shard that was not scanned would be left to the rule',
      },
    );
  }
  const where = new Map<string, string[]>();
  const perShard: Record<string, number> = {};
  for (const r of results) {
    if (r.status !== 'ok') continue;
    perShard[r.shard] = r.value.length;
    for (const t of r.value) {
      // Canonical form, so that the directory key equals what locate looks up.
      const canonical = String(parseTenant(t, map.shardKey.type));
      where.set(canonical, [...(where.get(canonical) ?? []), r.shard]);
    }
  }
  const split = [...where].filter(([, s]) => s.length > 1);
  if (split.length > 0) {
    throw new ShardctlError(
      `cannot freeze: ${split.length} tenant(s) have rows on two shards (${split
        .slice(0, 10)
        .map(([t, s]) => `${t} on ${s.join(' and ')}`)
        .join(', ')}${split.length > 10 ? ', ...' : ''})`,
      {
        code: 'SPLIT_TENANTS',
        exitCode: ExitCode.Failed,
        hint: 'repair them first: `shardctl verify` lists their rows per shard',
        details: { tenants: split },
      },
    );
  }
  return { where, perShard };
}

/**
 * Drops directory entries that agree with the map's rule and records the map's rule as the one
 * tenants outside the directory follow, in one transaction. Run with the map the applications use.
 * Returns how many entries were dropped.
 *
 * @example
 * await pruneDirectory(map) // 1 204 entries now implied by the rule
 */
export async function pruneDirectory(map: ShardMap, pools: ShardPools): Promise<number> {
  const rule = compileRule(map);
  return pools.withShard(map.catalog, async (c) => {
    await ensureCatalogSchema(c);
    return withTransaction(c, async () => {
      await c.query('SELECT pg_advisory_xact_lock($1::int4, $2::int4)', [ADVISORY_NAMESPACE, LockKey.directory]);
      const rows = (
        await c.query<{ tenant: string; shard: string }>('SELECT tenant, shard FROM shardctl.placements FOR UPDATE')
      ).rows;
      const agree = rows
        .filter((r) => rule(parseTenant(r.tenant, map.shardKey.type)).shard.name === r.shard)
        .map((r) => r.tenant);
      if (agree.length > 0) await c.query('DELETE FROM shardctl.placements WHERE tenant = ANY($1::text[])', [agree]);
      await writeRuleState(c, map);
      return agree.length;
    });
  });
}
