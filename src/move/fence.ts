import type { PoolClient } from 'pg';
import { quoteIdent, quoteLiteral, quoteTable } from '../verify/misplaced-sql.js';

/** A fence: writes of this tenant are rejected on this shard. */
export interface Fence {
  shard: string;
  tenant: string;
  moveId: number | null;
  target: string | null;
  reason: string;
  createdAt: string;
}

/**
 * Installs shardctl's fence triggers on tenant tables that lack them (a row trigger checking
 * `shardctl.fences` and a TRUNCATE guard). Idempotent; needs the catalog schema on the shard.
 */
export async function installFenceTriggers(client: PoolClient, tables: string[], keyColumn: string): Promise<void> {
  for (const table of tables) {
    const has = await client.query(`SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = 'shardctl_fence'`, [quoteTable(table)]);
    if (has.rowCount) continue;
    await client.query(
      `CREATE TRIGGER shardctl_fence BEFORE INSERT OR UPDATE OR DELETE ON ${quoteTable(table)}
         FOR EACH ROW EXECUTE FUNCTION shardctl.fence_guard(${quoteLiteral(keyColumn)})`,
    );
    await client.query(`CREATE TRIGGER shardctl_fence_truncate BEFORE TRUNCATE ON ${quoteTable(table)} FOR EACH STATEMENT EXECUTE FUNCTION shardctl.fence_truncate_guard()`);
  }
}

/** Adds (or refreshes) the fence of a tenant on a shard. */
export async function addFence(client: PoolClient, f: { tenant: string; moveId: number | null; target: string | null; reason: string }): Promise<void> {
  await client.query(
    `INSERT INTO shardctl.fences (tenant, move_id, target, reason) VALUES ($1, $2, $3, $4)
     ON CONFLICT (tenant) DO UPDATE SET move_id = excluded.move_id, target = excluded.target, reason = excluded.reason`,
    [f.tenant, f.moveId, f.target, f.reason],
  );
}

/** Removes the fence of a tenant on a shard (only the one of the given move, when given). Returns whether one was removed. */
export async function removeFence(client: PoolClient, tenant: string, moveId?: number): Promise<boolean> {
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass('shardctl.fences')::text AS t");
  if (!exists.rows[0]?.t) return false;
  const r = await client.query('DELETE FROM shardctl.fences WHERE tenant = $1 AND ($2::bigint IS NULL OR move_id = $2)', [tenant, moveId ?? null]);
  return (r.rowCount ?? 0) > 0;
}

/** Lists the fences of a shard (none where shardctl never wrote). */
export async function listFences(client: PoolClient, shard: string): Promise<Fence[]> {
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass('shardctl.fences')::text AS t");
  if (!exists.rows[0]?.t) return [];
  const r = await client.query<{ tenant: string; move_id: string | null; target: string | null; reason: string; created_at: Date }>('SELECT * FROM shardctl.fences ORDER BY created_at, tenant');
  return r.rows.map((x) => ({ shard, tenant: x.tenant, moveId: x.move_id === null ? null : Number(x.move_id), target: x.target, reason: x.reason, createdAt: new Date(x.created_at).toISOString() }));
}

/** `WHERE` clause selecting one tenant's rows through a transaction setting (COPY takes no parameters). */
export function tenantFilter(keyColumn: string, keyType: string): string {
  const cast = keyType === 'bigint' ? 'int8' : keyType;
  return `${quoteIdent(keyColumn)} = current_setting('shardctl.move_tenant')::${cast}`;
}

/** Binds the tenant for {@link tenantFilter} in the current transaction, as a parameter. */
export async function bindTenant(client: PoolClient, tenant: string): Promise<void> {
  await client.query("SELECT set_config('shardctl.move_tenant', $1, true)", [tenant]);
}
