/**
 * Shard execution: every shard query runs in one read-only session shape (READ ONLY transaction,
 * TimeZone UTC, the caller's statement_timeout) through the db layer's door, either read whole or
 * through a pg-cursor.
 */
import type { CustomTypesConfig, FieldDef, PoolClient } from 'pg';
import Cursor from 'pg-cursor';
import type { ShardPools, TransactionOptions } from '../db/shard-pools.js';
import { pollUntil } from '../db/poll.js';
import { fromDriverError, ShardctlError } from '../errors.js';
import type { MissingShard, Row, RunQueryOptions } from './query-types.js';

/** A shard-result column as the driver describes it. */
export type ShardField = Pick<FieldDef, 'name' | 'dataTypeID' | 'dataTypeModifier'>;

/** A whole shard answer. */
export interface ShardRows {
  shard: string;
  fields: ShardField[];
  rows: Row[];
}

/** Every value stays PostgreSQL's text: int8 and numeric never pass through JavaScript numbers. */
export const RAW_TYPES: CustomTypesConfig = { getTypeParser: () => (v: string) => v } as unknown as CustomTypesConfig;

/** Rows read from a cursor at a time. */
export const BATCH = 5000;

/**
 * Rows read at a time by each cursor of a k-way merge: a merge holds every cursor's batch while it
 * interleaves them, and smaller batches die young (in V8's young generation) instead of filling the
 * old one with rows already written: the export's peak RSS stays flat in the row count.
 */
export const MERGE_BATCH = 1000;

/** The transaction every shard query runs in. */
function readOnlyTransaction(statementTimeoutMs: number | undefined): TransactionOptions {
  return {
    readOnly: true,
    settings: { TimeZone: 'UTC' },
    ...(statementTimeoutMs ? { statementTimeoutMs } : {}),
  };
}

/**
 * The sessions of one query across its shards. The first failure is kept (it is the query's error,
 * whichever shard's index it has) and cancels the statements still running on the other shards
 * (`pg_cancel_backend` from a second pooled connection): a query never waits on a slow shard once
 * another has failed, and no session outlives the query's error.
 *
 * @example
 * const sessions = new QuerySessions(pools);
 * await Promise.allSettled(shards.map((s) => readShard(pools, s, sql, [], { maxRows, sessions })));
 * if (sessions.failure) throw sessions.failure;
 */
export class QuerySessions {
  /** Sessions of the query, by connection: their shard, and whether a statement is in flight. */
  private readonly running = new Map<PoolClient, { shard: string; busy: boolean }>();
  private readonly cancelled = new Set<PoolClient>();
  private cancelling: Promise<void> = Promise.resolve();
  /** The first shard error of the query, once there is one. */
  failure: ShardctlError | undefined;

  constructor(private readonly pools: ShardPools) {}

  /** A session starts on `client`: refused once the query has failed (nothing more is sent). */
  enter(client: PoolClient, shard: string): void {
    if (this.failure) throw this.failure;
    this.running.set(client, { shard, busy: false });
  }

  /**
   * The session ends. A connection that was sent a cancel may have it still pending (it can land after
   * the statement it aimed at): a harmless statement takes it, so the ROLLBACK and the pool's next user
   * never do.
   */
  async leave(client: PoolClient): Promise<void> {
    this.running.delete(client);
    if (!this.cancelled.delete(client)) return;
    await this.cancelling;
    await client.query('SELECT 1').catch(() => undefined);
  }

  /** Runs one statement of a session: while it is in flight, another shard's failure cancels it. */
  async during<T>(client: PoolClient, statement: () => Promise<T>): Promise<T> {
    const s = this.running.get(client);
    if (this.failure) throw this.failure;
    if (s) s.busy = true;
    try {
      return await statement();
    } finally {
      if (s) s.busy = false;
    }
  }

