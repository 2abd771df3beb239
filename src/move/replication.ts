import type { PoolClient } from 'pg';
import type { Shard } from '../config/shard-map.js';
import { loadPg } from '../db/shard-pools.js';
import { fromDriverError, ShardctlError } from '../errors.js';
import { quoteIdent, quoteLiteral, quoteTable } from '../db/sql.js';
import { keyCast } from '../db/sql.js';
import { pollUntil, sleep } from '../db/poll.js';
import { withTransaction } from '../db/transaction.js';
import type { TenantTable } from './tenant-tables.js';

/**
 * Name of the publication, replication slot and subscription of an online move: one name for all
 * three, with the move id (so that a leftover names its move) and a random tag (slot names are per
 * server, and two clusters may share one). The journal keeps it.
 *
 * @example
 * replicationName(7, '9f2c01aa') // 'shardctl_move_7_9f2c01aa'
 */
export function replicationName(moveId: number, tag: string): string {
  return `shardctl_move_${moveId}_${tag}`;
}

/** The literal of a tenant value in the shard key's type, for publication filters and trigger conditions. */
export function tenantLiteral(tenant: string, keyType: string): string {
  return `${quoteLiteral(tenant)}::${keyCast(keyType)}`;
}

/**
 * Why an online move between two servers is impossible, as a list of problems with their fix (empty
 * when it is possible): `wal_level` of the source, PostgreSQL 15+ on both (publication row filters),
 * the privileges to create a slot, publication and subscription, and tables whose replica identity
 * does not contain the shard key (their UPDATE and DELETE could not be filtered by tenant).
 *
 * @example
 * await onlineProblems(src, dst, tables, 'tenant_id', { source: 'shard-0', target: 'shard-1' }) // []
 */
export async function onlineProblems(
  source: PoolClient,
  target: PoolClient,
  tables: TenantTable[],
  keyColumn: string,
  names: { source: string; target: string },
): Promise<string[]> {
  const problems: string[] = [];
  const facts = async (c: PoolClient) =>
    (
      await c.query<{
        wal_level: string;
        version: number;
        superuser: boolean;
        replication: boolean;
        subscribe: boolean;
        slots_free: number;
        workers: number;
      }>(
        `SELECT current_setting('wal_level') AS wal_level, current_setting('server_version_num')::int AS version,
                r.rolsuper AS superuser, r.rolreplication AS replication,
                -- pg_create_subscription exists from PostgreSQL 16 on; CASE keeps pg_has_role from meeting its absence.
                r.rolsuper OR CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pg_create_subscription')
                                   THEN pg_has_role(current_user, 'pg_create_subscription', 'USAGE') ELSE false END AS subscribe,
                current_setting('max_replication_slots')::int - (SELECT count(*)::int FROM pg_replication_slots) AS slots_free,
                current_setting('max_logical_replication_workers')::int AS workers
           FROM pg_roles r WHERE r.rolname = current_user`,
      )
    ).rows[0]!;
  const [s, t] = await Promise.all([facts(source), facts(target)]);
  if (s.version < 150000)
    problems.push(
      `${names.source} runs PostgreSQL ${Math.floor(s.version / 10000)}: online moves need 15 or newer (publication row filters)`,
    );
  if (t.version < 150000)
    problems.push(`${names.target} runs PostgreSQL ${Math.floor(t.version / 10000)}: online moves need 15 or newer`);
  if (s.wal_level !== 'logical')
    problems.push(
      `${names.source} has wal_level = ${s.wal_level}: set wal_level = logical in its postgresql.conf and restart it`,
    );
  if (!s.superuser && !s.replication)
    problems.push(`the role of ${names.source}'s URL may not create replication slots: ALTER ROLE ... REPLICATION`);
  if (s.slots_free < 1)
    problems.push(`${names.source} has no free replication slot: raise max_replication_slots or drop unused slots`);
  if (!t.superuser && !t.subscribe)
    problems.push(
      `the role of ${names.target}'s URL may not create subscriptions: GRANT pg_create_subscription (PostgreSQL 16+) or use a superuser`,
    );
  if (t.workers < 1) problems.push(`${names.target} has max_logical_replication_workers = 0: raise it and restart`);
  problems.push(...(await replicaIdentityProblems(source, tables, keyColumn, names.source)));
  return problems;
}

