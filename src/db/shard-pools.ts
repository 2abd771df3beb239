import type { Pool, PoolClient, PoolConfig } from 'pg';
import type { Shard, ShardMap } from '../config/shard-map.js';
import { ExitCode, fromDriverError, ShardctlError } from '../errors.js';

/** Options of {@link ShardPools}. */
export interface ShardPoolsOptions {
  /** Connection timeout in milliseconds. Default 5000. */
  connectTimeoutMs?: number;
  /** Maximum connections per shard. Default 4. */
  maxPerShard?: number;
  /** `application_name` of every connection. Default `shardctl`. */
  applicationName?: string;
  /** `statement_timeout` for every statement, in ms. Default: none (the server's). */
  statementTimeoutMs?: number;
  /**
   * Open every session with `default_transaction_read_only=on`, so that the server itself refuses any
   * write (used by checks that promise to read only). Default false.
   */
  readOnly?: boolean;
}

let pgModule: typeof import('pg') | undefined;

/**
 * Loads node-postgres on first use: commands that never connect (validate, `locate --offline`) must
 * start without paying for it. Registers parsers so int8 and numeric never pass through floats.
 */
export async function loadPg(): Promise<typeof import('pg')> {
  if (!pgModule) {
    const mod = await import('pg');
    pgModule = (mod as unknown as { default?: typeof import('pg') }).default ?? mod;
  }
  return pgModule;
}

/**
 * One connection pool per shard, opened lazily, closed together. All connections, transactions and
 * advisory locks go through {@link ShardPools.withShard}, {@link ShardPools.withTransaction} and
 * {@link withAdvisoryLock}, which release in `finally`.
 *
 * @example
 * const pools = await ShardPools.open(map);
 * try { await pools.withShard('shard-0', (c) => c.query('select 1')) } finally { await pools.close() }
 */
export class ShardPools {
  private readonly pools = new Map<string, Pool>();

  private constructor(
    readonly map: ShardMap,
    private readonly pg: typeof import('pg'),
    private readonly options: ShardPoolsOptions,
  ) {}

  /** Creates the pool set; no connection is made until a shard is used. */
  static async open(map: ShardMap, options: ShardPoolsOptions = {}): Promise<ShardPools> {
    return new ShardPools(map, await loadPg(), options);
  }

  /** The shard of this name, or a usage error naming the known shards. */
  shard(name: string): Shard {
    const s = this.map.shards.find((x) => x.name === name);
    if (!s) {
      throw new ShardctlError(`unknown shard "${name}"; the map has ${this.map.shards.map((x) => x.name).join(', ')}`, {
        code: 'UNKNOWN_SHARD',
        exitCode: ExitCode.Usage,
      });
    }
    return s;
  }

  /** The pg Pool of a shard (created on first use). */
  pool(name: string): Pool {
    let pool = this.pools.get(name);
    if (!pool) {
      const shard = this.shard(name);
      const config: PoolConfig = {
        connectionString: shard.url,
        max: this.options.maxPerShard ?? 4,
        connectionTimeoutMillis: this.options.connectTimeoutMs ?? 5000,
        application_name: this.options.applicationName ?? 'shardctl',
        idleTimeoutMillis: 10_000,
        // An idle pool never keeps a finished command's process alive.
        allowExitOnIdle: true,
        ...(this.options.statementTimeoutMs ? { statement_timeout: this.options.statementTimeoutMs } : {}),
        ...(this.options.readOnly ? { options: '-c default_transaction_read_only=on' } : {}),
      };
      pool = new this.pg.Pool(config);
      // An idle client dying (server restart) must not crash the process; the next checkout reconnects.
      pool.on('error', () => undefined);
      this.pools.set(name, pool);
    }
    return pool;
  }

  /**
   * Runs `fn` with a connection to the shard and always releases it. A connection that failed
   * mid-use is destroyed rather than returned to the pool. Errors are wrapped to name the shard.
   */
  async withShard<T>(name: string, fn: (client: PoolClient) => Promise<T>): Promise<T> {
    let client: PoolClient;
    try {
      client = await this.pool(name).connect();
    } catch (e) {
      throw fromDriverError(e, { shard: name, action: 'cannot connect' });
    }
    let broken: Error | undefined;
    try {
      return await fn(client);
    } catch (e) {
      if (isConnectionLevel(e)) broken = e as Error;
      throw e instanceof ShardctlError ? e : fromDriverError(e, { shard: name });
    } finally {
      client.release(broken);
    }
  }