  /**
   * Records a shard's error (the first one wins) and cancels the statements in flight elsewhere
   * (`pg_cancel_backend` from a second pooled connection); resolves once they are cancelled.
   */
  fail(error: ShardctlError): Promise<void> {
    if (this.failure) return this.cancelling;
    this.failure = error;
    const busy = [...this.running.entries()].filter(([, s]) => s.busy && s.shard !== error.shard);
    for (const [client] of busy) this.cancelled.add(client);
    // A cancel that reaches a backend before the statement it aims at is ignored: repeat it until the
    // statement has ended (bounded: a backend that ignores cancels is left to statement_timeout).
    const cancel = (client: PoolClient, s: { shard: string; busy: boolean }) =>
      pollUntil(
        async () => {
          if (!s.busy) return true;
          await this.pools
            .withShard(s.shard, (c) => c.query('SELECT pg_cancel_backend($1)', [backendPid(client)]))
            .catch(() => undefined);
          return !s.busy;
        },
        { timeoutMs: 5000, intervalMs: 50, reason: `the cancel of ${s.shard}'s statement`, onTimeout: () => true },
      );
    this.cancelling = Promise.all(busy.map(([client, s]) => cancel(client, s))).then(() => undefined);
    return this.cancelling;
  }
}

/**
 * The shard error that ends the query, recorded in `sessions` (which cancels the other shards' work):
 * with `allowPartial`, an unreachable shard is named in `missing` instead.
 *
 * @example
 * readShard(pools, shard, sql, []).catch((e) => shardFailed(e, shard, sessions, options, missing))
 */
export async function shardFailed(
  e: unknown,
  shard: string,
  sessions: QuerySessions,
  options: RunQueryOptions,
  missing: MissingShard[],
): Promise<undefined> {
  const err = fromDriverError(e, { shard });
  if (options.allowPartial && err.code === 'UNREACHABLE') {
    missing.push({ shard, error: err.message });
    return undefined;
  }
  await sessions.fail(err);
  return undefined;
}

/** Whether an error means the connection is gone (the server ended the session, the socket closed). */
function connectionLost(e: unknown): boolean {
  const x = e as { code?: unknown; pg?: { code?: string }; message?: unknown } | undefined;
  const code = x?.pg?.code ?? (typeof x?.code === 'string' ? x.code : undefined);
  return (
    (code !== undefined && /^(57P0[123]|08\d{3}|ECONNRESET|EPIPE)$/.test(code)) ||
    /Connection terminated|not queryable/.test(String(x?.message ?? ''))
  );
}

/** The server process of a connection (the driver reads it from BackendKeyData at connect). */
function backendPid(client: PoolClient): number {
  return (client as unknown as { processID: number }).processID;
}

/**
 * Runs `fn` in a read-only session on the shard (pooled connection, READ ONLY transaction, UTC); the
 * connection is released whatever fails. Errors name the shard. With `sessions`, the session can be
 * cancelled by another shard's failure, and a connection lost while `fn` waits (the server killed the
 * session) fails `onLost` instead of crashing the process with an unhandled 'error' event.
 *
 * @example
 * const n = await withReadOnlySession(pools, 'shard-0', 5000, (c) => c.query('SELECT count(*) FROM t'));
 */
export function withReadOnlySession<T>(
  pools: ShardPools,
  shard: string,
  statementTimeoutMs: number | undefined,
  fn: (client: PoolClient) => Promise<T>,
  sessions?: QuerySessions,
  onLost?: (e: unknown) => void,
): Promise<T> {
  return pools.withTransaction(
    shard,
    async (client) => {
      sessions?.enter(client, shard);
      let lost = false;
      const onError = (e: unknown) => {
        lost = true;
        onLost?.(e);
      };
      client.on('error', onError);
      try {
        return await fn(client);
      } catch (e) {
        lost ||= connectionLost(e);
        throw e;
      } finally {
        await sessions?.leave(client);
        // A lost connection may still emit (the socket's reset after the server's FATAL): keep a
        // listener on it until the pool destroys it.
        if (lost) client.on('error', () => undefined);
        client.removeListener('error', onError);
      }
    },
    readOnlyTransaction(statementTimeoutMs),
  );
}

/**
 * Runs a query on an open session and returns its rows as text arrays.
 *
 * @example
 * const { fields, rows } = await queryRows(client, 'SELECT 1', []);
 */
export async function queryRows(
  client: PoolClient,
  sql: string,
  params: unknown[],
): Promise<{ fields: ShardField[]; rows: Row[] }> {
  const r = await client.query<Row>({ text: sql, values: params, rowMode: 'array', types: RAW_TYPES });
  return { fields: r.fields, rows: r.rows };
}

