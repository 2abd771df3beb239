import { createRequire } from 'node:module';
import type { Client, ClientConfig, Pool, PoolClient, PoolConfig } from 'pg';
import type { Shard, ShardMap } from '../config/shard-map.js';
import { ExitCode, fromDriverError, ShardctlError } from '../errors.js';
import { withTransaction, type TransactionOptions } from './transaction.js';
import { readServerVersion, unsupportedServer, type ServerVersion } from './server-version.js';
import { DEFAULT_IDLE_IN_TRANSACTION_MS, sessionOptions, urlOptions } from './session-settings.js';

export { ADVISORY_NAMESPACE } from './lock-keys.js';
export { withAdvisoryLock, lockHolder, type AdvisoryLockOptions, type LockHolder } from './advisory-lock.js';
export type { TransactionOptions } from './transaction.js';
export type { ServerVersion } from './server-version.js';
export { DEFAULT_IDLE_IN_TRANSACTION_MS } from './session-settings.js';

/** Options of {@link ShardPools}. */
export interface ShardPoolsOptions {
  /** Connection timeout in milliseconds. Default 5000. */
  connectTimeoutMs?: number;
  /** Maximum connections per shard. Default 4. */
  maxPerShard?: number;
  /**
   * Connections per shard kept open however long they sit idle, once made (pg-pool's `min`). Default 0:
   * a command's idle connections close after 10 s. Routers keep 1, so that the first query to a shard
   * after a quiet spell (a tenant's first write on its new shard after a move) does not wait for a
   * connection.
   */
  minPerShard?: number;
  /** `application_name` of every connection. Default `shardctl`. */
  applicationName?: string;
  /** `statement_timeout` for every statement, in ms. Default: none (the server's). */
  statementTimeoutMs?: number;
  /**
   * Open every session with `default_transaction_read_only=on`, so that the server itself refuses any
   * write (used by checks that promise to read only). Default false.
   */
  readOnly?: boolean;
  /**
   * `idle_in_transaction_session_timeout` of every session, in ms: a client that stops inside a
   * transaction (hung, paused, killed without its socket closing) loses its locks and snapshot after
   * this long. 0 disables it. Default {@link DEFAULT_IDLE_IN_TRANSACTION_MS} (60 s).
   */
  idleInTransactionTimeoutMs?: number;
  /**
   * Accept servers older than PostgreSQL 15 instead of refusing them on first connection (for checks
   * that only report what a server is, like `shards --check`). Default false.
   */
  allowUnsupportedServers?: boolean;
}

let pgModule: typeof import('pg') | undefined;

/**
 * node-postgres, required with a `navigator` in place when the runtime has none (Node 20; Node 21 and
 * later have one). At load pg asks whether it runs in a Cloudflare Worker: without `navigator` it
 * builds a fetch `Response` to find out, which loads Node's whole fetch stack (undici) and costs more
 * CPU than the rest of a trivial `shardctl query`. The stand-in lives only while pg loads
 * (synchronously: no other code runs meanwhile) and is removed at once.
 */
function requirePg(): typeof import('pg') {
  const g = globalThis as { navigator?: unknown };
  const lent = g.navigator === undefined;
  if (lent) Object.defineProperty(g, 'navigator', { value: { userAgent: 'Node.js' }, configurable: true });
  try {
    return createRequire(import.meta.url)('pg') as typeof import('pg');
  } finally {
    if (lent) delete g.navigator;
  }
}

/**
 * Loads node-postgres on first use: commands that never connect (validate, `locate --offline`) must
 * start without paying for it.
 *
 * @example
 * const { Client } = await loadPg();
 */
