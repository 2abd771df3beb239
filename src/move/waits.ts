import type { PoolClient } from 'pg';

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
 * `olderThanSeconds` ago: what a logical slot creation waits for.
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
  return r.rows.map(toSession);
}

/**
 * The sessions of the current database whose transaction or snapshot predates the transaction id `xid`.
 *
 * @example
 * await olderSessions(client, '10234') // [{ pid: 4242, database: 'shard_0', state: 'idle in transaction', ... }]
 */
export async function olderSessions(client: PoolClient, xid: string): Promise<BlockingSession[]> {
  const r = await client.query<ActivityRow>(OLDER_SESSIONS_SQL, [xid]);
  return r.rows.map(toSession);
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
