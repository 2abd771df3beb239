import type { PoolClient } from 'pg';
import { lockedTx } from '../db/shard-pools.js';
import { withTransaction } from '../db/transaction.js';
import { STABLE_TEXT_SETTINGS } from './copy-tenant.js';
import { keyCast, quoteIdent, quoteLiteral, quoteTable } from '../db/sql.js';
import { tenantLiteral } from './replication.js';
import { tenantList } from './fence.js';
import type { TenantTable } from './tenant-tables.js';

/** Name of a move's change-tracking triggers (one per operation and table). */
function triggerName(moveId: number, op: 'i' | 'u' | 'd' | 't'): string {
  return `shardctl_track_${moveId}_${op}`;
}

/**
 * Installs a move's change log on the source: triggers that record, in the writing transaction, the
 * primary key of every row of the tenant inserted, updated or deleted, and every TRUNCATE. `ENABLE
 * ALWAYS`, so that they fire in sessions with `session_replication_role = replica` too. Their `WHEN`
 * clause tests the tenant in C, so other tenants' writes pay almost nothing. All tables in one
 * transaction, bounded by `lock_timeout` (creating a trigger waits for running writers of the table).
 */
export async function installChangeTracking(
  client: PoolClient,
  moveId: number,
  tables: TenantTable[],
  key: { column: string; type: string },
  tenant: string | string[],
  waitMs: number,
): Promise<void> {
  const lit = `(${tenantList(tenant)
    .map((v) => tenantLiteral(v, key.type))
    .join(', ')})`;
  // One table per transaction: holding one table's lock while waiting for another's could deadlock
  // with a writer that touches both (a foreign-key check locks the parent).
  for (const t of tables) {
    // Each table's own tenant column (a root `tenants` table may key the tenant by `id`).
    const col = quoteIdent(t.keyColumn);
    await lockedTx(client, waitMs, async () => {
      await dropTriggers(client, moveId, t.table);
      const args = `${quoteLiteral(String(moveId))}, ${quoteLiteral(`{${t.primaryKey.map((c) => `"${c.replace(/(["\\])/g, '\\$1')}"`).join(',')}}`)}`;
      const fn = `EXECUTE FUNCTION shardctl.track_change(${args})`;
      const defs: [string, string][] = [
        [
          triggerName(moveId, 'i'),
          `AFTER INSERT ON ${quoteTable(t.table)} FOR EACH ROW WHEN (NEW.${col} IN ${lit}) ${fn}`,
        ],
        [
          triggerName(moveId, 'u'),
          `AFTER UPDATE ON ${quoteTable(t.table)} FOR EACH ROW WHEN (OLD.${col} IN ${lit} OR NEW.${col} IN ${lit}) ${fn}`,
        ],
        [
          triggerName(moveId, 'd'),
          `AFTER DELETE ON ${quoteTable(t.table)} FOR EACH ROW WHEN (OLD.${col} IN ${lit}) ${fn}`,
        ],
        [triggerName(moveId, 't'), `AFTER TRUNCATE ON ${quoteTable(t.table)} FOR EACH STATEMENT ${fn}`],
      ];
      for (const [name, def] of defs) {
        await client.query(`CREATE TRIGGER ${quoteIdent(name)} ${def}`);
        await client.query(`ALTER TABLE ${quoteTable(t.table)} ENABLE ALWAYS TRIGGER ${quoteIdent(name)}`);
      }
    });
  }
  await client.query('DELETE FROM shardctl.move_changes WHERE move_id = $1', [moveId]);
}

async function dropTriggers(client: PoolClient, moveId: number, table: string): Promise<void> {
  for (const op of ['i', 'u', 'd', 't'] as const) {
    const exists = await client.query('SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2', [
      quoteTable(table),
      triggerName(moveId, op),
    ]);
    if (exists.rowCount)
      await client.query(`DROP TRIGGER ${quoteIdent(triggerName(moveId, op))} ON ${quoteTable(table)}`);
  }
}

/**
 * Removes a move's change-tracking triggers from every table that has them and forgets its change
 * log. Idempotent; a shard without the catalog schema has nothing to remove.
 */
export async function removeChangeTracking(client: PoolClient, moveId: number, waitMs = 30_000): Promise<void> {
  const tables = await client.query<{ t: string }>(
    `SELECT DISTINCT n.nspname || '.' || c.relname AS t FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      -- Not the clones a partitioned table's trigger has on its partitions: they go with it, and
      -- dropping through a partition would lock partition before parent (a writer locks the other way).
      WHERE g.tgname LIKE $1 AND g.tgparentid = 0`,
    [`shardctl\\_track\\_${moveId}\\_%`],
  );
  const hasLog = (await client.query<{ t: string | null }>("SELECT to_regclass('shardctl.move_changes')::text AS t"))
    .rows[0]?.t;
  if (tables.rows.length === 0 && !hasLog) return;
  for (const t of tables.rows)
    await retryOnDeadlock(() => lockedTx(client, waitMs, () => dropTriggers(client, moveId, t.t)));
  if (hasLog) await client.query('DELETE FROM shardctl.move_changes WHERE move_id = $1', [moveId]);
}

/**
 * Runs an idempotent step again when PostgreSQL chose it as a deadlock victim (40P01): dropping a
 * trigger takes the table's strongest lock while a writer's multi-table transaction may hold a lock
 * the drop also needs. The victim was rolled back whole, so running it again is safe; a teardown
 * after the switch must not fail a move that is already switched for a lock-order accident.
 */
async function retryOnDeadlock(step: () => Promise<void>, attempts = 5): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      return await step();
    } catch (e) {
      const err = e as { code?: string; pg?: { code?: string } };
      if ((err.code !== '40P01' && err.pg?.code !== '40P01') || i >= attempts) throw e;
    }
  }
}