export async function loadPg(): Promise<typeof import('pg')> {
  pgModule ??= requirePg();
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
  /** Each shard's version, read once on its first connection (a failed read is retried next time). */
  private readonly versions = new Map<string, Promise<ServerVersion>>();

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

  /** What every session to the shard connects with: URL, timeouts, name and startup settings. */
  private clientConfig(shard: Shard, applicationName?: string): ClientConfig {
    return {
      connectionString: shard.url,
      connectionTimeoutMillis: this.options.connectTimeoutMs ?? 5000,
      application_name: applicationName ?? this.options.applicationName ?? 'shardctl',
      // Startup options, so every session of every command has them from its first statement.
      options: sessionOptions({
        idleInTransactionMs: this.options.idleInTransactionTimeoutMs ?? DEFAULT_IDLE_IN_TRANSACTION_MS,
        ...(this.options.statementTimeoutMs ? { statementTimeoutMs: this.options.statementTimeoutMs } : {}),
        ...(this.options.readOnly ? { readOnly: true } : {}),
        urlOptions: urlOptions(shard.url),
      }),
    };
  }

  /**
   * A connection of its own to the shard, outside the pool, with the pool's settings: for a session that
   * stays open and holds session state (a router's LISTEN). The caller ends it; errors name the shard.
   *
   * @example
   * const client = await pools.connectDedicated('shard-0', 'shardctl-router');
   * try { await client.query('LISTEN shardctl_directory') } finally { await client.end() }
   */
  async connectDedicated(name: string, applicationName?: string): Promise<Client> {
    const client = new this.pg.Client(this.clientConfig(this.shard(name), applicationName));
    try {
      await client.connect();
      return client;
    } catch (e) {
      await client.end().catch(() => undefined);
      throw fromDriverError(e, { shard: name, action: 'cannot connect' });
    }
  }

  /**
   * Opens connections to a shard until its pool holds `count` (at most its maximum), and leaves them
   * idle in the pool: the next `count` queries find a connection ready instead of paying for a
   * connection and authentication each. Failures are ignored (the queries then connect as usual).
   *
   * @example
   * await pools.warm('shard-2', 4);
   */
  async warm(name: string, count: number): Promise<void> {
    const pool = this.pool(name);
    const want = Math.min(count, this.options.maxPerShard ?? 4) - pool.totalCount;
    if (want <= 0) return;
    const opened = await Promise.allSettled(Array.from({ length: want }, () => pool.connect()));
    for (const c of opened) if (c.status === 'fulfilled') c.value.release();
  }

  /** The pg Pool of a shard (created on first use). */
  pool(name: string): Pool {
    let pool = this.pools.get(name);
    if (!pool) {
      const config: PoolConfig = {
        ...this.clientConfig(this.shard(name)),
        max: this.options.maxPerShard ?? 4,
        min: Math.min(this.options.minPerShard ?? 0, this.options.maxPerShard ?? 4),
        idleTimeoutMillis: 10_000,
        // An idle pool never keeps a finished command's process alive.
        allowExitOnIdle: true,
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
      await this.ensureSupported(name, client);
      return await fn(client);
    } catch (e) {
      if (isConnectionLevel(e)) broken = e as Error;
      throw e instanceof ShardctlError ? e : fromDriverError(e, { shard: name });
    } finally {
      client.release(broken);
    }
  }

  /**
   * Runs `fn` inside a transaction on the shard: commit on success, rollback on any error. Options give
   * the isolation level, READ ONLY and per-transaction settings (see {@link TransactionOptions}).
   *
   * @example
   * await pools.withTransaction('shard-0', (c) => c.query('UPDATE ...'), { lockTimeoutMs: 5000 });
   */
  async withTransaction<T>(
    name: string,
    fn: (client: PoolClient) => Promise<T>,
    options: TransactionOptions = {},
  ): Promise<T> {
    return this.withShard(name, (client) => withTransaction(client, () => fn(client), options));
  }

  /**
   * Runs `fn` with one connection per name in `names` (a name may repeat: two sessions on one shard),
   * connected in parallel, and releases every one whatever fails: a connection that fails after others
   * succeeded releases those first, so no error path leaks a pooled client. Connect errors name the shard.
   * The sessions run without `idle_in_transaction_session_timeout` (one may idle in a transaction while
   * another works) and get it back when released.
   *
   * @example
   * await pools.withClients([m.source, m.target], async ([src, dst]) => copy(src!, dst!));
   */
  async withClients<T>(names: readonly string[], fn: (clients: PoolClient[]) => Promise<T>): Promise<T> {
    const settled = await Promise.allSettled(names.map((n) => this.pool(n).connect()));
    const clients = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = settled.findIndex((r) => r.status === 'rejected');
    if (failed >= 0) {
      for (const c of clients) c.release();
      const reason = (settled[failed] as PromiseRejectedResult).reason;
      throw fromDriverError(reason, { shard: names[failed]!, action: 'cannot connect' });
    }
    let broken: Error | undefined;
    try {
      for (const [i, n] of names.entries()) await this.ensureSupported(n, clients[i]!);
      // Sessions used together wait on each other inside transactions (a copy's source snapshot stays
      // open, idle, while the target runs a table's foreign-key checks): the idle limit would end the
      // waiting one. They lift it until released; the process is alive all along, and a dead process
      // closes its sockets, which ends the sessions at once.
      await Promise.all(clients.map((c) => c.query('SET idle_in_transaction_session_timeout = 0')));
      return await fn(clients);
    } catch (e) {
      if (isConnectionLevel(e)) broken = e as Error;
      throw e;
    } finally {
      await Promise.all(clients.map((c) => releaseRestored(c, broken)));
    }
  }

  /**
   * The PostgreSQL version of a shard (read on its first connection, then remembered).
   *
   * @example
   * (await pools.serverVersion('shard-0')).major // 15
   */
  async serverVersion(name: string): Promise<ServerVersion> {
    const known = this.versions.get(name);
    if (known) return known;
    return this.withShard(name, async () => (await this.versions.get(name))!);
  }

  /**
   * Reads the shard's version on its first connection and refuses a server older than PostgreSQL 15
   * (`UNSUPPORTED_SERVER`, naming the shard and version) unless the pools allow it.
   */
  private async ensureSupported(name: string, client: PoolClient): Promise<void> {
    let version = this.versions.get(name);
    if (!version) {
      version = readServerVersion(client);
      this.versions.set(name, version);
      version.catch(() => this.versions.delete(name));
    }
    const refusal = unsupportedServer(await version, name);
    if (refusal && !this.options.allowUnsupportedServers) throw refusal;
  }

  /** Closes every pool. Safe to call twice. */
  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  }
}

/** Returns a coordinated session to the pool with the startup idle limit back (destroyed if that fails). */
async function releaseRestored(client: PoolClient, broken: Error | undefined): Promise<void> {
  if (broken) return client.release(broken);
  try {
    await client.query('RESET idle_in_transaction_session_timeout');
    client.release();
  } catch (e) {
    client.release(e as Error);
  }
}

function isConnectionLevel(e: unknown): boolean {
  const code = (e as { code?: string } | undefined)?.code;
  return code === undefined || code === 'ECONNRESET' || code === '57P01' || code === '08006' || code === '08003';
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
  await withTransaction(client, fn, { lockTimeoutMs: waitMs });
}