/**
 * Tables whose replica identity does not contain the shard key: a publication row filter on the key
 * would make their UPDATE and DELETE fail on the source, so an online move refuses them and says how
 * to fix it.
 */
export async function replicaIdentityProblems(
  client: PoolClient,
  tables: TenantTable[],
  keyColumn: string,
  shard: string,
): Promise<string[]> {
  const r = await client.query<{ t: string; ident: string; covered: boolean }>(
    `SELECT n.nspname || '.' || c.relname AS t, c.relreplident AS ident,
            CASE c.relreplident
              WHEN 'f' THEN true
              WHEN 'n' THEN false
              ELSE EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                            WHERE i.indrelid = c.oid AND a.attname = $2
                              AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident)))
            END AS covered
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE (n.nspname || '.' || c.relname) = ANY($1)`,
    [tables.map((t) => t.table), keyColumn],
  );
  return r.rows
    .filter((x) => !x.covered)
    .map((x) =>
      x.ident === 'n'
        ? `${shard}: ${x.t} has REPLICA IDENTITY NOTHING: its updates cannot be replicated; set ALTER TABLE ${quoteTable(x.t)} REPLICA IDENTITY DEFAULT (with a primary key that contains ${keyColumn}) or FULL`
        : `${shard}: the replica identity of ${x.t} does not contain ${keyColumn}, so its updates and deletes cannot be filtered by tenant; include ${keyColumn} in the primary key, or ALTER TABLE ${quoteTable(x.t)} REPLICA IDENTITY FULL (more WAL per update), or REPLICA IDENTITY USING INDEX on a unique index that contains it`,
    );
}

/**
 * Creates the publication of one tenant's rows (inserts, updates, deletes; TRUNCATE is not filtered
 * by tenant, so it is not published and the change log records it instead). Partitioned tables
 * publish through their root, whose row filter then applies (PostgreSQL refuses a filter on a
 * partitioned table otherwise). Replaces one left by an earlier attempt.
 */
export async function createTenantPublication(
  client: PoolClient,
  name: string,
  moveId: number,
  tables: TenantTable[],
  key: { column: string; type: string },
  tenant: string,
): Promise<void> {
  const filter = `(${quoteIdent(key.column)} = ${tenantLiteral(tenant, key.type)})`;
  await dropPublication(client, name);
  await client.query(
    `CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE ${tables.map((t) => `${quoteTable(t.table)} WHERE ${filter}`).join(', ')}, shardctl.move_marks WHERE (move_id = ${Number(moveId)})
       WITH (publish = 'insert, update, delete', publish_via_partition_root = true)`,
  );
}

/**
 * Commits a new mark of the move on the source (synchronously) and returns its number. Once the
 * target has it ({@link markApplied}), every change committed on the source before it is applied
 * and durable there: replication applies transactions in commit order.
 */
export async function writeMark(client: PoolClient, moveId: number): Promise<number> {
  const r = await withTransaction(
    client,
    () =>
      client.query<{ mark: string }>(
        'INSERT INTO shardctl.move_marks (move_id, mark) SELECT $1, coalesce(max(mark), 0) + 1 FROM shardctl.move_marks WHERE move_id = $1 RETURNING mark::text',
        [moveId],
      ),
    { settings: { synchronous_commit: 'on' } },
  );
  return Number(r.rows[0]!.mark);
}

/** The highest mark of the move the target has applied (0 before the first). */
export async function markApplied(client: PoolClient, moveId: number): Promise<number> {
  const r = await client.query<{ m: string }>(
    'SELECT coalesce(max(mark), 0)::text AS m FROM shardctl.move_marks WHERE move_id = $1',
    [moveId],
  );
  return Number(r.rows[0]!.m);
}

/** A logical slot created with an exported snapshot; the snapshot lives until {@link SlotSnapshot.release}. */
export interface SlotSnapshot {
  /** LSN from which the slot streams: every change after the snapshot. */
  lsn: string;
  /** Snapshot name for `SET TRANSACTION SNAPSHOT`. */
  snapshot: string;
  /** Closes the replication connection (import the snapshot first). */
  release(): Promise<void>;
}