/**
 * Reads a shard's whole answer in a read-only session; refuses more than `maxRows` rows.
 *
 * @example
 * const r = await readShard(pools, 'shard-0', 'SELECT * FROM t', [], { maxRows: 1000 });
 */
export async function readShard(
  pools: ShardPools,
  shard: string,
  sql: string,
  params: unknown[],
  options: { statementTimeoutMs?: number; maxRows: number; sessions?: QuerySessions },
): Promise<ShardRows> {
  const r = await withReadOnlySession(
    pools,
    shard,
    options.statementTimeoutMs,
    (c) => (options.sessions ? options.sessions.during(c, () => queryRows(c, sql, params)) : queryRows(c, sql, params)),
    options.sessions,
  );
  if (r.rows.length > options.maxRows) {
    throw new ShardctlError(`a shard returned ${r.rows.length} rows, more than --max-rows ${options.maxRows}`, {
      code: 'MAX_ROWS',
      hint: 'add a LIMIT, narrow the WHERE, or raise --max-rows',
    });
  }
  return { shard, ...r };
}

/** A shard's answer read batch by batch through a cursor, in its own read-only session. */
export interface ShardCursor {
  shard: string;
  fields: ShardField[];
  /** The current batch, and the position of the next row to take in it. */
  buffer: Row[];
  pos: number;
  /** True once the shard has sent its last row (its session has then ended). */
  done: boolean;
  /** Whether the shard's default collation orders text by bytes (when asked for with `probeCollation`). */
  byteOrderDefault: boolean;
  /** Reads the next batch into `buffer`; a failure ends the session and is thrown, naming the shard. */
  next(): Promise<void>;
  /** Ends the session (idempotent); resolves once the connection is back in the pool. */
  close(): Promise<void>;
}

function readBatch(cursor: Cursor<Row>, size: number): Promise<{ rows: Row[]; fields: ShardField[] }> {
  return new Promise((resolve, reject) => {
    cursor.read(size, (err, rows, result) => (err ? reject(err) : resolve({ rows, fields: result.fields })));
  });
}

// datlocale exists from PostgreSQL 17 (15 and 16 call it daticulocale, and have no builtin provider):
// read it through the row's jsonb so that one statement runs on every major.
const DEFAULT_COLLATION_SQL = `SELECT datlocprovider AS p, datcollate AS c, to_jsonb(d) ->> 'datlocale' AS l
  FROM pg_database d WHERE datname = current_database()`;

/** Whether the session database's default collation orders text by bytes (C / POSIX / C.UTF-8 builtin). */
async function defaultIsByteOrder(client: PoolClient): Promise<boolean> {
  const d = (await client.query<{ p: string; c: string; l: string | null }>(DEFAULT_COLLATION_SQL)).rows[0]!;
  return (d.p === 'c' && ['C', 'POSIX'].includes(d.c)) || (d.p === 'b' && ['C', 'C.UTF-8'].includes(d.l ?? ''));
}

/** Lets the caller end a session whose callback waits: resolve to end it, reject to roll it back. */
function sessionEnd(): { ended: Promise<void>; end: () => void; fail: (e: unknown) => void } {
  let end!: () => void;
  let fail!: (e: unknown) => void;
  const ended = new Promise<void>((res, rej) => {
    end = res;
    fail = rej;
  });
  // The session callback is its only reader; a failure before it waits must not be reported as unhandled.
  ended.catch(() => undefined);
  return { ended, end, fail };
}

/** Options of {@link openShardCursor}. */
export interface CursorOptions {
  statementTimeoutMs?: number;
  /** Read whether the database's default collation orders text by bytes (`byteOrderDefault`). */
  probeCollation?: boolean;
  /** The query's sessions: a failure here cancels the others, theirs ends this one. */
  sessions?: QuerySessions;
  /** Rows per read (default {@link BATCH}). */
  batchRows?: number;
}

