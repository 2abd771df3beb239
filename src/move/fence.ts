import type { PoolClient } from 'pg';
import { ensureCatalogSchema } from '../catalog/catalog-schema.js';
import { pollUntil } from '../db/poll.js';
import { lockedTx } from '../db/shard-pools.js';
import { ShardctlError } from '../errors.js';
import { keyCast, quoteIdent, quoteLiteral, quoteTable } from '../db/sql.js';

/** A tenant table with the column that holds the tenant in it (the fence trigger reads that column). */
export interface KeyedTable {
  table: string;
  keyColumn: string;
}

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
export async function installFenceTriggers(client: PoolClient, tables: KeyedTable[]): Promise<void> {
  for (const { table, keyColumn } of tables) {
    const has = await client.query(
      `SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = 'shardctl_fence'`,
      [quoteTable(table)],
    );
    if (has.rowCount) continue;
    await client.query(
      `CREATE TRIGGER shardctl_fence BEFORE INSERT OR UPDATE OR DELETE ON ${quoteTable(table)}
         FOR EACH ROW EXECUTE FUNCTION shardctl.fence_guard(${quoteLiteral(keyColumn)})`,
    );
    await client.query(
      `CREATE TRIGGER shardctl_fence_truncate BEFORE TRUNCATE ON ${quoteTable(table)} FOR EACH STATEMENT EXECUTE FUNCTION shardctl.fence_truncate_guard()`,
    );
  }
}

/** Adds (or refreshes) the fence of a tenant on a shard. */
export async function addFence(
  client: PoolClient,
  f: { tenant: string; moveId: number | null; target: string | null; reason: string },
): Promise<void> {
  await client.query(
    `INSERT INTO shardctl.fences (tenant, move_id, target, reason) VALUES ($1, $2, $3, $4)
     ON CONFLICT (tenant) DO UPDATE SET move_id = excluded.move_id, target = excluded.target, reason = excluded.reason`,
    [f.tenant, f.moveId, f.target, f.reason],
  );
}

/**
 * Removes the fence of a tenant (or of each tenant of a group move) on a shard, only the one of the
 * given move when given. Returns whether one was removed.
 */
export async function removeFence(client: PoolClient, tenant: string | string[], moveId?: number): Promise<boolean> {
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass('shardctl.fences')::text AS t");
  if (!exists.rows[0]?.t) return false;
  const r = await client.query(
    'DELETE FROM shardctl.fences WHERE tenant = ANY($1::text[]) AND ($2::bigint IS NULL OR move_id = $2)',
    [tenantList(tenant), moveId ?? null],
  );
  return (r.rowCount ?? 0) > 0;
}

/** Lists the fences of a shard (none where shardctl never wrote). */
export async function listFences(client: PoolClient, shard: string): Promise<Fence[]> {
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass('shardctl.fences')::text AS t");
  if (!exists.rows[0]?.t) return [];
  const r = await client.query<{
    tenant: string;
    move_id: string | null;
    target: string | null;
    reason: string;
    created_at: Date;
  }>('SELECT * FROM shardctl.fences ORDER BY created_at, tenant');
  return r.rows.map((x) => ({
    shard,
    tenant: x.tenant,
    moveId: x.move_id === null ? null : Number(x.move_id),
    target: x.target,
    reason: x.reason,
    createdAt: new Date(x.created_at).toISOString(),
  }));
}

/** One tenant or the tenants of a group move, as a list. */
export function tenantList(tenant: string | readonly string[]): string[] {
  return typeof tenant === 'string' ? [tenant] : [...tenant];
}

/** A PostgreSQL array literal of text values (every element quoted). */
function textArray(values: string[]): string {
  return `{${values.map((v) => `"${v.replace(/(["\\])/g, '\\$1')}"`).join(',')}}`;
}

/**
 * `WHERE` clause selecting the moving tenants' rows (one, or a group's) through a transaction setting
 * (COPY takes no parameters).
 */
export function tenantFilter(keyColumn: string, keyType: string): string {
  return `${quoteIdent(keyColumn)} = ANY (current_setting('shardctl.move_tenants')::${keyCast(keyType)}[])`;
}

/**
 * The transaction setting that binds the tenant for {@link tenantFilter} (a `withTransaction` setting).
 *
 * @example
 * await withTransaction(client, () => client.query(`DELETE FROM t WHERE ${tenantFilter('tenant_id', 'bigint')}`), { settings: tenantSetting('7') });
 */
export function tenantSetting(tenant: string | readonly string[]): Record<string, string> {
  return { 'shardctl.move_tenants': textArray(tenantList(tenant)) };
}

/**
 * The transaction setting under which shardctl's own writes pass the tenant's fence (a `withTransaction` setting).
 *
 * @example
 * await withTransaction(client, () => deleteRows(client), { settings: { ...FENCE_BYPASS, ...tenantSetting('7') } });
 */
export const FENCE_BYPASS: Readonly<Record<string, string>> = { 'shardctl.fence_bypass': 'on' };

