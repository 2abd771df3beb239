/**
 * Shard execution: every shard query runs in one read-only session shape (READ ONLY transaction,
 * TimeZone UTC, the caller's statement_timeout) through the db layer's door, either read whole or
 * through a pg-cursor.
 */
import type { CustomTypesConfig, FieldDef, PoolClient } from 'pg';
import Cursor from 'pg-cursor';
import type { ShardPools, TransactionOptions } from '../db/shard-pools.js';
import { fromDriverError, ShardctlError } from '../errors.js';
import type { Row } from './query-types.js';

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

/** The transaction every shard query runs in. */
function readOnlyTransaction(statementTimeoutMs: number | undefined): TransactionOptions {
  return {
    readOnly: true,
    settings: { TimeZone: 'UTC' },
    ...(statementTimeoutMs ? { statementTimeoutMs } : {}),
  };
}

/**
 * Runs `fn` in a read-only session on the shard (pooled connection, READ ONLY transaction, UTC); the
 * connection is released whatever fails. Errors name the shard.
 *
 * @example
 * const n = await withReadOnlySession(pools, 'shard-0', 5000, (c) => c.query('SELECT count(*) FROM t'));
 */
export function withReadOnlySession<T>(
  pools: ShardPools,
  shard: string,
  statementTimeoutMs: number | undefined,
  fn: (client: PoolClient) => Promise<T>,
): Promise<T> {
  return pools.withTransaction(shard, fn, readOnlyTransaction(statementTimeoutMs));
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
  options: { statementTimeoutMs?: number; maxRows: number },
): Promise<ShardRows> {
  const r = await withReadOnlySession(pools, shard, options.statementTimeoutMs, (c) => queryRows(c, sql, params));
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

function readBatch(cursor: Cursor<Row>): Promise<{ rows: Row[]; fields: ShardField[] }> {
  return new Promise((resolve, reject) => {
    cursor.read(BATCH, (err, rows, result) => (err ? reject(err) : resolve({ rows, fields: result.fields })));
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

/**
 * Opens a cursor on the shard SQL in a read-only session and reads its first batch. The session holds
 * its pooled connection until the last row is read or `close()` is called; any failure rolls it back
 * and releases the connection (the pool's door, `withTransaction`, does both).
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
  options: { statementTimeoutMs?: number; probeCollation?: boolean } = {},
): Promise<ShardCursor> {
  return new Promise<ShardCursor>((resolve, reject) => {
    const { ended, end, fail } = sessionEnd();
    let opened = false;
    let cursor: Cursor<Row> | undefined;
    const handle: ShardCursor = {
      shard,
      fields: [],
      buffer: [],
      pos: 0,
      done: false,
      byteOrderDefault: false,
      async next() {
        try {
          const batch = await readBatch(cursor!);
          handle.fields = batch.fields;
          handle.buffer = batch.rows;
          handle.pos = 0;
          if (batch.rows.length < BATCH) {
            handle.done = true;
            end();
          }
        } catch (e) {
          fail(e);
          throw fromDriverError(e, { shard });
        }
      },
      async close() {
        end();
        await session.catch(() => undefined);
      },
    };
    const session = withReadOnlySession(pools, shard, options.statementTimeoutMs, async (client) => {
      if (options.probeCollation) handle.byteOrderDefault = await defaultIsByteOrder(client);
      cursor = client.query(new Cursor<Row>(sql, params, { rowMode: 'array', types: RAW_TYPES }));
      await handle.next();
      opened = true;
      resolve(handle);
      await ended;
      await cursor.close();
    });
    session.catch((e: unknown) => {
      if (!opened) reject(fromDriverError(e, { shard }));
    });
  });
}