/**
 * Creates the move's logical slot on the source through a replication connection, exporting the
 * snapshot the slot starts from: a copy made in that snapshot plus the changes the slot streams is
 * exactly the source, with no gap and no overlap.
 */
export async function createSlotWithSnapshot(
  shard: Shard,
  name: string,
  options: { timeoutMs?: number } = {},
): Promise<SlotSnapshot> {
  const pg = await loadPg();
  const client = new pg.Client({
    connectionString: shard.url,
    replication: 'database',
    connectionTimeoutMillis: options.timeoutMs ?? 5000,
    application_name: 'shardctl move',
    // This session holds the exported snapshot, idle inside its transaction, while the copy (another
    // session) reads in it: it must not be ended by a server-wide idle_in_transaction_session_timeout.
    // It ends with the move's process (socket closed) or release(), so nothing outlives a dead client.
    options: '-c idle_in_transaction_session_timeout=0',
  } as import('pg').ClientConfig);
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (e) {
    throw fromDriverError(e, { shard: shard.name, action: 'cannot open a replication connection' });
  }
  try {
    const r = await client.query<{ consistent_point: string; snapshot_name: string }>(
      `CREATE_REPLICATION_SLOT ${quoteIdent(name)} LOGICAL pgoutput (SNAPSHOT 'export')`,
    );
    const row = r.rows[0]!;
    return {
      lsn: row.consistent_point,
      snapshot: row.snapshot_name,
      release: () => client.end().catch(() => undefined),
    };
  } catch (e) {
    await client.end().catch(() => undefined);
    throw fromDriverError(e, { shard: shard.name, action: 'cannot create the replication slot' });
  }
}

/**
 * Creates the subscription on the target that applies the slot's changes (no initial copy: the move
 * copied in the slot's snapshot). Synchronous commit, so that what it applied is durable on the
 * target. Errors are retried by PostgreSQL (a dropped connection is one); the move gives up when they
 * go on without progress.
 */
export async function createTenantSubscription(
  client: PoolClient,
  name: string,
  sourceConninfo: string,
): Promise<void> {
  await client.query(
    `CREATE SUBSCRIPTION ${quoteIdent(name)} CONNECTION ${quoteLiteral(sourceConninfo)} PUBLICATION ${quoteIdent(name)}
       WITH (create_slot = false, slot_name = ${quoteLiteral(name)}, copy_data = false, synchronous_commit = 'on')`,
  );
}

/** Replication position and lag of a move, read from the source's slot and the target's subscription. */
export interface ReplicationState {
  /** The source's current WAL position. */
  sourceLsn: string;
  /** What the target reported as applied and flushed; null without a slot. */
  confirmedLsn: string | null;
  /** Bytes of WAL the target has not confirmed. */
  lagBytes: number;
  /** Seconds behind, from the walsender's replay lag (0 when caught up). */
  lagSeconds: number;
  /** The slot exists on the source. */
  slot: boolean;
  /** Whether a walsender streams the slot. */
  active: boolean;
}

/** Reads the slot of a move on the source (its database only). */
export async function readSlot(client: PoolClient, name: string): Promise<ReplicationState> {
  const r = await client.query<{
    cur: string;
    confirmed: string | null;
    lag: string | null;
    active: boolean | null;
    secs: number | null;
    exists: boolean;
  }>(
    `SELECT pg_current_wal_lsn()::text AS cur, s.confirmed_flush_lsn::text AS confirmed,
            pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::text AS lag, s.active,
            (SELECT extract(epoch FROM r.replay_lag)::float8 FROM pg_stat_replication r WHERE r.pid = s.active_pid) AS secs,
            s.slot_name IS NOT NULL AS exists
       FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = $1 AND s.database = current_database()`,
    [name],
  );
  const x = r.rows[0]!;
  return {
    sourceLsn: x.cur,
    confirmedLsn: x.confirmed,
    lagBytes: Math.max(0, Number(x.lag ?? 0)),
    lagSeconds: x.secs ?? 0,
    slot: x.exists,
    active: x.active ?? false,
  };
}