/** What the change log holds for a move: per table, each changed key with its latest log id. */
export interface ChangedKeys {
  keys: Map<string, Map<string, number>>;
  /** Tables truncated during the move. */
  truncated: string[];
}

/**
 * What a run has read of a move's change log: every key with its latest log id so far, and the
 * snapshot of the last read. Log ids are taken when a row is written but become visible at commit, so
 * a position in ids cannot say what is new; the writing transaction's id can: a row invisible to the
 * last read's snapshot is exactly a row that read did not see.
 */
export interface ChangeLogCursor {
  readonly seen: ChangedKeys;
  /** The snapshot of the last read (pg_snapshot text); none before the first. */
  snapshot?: string;
}

/** A cursor that has read nothing: its first read reads the whole log. */
export function newChangeLogCursor(): ChangeLogCursor {
  return { seen: { keys: new Map(), truncated: [] } };
}

/**
 * Reads the change log of a move, one entry per key with its latest log id: the whole log, or with a
 * cursor only the rows its last read could not see (rows of transactions not yet committed then, or
 * not yet begun), merged into the cursor. Returns the cursor's own maps, which the next read updates.
 * A row's transaction id is compared with the last read's snapshot, taken by the same statement that
 * read; rows logged before the log recorded transaction ids (NULL) are read every time.
 *
 * @example
 * const cursor = newChangeLogCursor();
 * const all = await readChangedKeys(c, 7, cursor); // whole log
 * const now = await readChangedKeys(c, 7, cursor); // adds only what committed since
 */
export async function readChangedKeys(
  client: PoolClient,
  moveId: number,
  cursor: ChangeLogCursor = newChangeLogCursor(),
): Promise<ChangedKeys> {
  const r = await client.query<{ snap: string; tbl: string | null; pk: string | null; last: string | null }>(
    `SELECT pg_current_snapshot()::text AS snap, c.tbl, c.pk, c.last
       FROM (SELECT 1) AS one
       LEFT JOIN (SELECT tbl, pk::text AS pk, max(id)::text AS last
                    FROM shardctl.move_changes
                   WHERE move_id = $1
                     AND ($2::pg_snapshot IS NULL OR xid IS NULL OR NOT pg_visible_in_snapshot(xid, $2::pg_snapshot))
                   GROUP BY tbl, pk) AS c ON true`,
    [moveId, cursor.snapshot ?? null],
  );
  const { keys, truncated } = cursor.seen;
  for (const x of r.rows) {
    if (x.tbl === null) continue;
    if (x.pk === null) {
      if (!truncated.includes(x.tbl)) truncated.push(x.tbl);
      continue;
    }
    let ks = keys.get(x.tbl);
    if (!ks) keys.set(x.tbl, (ks = new Map()));
    // A key's entries are ordered by commit (a write waits for the row's earlier writer): keep the latest.
    ks.set(x.pk, Math.max(ks.get(x.pk) ?? 0, Number(x.last)));
  }
  cursor.snapshot = r.rows[0]!.snap;
  return cursor.seen;
}

/** The moving tenant as the key checks filter it: its text form and the shard key's type. */
export interface TenantKey {
  /** One tenant, or the tenants of a group move. */
  tenant: string | string[];
  type: string;
}

/**
 * Hashes the tenant's rows with the given primary keys (jsonb objects as text) on one shard: key -> md5
 * of the row's text, absent for a key without a row of the tenant (a row whose key column now names
 * another tenant is not the tenant's any more). Session formatting is fixed, so both shards print alike.
 */
export async function hashRowsByKey(
  client: PoolClient,
  t: TenantTable,
  keys: string[],
  who: TenantKey,
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (keys.length === 0) return out;
  const cols = t.allColumns.map((c) => `x.${quoteIdent(c.name)}`).join(', ');
  const join = t.primaryKey.map((c) => `x.${quoteIdent(c)} = r.${quoteIdent(c)}`).join(' AND ');
  const r = await withTransaction(
    client,
    () =>
      client.query<{ k: string; h: string | null }>(
        `SELECT k.pk AS k, y.h
           FROM unnest($1::text[]) AS k(pk)
           CROSS JOIN LATERAL jsonb_populate_record(NULL::${quoteTable(t.table)}, k.pk::jsonb) AS r
           LEFT JOIN LATERAL (SELECT md5(ROW(${cols})::text) AS h FROM ${quoteTable(t.table)} x
                               WHERE ${join} AND x.${quoteIdent(t.keyColumn)} = ANY ($2::text[]::${keyCast(who.type)}[])) y ON true`,
        [keys, tenantList(who.tenant)],
      ),
    { isolation: 'repeatable read', readOnly: true, prelude: STABLE_TEXT_SETTINGS },
  );
  for (const x of r.rows) if (x.h !== null) out.set(x.k, x.h);
  return out;
}

/**
 * Compares the tenant's rows of the given keys on source and target; returns the keys that differ per
 * table (a row on one side only, or different contents).
 */
export async function compareKeys(
  source: PoolClient,
  target: PoolClient,
  tables: TenantTable[],
  keys: Map<string, Iterable<string>>,
  who: TenantKey,
): Promise<Map<string, string[]>> {
  const bad = new Map<string, string[]>();
  for (const t of tables) {
    const ks = [...(keys.get(t.table) ?? [])];
    if (ks.length === 0) continue;
    const [a, b] = await Promise.all([hashRowsByKey(source, t, ks, who), hashRowsByKey(target, t, ks, who)]);
    const diff = ks.filter((k) => a.get(k) !== b.get(k));
    if (diff.length > 0) bad.set(t.table, diff);
  }
  return bad;
}