/**
 * Opens a cursor on the shard SQL in a read-only session and reads its first batch. The session holds
 * its pooled connection until the last row is read or `close()` is called; any failure rolls it back
 * and releases the connection (the pool's door, `withTransaction`, does both). A connection the server
 * ends while the cursor waits between batches fails the query at once (through `sessions`).
 *
 * @example
 * const c = await openShardCursor(pools, 'shard-0', 'SELECT * FROM t ORDER BY id', []);
 * try { while (!c.done) await c.next(); } finally { await c.close(); }
 */
export function openShardCursor(
  pools: ShardPools,
  shard: string,
  sql: string,
  params: unknown[],
  options: CursorOptions = {},
): Promise<ShardCursor> {
  return new Promise<ShardCursor>((resolve, reject) => {
    const handle = new CursorSession(shard, options.sessions, options.batchRows ?? BATCH);
    let opened = false;
    const session = withReadOnlySession(
      pools,
      shard,
      options.statementTimeoutMs,
      async (c) => {
        try {
          await handle.open(c, sql, params, options.probeCollation ?? false);
          opened = true;
          resolve(handle);
          await handle.held();
        } finally {
          await handle.closePortal();
        }
      },
      options.sessions,
      (e) => handle.lose(e),
    );
    handle.session = session;
    session.catch((e: unknown) => {
      if (!opened) reject(fromDriverError(e, { shard }));
    });
  });
}

/** A shard cursor and the session holding it open (see {@link openShardCursor}). */
class CursorSession implements ShardCursor {
  fields: ShardField[] = [];
  buffer: Row[] = [];
  pos = 0;
  done = false;
  byteOrderDefault = false;
  /** Settles once the session's connection is back in its pool. */
  session: Promise<unknown> = Promise.resolve();
  private readonly end = sessionEnd();
  private cursor: Cursor<Row> | undefined;
  private client: PoolClient | undefined;
  /** Set when the connection was lost (the server ended the session) while the cursor was open. */
  private lost: ShardctlError | undefined;
  private readFailed = false;

  constructor(
    readonly shard: string,
    private readonly sessions: QuerySessions | undefined,
    private readonly batchRows: number,
  ) {}

  async open(client: PoolClient, sql: string, params: unknown[], probeCollation: boolean): Promise<void> {
    this.client = client;
    if (probeCollation) this.byteOrderDefault = await defaultIsByteOrder(client);
    this.cursor = client.query(new Cursor<Row>(sql, params, { rowMode: 'array', types: RAW_TYPES }));
    // The server's own words (a FATAL of a killed session) reach the cursor before the socket closes.
    this.cursor.on('error', (e: unknown) => this.lose(e));
    await this.next();
  }

  /** Waits until the cursor is read or closed. */
  held(): Promise<void> {
    return this.end.ended;
  }

  /**
   * Closes the portal: COMMIT or ROLLBACK wait behind an open one. Not after a failed read (the driver
   * has already ended the portal, and a second close would wait forever) nor on a lost connection.
   */
  async closePortal(): Promise<void> {
    if (this.cursor && !this.lost && !this.readFailed) await this.cursor.close();
  }

  lose(e: unknown): void {
    this.lost ??= fromDriverError(e, { shard: this.shard });
    void this.failed(this.lost);
  }

  private async failed(e: unknown): Promise<ShardctlError> {
    const err = fromDriverError(e, { shard: this.shard });
    this.end.fail(err);
    await this.sessions?.fail(err);
    // Cancelled because another shard failed first: the query's error is that one.
    return this.sessions?.failure ?? err;
  }

  async next(): Promise<void> {
    // This shard's connection was lost, or another shard failed: end now, with that error.
    const before = this.lost ?? this.sessions?.failure;
    if (before) throw await this.failed(before);
    try {
      const read = () => readBatch(this.cursor!, this.batchRows);
      const batch = await (this.sessions ? this.sessions.during(this.client!, read) : read());
      this.fields = batch.fields;
      this.buffer = batch.rows;
      this.pos = 0;
      if (batch.rows.length < this.batchRows) {
        this.done = true;
        this.end.end();
      }
    } catch (e) {
      this.readFailed = true;
      throw await this.failed(this.lost ?? e);
    }
  }

  async close(): Promise<void> {
    this.end.end();
    await this.session.catch(() => undefined);
  }
}
