import type { PoolClient } from 'pg';
import { quoteTable } from '../db/sql.js';

/** A session a move waits for, as `pg_stat_activity` shows it. */
export interface BlockingSession {
  pid: number;
  database: string | null;
  application: string;
  /** `active`, `idle in transaction`, ... */
  state: string | null;
  /** Age of its transaction, seconds. */
  transactionSeconds: number;
  /** The statement that ends it: `SELECT pg_terminate_backend(<pid>)` (or commit or roll back it). */
  terminate: string;
  /**
   * A prepared transaction (two-phase commit) rather than a session: it has no backend (`pid` 0) and is
   * not in pg_stat_activity, yet holds its locks and its xid until COMMIT or ROLLBACK PREPARED.
   */
  gid?: string;
}

/** What a long wait of a move is waiting for, reported about every second while it lasts. */
export interface MoveWait {
  /** What the move is doing: `creating the replication slot on shard-0`. */
  action: string;
  /** Why those sessions hold it up. */
  cause: string;
  /** How long the wait has lasted, ms. */
  elapsedMs: number;
  sessions: BlockingSession[];
}

/**
 * Sessions of the whole server (every database) holding a transaction id: logical slot creation waits
 * for each of them to end, whatever database it runs in. `$1` excludes the move's own sessions.
 */
const XID_HOLDERS_SQL = `SELECT pid, datname, application_name, state,
        extract(epoch FROM clock_timestamp() - xact_start)::float8 AS secs
   FROM pg_stat_activity
  WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND NOT (pid = ANY ($1::int[]))
    AND xact_start IS NOT NULL AND xact_start < clock_timestamp() - make_interval(secs => $2::float8)
  ORDER BY xact_start`;

/**
 * Sessions of the current database whose transaction or snapshot is older than the transaction id `$1`
 * (a fence or a catch-up point): the move waits for them to end.
 */
const OLDER_SESSIONS_SQL = `SELECT pid, datname, application_name, state,
        extract(epoch FROM clock_timestamp() - coalesce(xact_start, query_start))::float8 AS secs
   FROM pg_stat_activity
  WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
    AND (age(backend_xid) >= age(($1::xid8::text::numeric % 4294967296)::text::xid)
         OR age(backend_xmin) >= age(($1::xid8::text::numeric % 4294967296)::text::xid))
  ORDER BY xact_start`;

interface ActivityRow {
  pid: number;
  datname: string | null;
  application_name: string | null;
  state: string | null;
  secs: number | null;
}

function toSession(x: ActivityRow): BlockingSession {
  return {
    pid: x.pid,
    database: x.datname,
    application: x.application_name ?? '',
    state: x.state,
    transactionSeconds: Math.max(0, x.secs ?? 0),
    terminate: `SELECT pg_terminate_backend(${x.pid})`,
  };
}

/**
 * The sessions of the server (any database) with a transaction id whose transaction started at least
 * `olderThanSeconds` ago, and the prepared transactions of any database as old: what a logical slot
 * creation waits for.
 *
 * @example
 * await xidHolders(client, [walsenderPid], 1) // [{ pid: 4242, database: 'billing', state: 'idle in transaction', ... }]
 */
export async function xidHolders(
  client: PoolClient,
  exclude: number[],
  olderThanSeconds: number,
): Promise<BlockingSession[]> {
  const r = await client.query<ActivityRow>(XID_HOLDERS_SQL, [exclude, olderThanSeconds]);
  // A slot creation waits for prepared transactions of any database too: they hold an xid, no session.
  const p = await client.query<{ gid: string; secs: number | null }>(
    `SELECT gid, extract(epoch FROM clock_timestamp() - prepared)::float8 AS secs FROM pg_prepared_xacts
      WHERE prepared < clock_timestamp() - make_interval(secs => $1::float8) ORDER BY prepared`,
    [olderThanSeconds],
  );
  return [...r.rows.map(toSession), ...p.rows.map(preparedSession)];
}

/**
 * The sessions of the current database whose transaction or snapshot predates the transaction id `xid`,
 * and its prepared transactions older than it (`pid` 0, `gid` set).
 *
 * @example
 * await olderSessions(client, '10234') // [{ pid: 4242, database: 'shard_0', state: 'idle in transaction', ... }]
 */