/** Binds the tenant (or a group's tenants) for {@link tenantFilter} in the current transaction, as a parameter. */
export async function bindTenant(client: PoolClient, tenant: string | readonly string[]): Promise<void> {
  await client.query("SELECT set_config('shardctl.move_tenants', $1, true)", [textArray(tenantList(tenant))]);
}

/**
 * Installs the fence triggers on tenant tables that lack them, one table per transaction (holding one
 * table while waiting for another could deadlock with a writer whose foreign-key check locks both),
 * each bounded by `waitMs`. Creates the catalog schema first where missing.
 */
export async function ensureFenceTriggers(client: PoolClient, tables: KeyedTable[], waitMs: number): Promise<void> {
  await ensureCatalogSchema(client);
  for (const table of tables) await lockedTx(client, waitMs, () => installFenceTriggers(client, [table]));
}

/**
 * Adds a tenant's fence (its triggers must be installed) and waits until no transaction can still
 * write its rows unseen by it: transactions holding an xid older than the fence, and sessions whose
 * snapshot predates it (a REPEATABLE READ or SERIALIZABLE transaction would not see the fence row).
 * Fails with `OLD_TRANSACTIONS` after `waitMs`; the fence stays (the caller lifts it or reports it).
 *
 * @example
 * await raiseFence(client, { tenant: '7', moveId: 3, target: 'shard-2', waitMs: 1000 });
 */
export async function raiseFence(
  client: PoolClient,
  f: { tenant: string | string[]; moveId: number; target: string; waitMs: number; shard?: string },
): Promise<void> {
  // One statement, so one transaction: a group's fences go up together, at one instant (and in one
  // round trip, inside the write pause).
  const tenants = tenantList(f.tenant);
  const fenceXid = (
    await client.query<{ x: string }>(
      `INSERT INTO shardctl.fences (tenant, move_id, target, reason)
       SELECT f.tenant, $2, $3, f.reason FROM unnest($1::text[], $4::text[]) AS f(tenant, reason)
       ON CONFLICT (tenant) DO UPDATE SET move_id = excluded.move_id, target = excluded.target, reason = excluded.reason
       RETURNING pg_current_xact_id()::text AS x`,
      [tenants, f.moveId, f.target, tenants.map((t) => `move ${f.moveId} of tenant ${t} to ${f.target} in progress`)],
    )
  ).rows[0]!.x;
  await waitForOlderWriters(client, fenceXid, f.waitMs, f.shard ?? 'the source');
}

/**
 * Fences a tenant on its source shard: {@link ensureFenceTriggers}, then {@link raiseFence}.
 *
 * @example
 * await fenceTenant(client, { tenant: '7', moveId: 3, target: 'shard-2', tables: [{ table: 'public.users', keyColumn: 'tenant_id' }], waitMs: 30_000 });
 */
export async function fenceTenant(
  client: PoolClient,
  f: {
    tenant: string | string[];
    moveId: number;
    target: string;
    tables: KeyedTable[];
    waitMs: number;
    shard?: string;
  },
): Promise<void> {
  await ensureFenceTriggers(client, f.tables, f.waitMs);
  await raiseFence(client, f);
}

/** Whether every session older than the xid `$1` ended, and the pids of those still open. */
const OLDER_WRITERS_SQL = `WITH older AS (
   SELECT pid FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
      AND (age(backend_xid) >= age(($1::xid8::text::numeric % 4294967296)::text::xid)
           OR age(backend_xmin) >= age(($1::xid8::text::numeric % 4294967296)::text::xid)))
 SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8 AND NOT EXISTS (SELECT 1 FROM older) AS done,
        (SELECT array_agg(pid) FROM older) AS pids`;

/**
 * Waits until every transaction and snapshot of the current database that started before `xid`
 * committed has ended. Client backends only: autovacuum and walsenders never write tenant rows.
 */
export async function waitForOlderWriters(
  client: PoolClient,
  xid: string,
  waitMs: number,
  shard: string,
): Promise<void> {
  let pids: number[] | null = null;
  await pollUntil(
    async () => {
      const r = await client.query<{ done: boolean; pids: number[] | null }>(OLDER_WRITERS_SQL, [xid]);
      pids = r.rows[0]?.pids ?? null;
      return r.rows[0]?.done ?? false;
    },
    {
      timeoutMs: waitMs,
      // Writers in flight when the fence went up usually end within milliseconds: this runs in the pause.
      firstIntervalMs: 1,
      intervalMs: 20,
      reason: `transactions older than the fence on ${shard}`,
      onTimeout: () => {
        throw new ShardctlError(
          `transactions or snapshots older than the fence are still open on ${shard} after ${waitMs} ms${pids?.length ? ` (backend pids ${pids.join(', ')})` : ''}`,
          {
            code: 'OLD_TRANSACTIONS',
            hint: `${pids?.length ? `commit or roll them back, or end them with ${pids.map((p) => `SELECT pg_terminate_backend(${p})`).join('; ')}` : 'find them in pg_stat_activity (xact_start, backend_xmin) and end them'}, then resume`,
          },
        );
      },
    },
  );
}