/** Whether the move's subscription exists on the target and is enabled, and how many errors its worker met. */
export async function readSubscription(
  client: PoolClient,
  name: string,
): Promise<{ exists: boolean; enabled: boolean; errors: number }> {
  const r = await client.query<{ enabled: boolean; errors: string | null }>(
    `SELECT s.subenabled AS enabled, (SELECT apply_error_count FROM pg_stat_subscription_stats t WHERE t.subid = s.oid)::text AS errors
       FROM pg_subscription s WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [name],
  );
  return { exists: r.rows.length > 0, enabled: r.rows[0]?.enabled ?? false, errors: Number(r.rows[0]?.errors ?? 0) };
}

/**
 * Removes everything replication-related a move created: the subscription on the target (detached
 * from its slot first, so that it never needs the source), then the slot (waiting for its walsender
 * to go) and the publication on the source. Idempotent; safe when any part is already gone.
 */
export async function dropMoveReplication(
  source: PoolClient | undefined,
  target: PoolClient | undefined,
  name: string,
  options: { waitMs?: number } = {},
): Promise<void> {
  if (target) {
    const sub = await readSubscription(target, name);
    if (sub.exists) {
      await target.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} DISABLE`);
      await target.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} SET (slot_name = NONE)`);
      await target.query(`DROP SUBSCRIPTION ${quoteIdent(name)}`);
    }
  }
  if (source) {
    await dropSlot(source, name, options.waitMs ?? 10_000);
    await dropPublication(source, name);
  }
}

/**
 * Drops the move's slot once no walsender streams it; a walsender still attached after `waitMs` serves
 * nobody (the subscription is gone) and is terminated. Fails with `SLOT_BUSY` if the slot stays in use.
 */
async function dropSlot(source: PoolClient, name: string, waitMs: number): Promise<void> {
  const terminateAfter = Date.now() + waitMs;
  let pid: number | null = null;
  await pollUntil(
    async () => {
      const r = await source.query<{ active_pid: number | null }>(
        'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()',
        [name],
      );
      if (r.rows.length === 0) return true;
      pid = r.rows[0]!.active_pid;
      if (pid === null) return tryDropSlot(source, name);
      if (Date.now() > terminateAfter) await source.query('SELECT pg_terminate_backend($1)', [pid]);
      return false;
    },
    {
      deadline: terminateAfter + 10_000,
      intervalMs: 50,
      reason: `replication slot ${name} to be released`,
      onTimeout: () => {
        throw new ShardctlError(`replication slot ${name} stays in use by backend ${pid}`, {
          code: 'SLOT_BUSY',
          hint: `drop it with SELECT pg_drop_replication_slot('${name}') once its walsender is gone`,
        });
      },
    },
  );
}

/** Drops an inactive slot: true when it is gone, false when a walsender attached between the read and the drop. */
async function tryDropSlot(source: PoolClient, name: string): Promise<boolean> {
  try {
    await source.query('SELECT pg_drop_replication_slot($1)', [name]);
    return true;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === '42704') return true; // dropped meanwhile
    if (code === '55006') return false;
    throw e;
  }
}

/**
 * Drops a publication without failing concurrent writers: a writer building a table's publication
 * list can meet a publication dropped between two catalog reads ("cache lookup failed for
 * publication"). The tables leave the publication first; the publication goes once writers have
 * rebuilt their lists.
 */
export async function dropPublication(client: PoolClient, name: string, settleMs = 250): Promise<void> {
  const tables = await client.query<{ t: string }>(
    "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) AS t FROM pg_publication_tables WHERE pubname = $1",
    [name],
  );
  const exists = await client.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [name]);
  if (exists.rowCount === 0) return;
  if (tables.rows.length > 0) {
    await client.query(`ALTER PUBLICATION ${quoteIdent(name)} DROP TABLE ${tables.rows.map((r) => r.t).join(', ')}`);
    // Fixed by design: nothing tells when every writer has rebuilt its publication list.
    await sleep(settleMs);
  }
  await client.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(name)}`);
}