export async function olderSessions(client: PoolClient, xid: string): Promise<BlockingSession[]> {
  const r = await client.query<ActivityRow>(OLDER_SESSIONS_SQL, [xid]);
  // Prepared transactions hold their xid like a session and are waited for the same way.
  const p = await client.query<{ gid: string; secs: number | null }>(OLDER_PREPARED_SQL, [xid]);
  return [...r.rows.map(toSession), ...p.rows.map(preparedSession)];
}

/**
 * Prepared transactions of the current database whose xid is older than `$1` (a fence or a catch-up
 * point): like an open session, each still writes unseen by the fence until it is finished.
 */
const OLDER_PREPARED_SQL = `SELECT gid, extract(epoch FROM clock_timestamp() - prepared)::float8 AS secs
   FROM pg_prepared_xacts
  WHERE database = current_database()
    AND age(transaction) >= age(($1::xid8::text::numeric % 4294967296)::text::xid)
  ORDER BY prepared`;

/**
 * Prepared transactions of the current database holding a lock on one of `$1` (tables): their locks
 * belong to the prepared transaction's virtual transaction, found through the lock on its own xid.
 */
const PREPARED_ON_TABLES_SQL = `SELECT DISTINCT p.gid, extract(epoch FROM clock_timestamp() - p.prepared)::float8 AS secs
   FROM pg_prepared_xacts p
   JOIN pg_locks x ON x.locktype = 'transactionid' AND x.transactionid = p.transaction AND x.pid IS NULL
   JOIN pg_locks l ON l.virtualtransaction = x.virtualtransaction AND l.locktype = 'relation'
                  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND l.relation = ANY ($1::regclass[])
  WHERE p.database = current_database()`;

function preparedSession(x: { gid: string; secs: number | null }): BlockingSession {
  const shardctl = x.gid.startsWith('shardctl_');
  return {
    pid: 0,
    database: null,
    application: shardctl ? 'shardctl two-phase commit' : 'prepared transaction',
    state: 'prepared',
    transactionSeconds: Math.max(0, x.secs ?? 0),
    terminate: shardctl
      ? 'shardctl recover'
      : `COMMIT PREPARED '${x.gid.replace(/'/g, "''")}' (or ROLLBACK PREPARED, as its coordinator decided)`,
    gid: x.gid,
  };
}

/**
 * The prepared transactions (two-phase commit) of the current database that hold locks on any of
 * `tables`: they wrote (or locked) those tables and are not in pg_stat_activity. A shardctl one is
 * ended by `shardctl recover` from its decision record.
 *
 * @example
 * await preparedOnTables(client, ['public.accounts']) // [{ pid: 0, gid: 'shardctl_42_shard-0', state: 'prepared', ... }]
 */
export async function preparedOnTables(client: PoolClient, tables: string[]): Promise<BlockingSession[]> {
  if (tables.length === 0) return [];
  const r = await client.query<{ gid: string; secs: number | null }>(PREPARED_ON_TABLES_SQL, [
    tables.map((t) => quoteTable(t)),
  ]);
  return r.rows.map(preparedSession);
}

/**
 * Runs `work` and, while it is pending, calls `report` about every `intervalMs` (after a first
 * `intervalMs`) with what `probe` finds holding it up. A failing probe only skips that report: the
 * watch must never fail the work it explains.
 *
 * @example
 * const slot = await whileWaiting(() => createSlot(), () => xidHolders(c, [], 1), (s, ms) => emit(s, ms));
 */
export async function whileWaiting<T>(
  work: () => Promise<T>,
  probe: () => Promise<BlockingSession[]>,
  report: (sessions: BlockingSession[], elapsedMs: number) => void,
  intervalMs = 1000,
): Promise<T> {
  const started = Date.now();
  let pending = true;
  let timer: NodeJS.Timeout | undefined;
  const tick = async () => {
    const sessions = await probe().catch(() => undefined);
    if (!pending) return;
    if (sessions && sessions.length > 0) report(sessions, Date.now() - started);
    timer = setTimeout(() => void tick(), intervalMs);
  };
  timer = setTimeout(() => void tick(), intervalMs);
  try {
    return await work();
  } finally {
    pending = false;
    clearTimeout(timer);
  }
}
