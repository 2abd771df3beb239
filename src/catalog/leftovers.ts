import type { PoolClient } from 'pg';

/** A replication slot, publication or subscription that shardctl created (named `shardctl_...`). */
export interface ReplicationLeftover {
  kind: 'replication-slot' | 'publication' | 'subscription';
  name: string;
  /** For slots: whether a consumer is attached. */
  active?: boolean;
  /** For slots: WAL the slot keeps on disk, in bytes. */
  retainedWalBytes?: number;
}

/** An index left INVALID, typically by a failed `CREATE INDEX CONCURRENTLY`. */
export interface InvalidIndex {
  index: string;
  table: string;
  /** True when an index build on the table is running right now (the index may be that build's). */
  buildInProgress: boolean;
}

/**
 * Lists shardctl's replication objects on a database: slots (with the WAL they retain, since an
 * unconsumed slot fills the disk), publications and subscriptions. Reads only; a role that may not
 * read `pg_subscription` simply gets no subscriptions listed.
 *
 * @example
 * await replicationLeftovers(client) // [{ kind: 'replication-slot', name: 'shardctl_move_7', retainedWalBytes: 81920, active: false }]
 */
export async function replicationLeftovers(client: PoolClient): Promise<ReplicationLeftover[]> {
  const out: ReplicationLeftover[] = [];
  const slots = await client.query<{ name: string; active: boolean; retained: string | null }>(
    `SELECT slot_name AS name, active,
            CASE WHEN restart_lsn IS NULL THEN NULL
                 ELSE pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, restart_lsn)::int8::text END AS retained
       FROM pg_replication_slots
      -- Logical slots belong to one database: another database on the same server is another shard.
      WHERE slot_name LIKE 'shardctl\\_%' AND (database IS NULL OR database = current_database()) ORDER BY 1`,
  );
  for (const s of slots.rows)
    out.push({ kind: 'replication-slot', name: s.name, active: s.active, retainedWalBytes: Number(s.retained ?? 0) });
  const pubs = await client.query<{ name: string }>(
    `SELECT pubname AS name FROM pg_publication WHERE pubname LIKE 'shardctl\\_%' ORDER BY 1`,
  );
  for (const p of pubs.rows) out.push({ kind: 'publication', name: p.name });
  // Asked first rather than caught: a failed read would abort the caller's transaction, and a savepoint
  // to contain it is refused outside one (callers run this in autocommit too).
  const may = await client.query<{ ok: boolean }>(
    `SELECT has_column_privilege('pg_catalog.pg_subscription', 'subname', 'SELECT')
        AND has_column_privilege('pg_catalog.pg_subscription', 'subdbid', 'SELECT') AS ok`,
  );
  if (!may.rows[0]?.ok) return out;
  const subs = await client.query<{ name: string }>(
    `SELECT subname AS name FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND subname LIKE 'shardctl\\_%' ORDER BY 1`,
  );
  for (const s of subs.rows) out.push({ kind: 'subscription', name: s.name });
  return out;
}

/**
 * Lists INVALID indexes and whether a build is in progress on their table (then the index may
 * belong to that running build and must not be dropped).
 *
 * @example
 * await invalidIndexes(client) // [{ index: 'public.invoices_total_idx', table: 'public.invoices', buildInProgress: false }]
 */
export async function invalidIndexes(client: PoolClient): Promise<InvalidIndex[]> {
  const r = await client.query<{ index: string; table: string; building: boolean }>(
    `SELECT n.nspname || '.' || i.relname AS index, tn.nspname || '.' || t.relname AS table,
            EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.relid = t.oid AND p.datname = current_database()) AS building
       FROM pg_index x
       JOIN pg_class i ON i.oid = x.indexrelid
       JOIN pg_namespace n ON n.oid = i.relnamespace
       JOIN pg_class t ON t.oid = x.indrelid
       JOIN pg_namespace tn ON tn.oid = t.relnamespace
      WHERE NOT x.indisvalid AND n.nspname NOT IN ('pg_catalog', 'pg_toast')
      ORDER BY 1`,
  );
  return r.rows.map((row) => ({ index: row.index, table: row.table, buildInProgress: row.building }));
}