  /** Runs `fn` inside a transaction on the shard: commit on success, rollback on any error. */
  async withTransaction<T>(name: string, fn: (client: PoolClient) => Promise<T>, options: { readOnly?: boolean } = {}): Promise<T> {
    return this.withShard(name, async (client) => {
      await client.query(options.readOnly ? 'BEGIN READ ONLY' : 'BEGIN');
      try {
        const result = await fn(client);
        await client.query('COMMIT');
        return result;
      } catch (e) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw e;
      }
    });
  }

  /** Closes every pool. Safe to call twice. */
  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  }
}

function isConnectionLevel(e: unknown): boolean {
  const code = (e as { code?: string } | undefined)?.code;
  return code === undefined || code === 'ECONNRESET' || code === '57P01' || code === '08006' || code === '08003';
}

/**
 * Namespace of shardctl's advisory locks (the first key of the two-key form), so they never collide
 * with an application's own locks.
 */
export const ADVISORY_NAMESPACE = 0x5348_4354 | 0; // "SHCT"

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
export async function withAdvisoryLock<T>(client: PoolClient, key: number, fn: () => Promise<T>, options: AdvisoryLockOptions = {}): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 0);
  for (;;) {
    const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::int4, $2::int4) AS ok', [ADVISORY_NAMESPACE, key]);
    if (r.rows[0]?.ok) break;
    if (Date.now() >= deadline) {
      const holder = await lockHolder(client, key);
      const who = holder
        ? `held by pid ${holder.pid} (${holder.applicationName || 'no application name'}${holder.clientAddr ? ` from ${holder.clientAddr}` : ''}) since ${holder.since ?? 'unknown'}`
        : 'held by another session';
      throw new ShardctlError(`${options.shard ? `shard ${options.shard}: ` : ''}${options.purpose ?? 'this operation'} is locked: ${who}`, {
        code: 'LOCKED',
        exitCode: ExitCode.Locked,
        ...(options.shard ? { shard: options.shard } : {}),
        hint: 'wait for the other run to finish, or raise --lock-timeout',
        details: holder,
      });
    }
    await new Promise((r) => setTimeout(r, Math.min(options.pollMs ?? 200, Math.max(1, deadline - Date.now()))));
  }
  try {
    return await fn();
  } finally {
    await client.query('SELECT pg_advisory_unlock($1::int4, $2::int4)', [ADVISORY_NAMESPACE, key]).catch(() => undefined);
  }
}

/** The session holding shardctl's advisory lock `key`, if any. */
export async function lockHolder(client: PoolClient, key: number): Promise<LockHolder | undefined> {
  const r = await client.query<{ pid: number; application_name: string; since: Date | null; client_addr: string | null }>(
    `SELECT l.pid, a.application_name, coalesce(a.xact_start, a.backend_start) AS since, host(a.client_addr) AS client_addr
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.classid = ($1::int4)::oid AND l.objid = ($2::int4)::oid AND l.objsubid = 2
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      LIMIT 1`,
    [ADVISORY_NAMESPACE, key],
  );
  const row = r.rows[0];
  if (!row) return undefined;
  return { pid: row.pid, applicationName: row.application_name, since: row.since ? new Date(row.since).toISOString() : null, clientAddr: row.client_addr };
}

/**
 * Runs `fn` in a transaction on `client` whose lock waits end after `waitMs` (`lock_timeout`): DDL on
 * a live table waits for its running writers, bounded, never queued forever. Commit on success,
 * rollback on any error.
 *
 * @example
 * await lockedTx(client, 30_000, () => client.query('CREATE TRIGGER ...').then(() => undefined));
 */
export async function lockedTx(client: PoolClient, waitMs: number, fn: () => Promise<void>): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.floor(waitMs))}`);
    await fn();
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}
