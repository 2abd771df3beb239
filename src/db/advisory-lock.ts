import type { PoolClient } from 'pg';
import { ExitCode, ShardctlError } from '../errors.js';
import { ADVISORY_NAMESPACE } from './lock-keys.js';
import { sleep } from './poll.js';

/** Options of {@link withAdvisoryLock}. */
export interface AdvisoryLockOptions {
  /** How long to keep trying, in ms. Default 0: one try. */
  timeoutMs?: number;
  /** Delay between tries, in ms. Default 200. */
  pollMs?: number;
  /** What the lock protects, for the error message. Default `this operation`. */
  purpose?: string;
  /** Shard name, for the error message. */
  shard?: string;
}

/** Who holds an advisory lock, as `pg_locks` and `pg_stat_activity` tell. */
export interface LockHolder {
  pid: number;
  applicationName: string;
  since: string | null;
  clientAddr: string | null;
}

/**
 * Takes a session advisory lock by polling `pg_try_advisory_lock` (never a blocking wait, which can
 * deadlock with `CREATE INDEX CONCURRENTLY`), runs `fn`, and releases in `finally`. When the lock stays
 * busy past the timeout it throws an error (exit code 6) naming the holder: pid, application, since when.
 *
 * @param key second key of the lock, in {@link ADVISORY_NAMESPACE}
 * @example
 * await withAdvisoryLock(client, 1, () => migrate(client), { timeoutMs: 10_000, purpose: 'migrate' });
 */
export async function withAdvisoryLock<T>(
  client: PoolClient,
  key: number,
  fn: () => Promise<T>,
  options: AdvisoryLockOptions = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 0);
  for (;;) {
    const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::int4, $2::int4) AS ok', [
      ADVISORY_NAMESPACE,
      key,
    ]);
    if (r.rows[0]?.ok) break;
    if (Date.now() >= deadline) {
      const holder = await lockHolder(client, key);
      const who = holder
        ? `held by pid ${holder.pid} (${holder.applicationName || 'no application name'}${holder.clientAddr ? ` from ${holder.clientAddr}` : ''}) since ${holder.since ?? 'unknown'}`
        : 'held by another session';
      throw new ShardctlError(
        `${options.shard ? `shard ${options.shard}: ` : ''}${options.purpose ?? 'this operation'} is locked: ${who}`,
        {
          code: 'LOCKED',
          exitCode: ExitCode.Locked,
          ...(options.shard ? { shard: options.shard } : {}),
          hint: 'wait for the other run to finish, or raise --lock-timeout',
          details: holder,
        },
      );
    }
    await sleep(Math.min(options.pollMs ?? 200, Math.max(1, deadline - Date.now())));
  }
  try {
    return await fn();
  } finally {
    await client
      .query('SELECT pg_advisory_unlock($1::int4, $2::int4)', [ADVISORY_NAMESPACE, key])
      .catch(() => undefined);
  }
}

/** The session holding shardctl's advisory lock `key`, if any. */
export async function lockHolder(client: PoolClient, key: number): Promise<LockHolder | undefined> {
  const r = await client.query<{
    pid: number;
    application_name: string;
    since: Date | null;
    client_addr: string | null;
  }>(
    `SELECT l.pid, a.application_name, coalesce(a.xact_start, a.backend_start) AS since, host(a.client_addr) AS client_addr
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.classid = ($1::int4)::oid AND l.objid = ($2::int4)::oid AND l.objsubid = 2
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      LIMIT 1`,
    [ADVISORY_NAMESPACE, key],
  );
  const row = r.rows[0];
  if (!row) return undefined;
  return {
    pid: row.pid,
    applicationName: row.application_name,
    since: row.since ? new Date(row.since).toISOString() : null,
    clientAddr: row.client_addr,
  };
}
