/* eslint-disable @typescript-eslint/no-explicit-any */
import type { PoolClient } from 'pg';
import type { ShardMap } from '../config/shard-map.js';
import { ExitCode, fromDriverError, ShardctlError } from '../errors.js';
import { createRouter, type Router } from '../router/create-router.js';
import type { QueryPlan } from './plan-query.js';
import { runQuery, type QueryField, type QueryResult, type RunQueryOptions } from './run-query.js';

/** A query answer whose rows arrive as they are merged (bounded memory for plain and ordered queries). */
export interface QueryStream {
  fields: QueryField[];
  /** The rows one by one. Consume either `rows` or `batches`, not both. */
  rows: AsyncGenerator<(string | null)[]>;
  /** The same rows in batches (cheaper for exports). */
  batches: AsyncGenerator<(string | null)[][]>;
  plan: QueryPlan;
  missing: QueryResult['missing'];
}

const RAW_TYPES = { getTypeParser: () => (v: string) => v } as any;
const BATCH = 5000;

interface Cursor {
  shard: string;
  fields: { name: string; dataTypeID: number }[];
  buffer: (string | null)[][];
  pos: number;
  done: boolean;
  next(): Promise<void>;
  close(): Promise<void>;
}

/** Opens a cursor for the shard SQL in a READ ONLY transaction and reads its first batch. */
async function openCursor(
  router: Router,
  shard: string,
  sql: string,
  params: unknown[],
  statementTimeoutMs?: number,
): Promise<Cursor> {
  let client: PoolClient;
  try {
    client = await router.pools.pool(shard).connect();
  } catch (e) {
    throw fromDriverError(e, { shard, action: 'cannot connect' });
  }
  let open = true;
  const close = async (failed = false) => {
    if (!open) return;
    open = false;
    await client.query(failed ? 'ROLLBACK' : 'COMMIT').catch(() => undefined);
    client.release(failed ? true : undefined);
  };
  try {
    await client.query('BEGIN READ ONLY');
    await client.query("SET LOCAL TimeZone = 'UTC'");
    if (statementTimeoutMs) await client.query(`SET LOCAL statement_timeout = ${Math.floor(statementTimeoutMs)}`);
    await client.query({ text: `DECLARE shardctl_cursor NO SCROLL CURSOR FOR ${sql}`, values: params } as any);
  } catch (e) {
    await close(true);
    throw fromDriverError(e, { shard });
  }
  const cursor: Cursor = {
    shard,
    fields: [],
    buffer: [],
    pos: 0,
    done: false,
    async next() {
      try {
        const r = await client.query({
          text: `FETCH FORWARD ${BATCH} FROM shardctl_cursor`,
          rowMode: 'array',
          types: RAW_TYPES,
        } as any);
        cursor.fields = r.fields as any;
        cursor.buffer = r.rows as any;
        cursor.pos = 0;
        if (r.rows.length < BATCH) {
          cursor.done = true;
          await close();
        }
      } catch (e) {
        await close(true);
        throw fromDriverError(e, { shard });
      }
    },
    close: () => close(true),
  };
  await cursor.next();
  return cursor;
}

const INT = new Set([20, 21, 23, 26]);
const NUM = 1700;
const FLOAT = new Set([700, 701]);
const TEXT = new Set([25, 1043, 1042, 19]);
const TIME = new Set([1082, 1114, 1184]); // date, timestamp, timestamptz (ISO text in UTC)
const ORDERED_AS_TEXT = new Set([2950, 16]); // uuid (lowercase hex), bool (f < t)
const BYTE_ORDER_COLLATIONS = new Set(['"C"', '"POSIX"', '"ucs_basic"', '"pg_c_utf8"']);

function compareNumeric(a: string, b: string): number {
  if (a === b) return 0;
  if (a === 'NaN' || b === 'NaN') return a === 'NaN' ? 1 : -1;
  const [an, bn] = [a.startsWith('-'), b.startsWith('-')];
  if (an !== bn) return an ? -1 : 1;
  const sign = an ? -1 : 1;
  const [ai, af = ''] = (an ? a.slice(1) : a).split('.');
  const [bi, bf = ''] = (bn ? b.slice(1) : b).split('.');
  const ia = ai!.replace(/^0+(?=\d)/, '');
  const ib = bi!.replace(/^0+(?=\d)/, '');
  if (ia.length !== ib.length) return sign * (ia.length - ib.length);
  if (ia !== ib) return sign * (ia < ib ? -1 : 1);
  const w = Math.max(af.length, bf.length);
  const fa = af.padEnd(w, '0');
  const fb = bf.padEnd(w, '0');
  return fa === fb ? 0 : sign * (fa < fb ? -1 : 1);
}

function compareInt(a: string, b: string): number {
  // Up to 15 digits a double holds exactly: no BigInt on the hot path.
  if (a.length < 16 && b.length < 16) {
    const x = +a;
    const y = +b;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

function compareFloat(a: string, b: string): number {
  const x = Number(a);
  const y = Number(b);
  // PostgreSQL orders NaN above every number.
  if (Number.isNaN(x) || Number.isNaN(y)) return Number.isNaN(x) && Number.isNaN(y) ? 0 : Number.isNaN(x) ? 1 : -1;
  return x < y ? -1 : x > y ? 1 : 0;
}

function compareTime(a: string, b: string): number {
  if (a.endsWith(' BC') || b.endsWith(' BC')) throw refuseOrder('dates before Christ');
  const rank = (v: string) => (v === '-infinity' ? -1 : v === 'infinity' ? 1 : 0);
  if (rank(a) || rank(b)) return rank(a) - rank(b);
  return a < b ? -1 : a > b ? 1 : 0;
}

const encoder = new TextEncoder();
function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(encoder.encode(a)), Buffer.from(encoder.encode(b)));
}

/** A comparator for one sort key's type, or a refusal naming why the order cannot be reproduced. */
function comparatorFor(
  typeOid: number,
  collation: string | undefined,
  defaultByteOrder: boolean,
  values: (string | null)[],
): (a: string, b: string) => number {
  if (INT.has(typeOid)) return compareInt;
  if (typeOid === NUM) return compareNumeric;
  if (FLOAT.has(typeOid)) return compareFloat;
  if (TIME.has(typeOid)) {
    if (values.some((v) => v !== null && / BC$/.test(v))) throw needsFinal('dates before Christ');
    return compareTime;
  }
  if (ORDERED_AS_TEXT.has(typeOid)) return (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  if (TEXT.has(typeOid)) {
    const byteOrder =
      collation === undefined ||
      BYTE_ORDER_COLLATIONS.has(collation) ||
      (collation === '"default"' && defaultByteOrder);
    if (!byteOrder) throw needsFinal(`text under collation ${collation}`);
    return compareBytes;
  }
  throw needsFinal(`type oid ${typeOid}`);
}

/** The client cannot compare these keys as PostgreSQL does: the final sort must run in PostgreSQL. */
function needsFinal(what: string): ShardctlError {
  return new ShardctlError(`ORDER BY on ${what} is merged by PostgreSQL, not streamed`, { code: 'STREAM_ORDER' });
}

function refuseOrder(what: string): ShardctlError {
  return new ShardctlError(
    `refused: ORDER BY on ${what} across shards without LIMIT cannot be merged exactly while streaming`,
    {
      code: 'REFUSED',
      exitCode: ExitCode.Refused,
      hint: 'add a LIMIT (the final sort then runs in PostgreSQL), sort by a byte-order collation (COLLATE "C"), or use --tenant/--shard',
    },
  );
}

/** A stream over an answer already in memory; `finish` runs once it is consumed or abandoned. */
function collected(result: QueryResult, finish: () => Promise<void>): QueryStream {
  async function* batches(): AsyncGenerator<(string | null)[][]> {
    try {
      if (result.rows.length > 0) yield result.rows;
    } finally {
      await finish();
    }
  }
  const source = batches();
  async function* rows(): AsyncGenerator<(string | null)[]> {
    for await (const b of source) for (const r of b) yield r;
  }
  return { fields: result.fields, rows: rows(), batches: source, plan: result.plan, missing: result.missing };
}

/**
 * Like `runQuery`, but the rows arrive as an async generator: plain queries read each shard through a
 * cursor, ordered queries without LIMIT merge the shards' sorted cursors (k-way) with PostgreSQL's
 * ordering rules, so memory stays bounded whatever the size of the answer. Aggregates and LIMIT
 * queries are answered as `runQuery` does and then yielded.
 *
 * @example
 * const s = await streamQuery(map, 'SELECT * FROM invoices ORDER BY id', []);
 * for await (const row of s.rows) process.stdout.write(row.join(',') + '\n');
 */
export async function streamQuery(
  map: ShardMap,
  sql: string,
  params: unknown[],
  options: RunQueryOptions = {},
): Promise<QueryStream> {
  const router =
    options.router ??
    (await createRouter(map, {
      pool: { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 2, applicationName: 'shardctl query' },
    }));
  const owned = !options.router;
  const finish = async () => {
    if (owned) await router.close();
  };
  try {
    const planned = await runQuery(map, sql, params, { ...options, router, explain: true });
    const plan = planned.plan;
    const streaming =
      plan.kind === 'single' || plan.kind === 'concat' || (plan.kind === 'final' && plan.sortKeys !== undefined);
    if (options.explain || !streaming || plan.shards.length === 0) {
      const result =
        options.explain || plan.shards.length === 0
          ? planned
          : await runQuery(map, sql, params, { ...options, router });
      if (options.explain) await finish();
      return collected(result, finish);
    }
    const missing: QueryResult['missing'] = [];
    const cursors: Cursor[] = [];
    for (const shard of plan.shards) {
      try {
        cursors.push(await openCursor(router, shard, plan.shardSql, plan.params, options.statementTimeoutMs));
      } catch (e) {
        const err = fromDriverError(e, { shard });
        if (options.allowPartial && err.code === 'UNREACHABLE') missing.push({ shard, error: err.message });
        else {
          await Promise.all(cursors.map((c) => c.close()));
          throw err;
        }
      }
    }
    if (cursors.length === 0)
      throw new ShardctlError(`no shard answered: ${missing.map((m) => m.error).join('; ')}`, { code: 'UNREACHABLE' });
    const first = cursors[0]!;
    const visible = plan.kind === 'final' ? plan.visible : first.fields.length;
    const fields = first.fields.slice(0, visible).map((f) => ({
      name:
        plan.kind === 'final'
          ? (plan.final.SelectStmt.targetList[first.fields.indexOf(f)]?.ResTarget?.name ?? f.name)
          : f.name,
      typeOid: f.dataTypeID,
    }));
    let compare: ((a: (string | null)[], b: (string | null)[]) => number) | undefined;
    if (plan.kind === 'final') {
      const defaults = await Promise.all(
        cursors.map((c) =>
          router.pools.withShard(c.shard, async (k) => {
            const r = await k.query<{ p: string; c: string; l: string | null }>(
              'SELECT datlocprovider AS p, datcollate AS c, datlocale AS l FROM pg_database WHERE datname = current_database()',
            );
            const d = r.rows[0]!;
            return (
              (d.p === 'c' && ['C', 'POSIX'].includes(d.c)) || (d.p === 'b' && ['C', 'C.UTF-8'].includes(d.l ?? ''))
            );
          }),
        ),
      );
      let keyCmp;
      try {
        keyCmp = plan.sortKeys!.map((k) => {
          const collCol = plan.collations?.[k.col];
          const colls = new Set(
            cursors.flatMap((c) =>
              c.buffer
                .slice(0, 1)
                .map((r) => (collCol !== undefined ? r[collCol] : null))
                .filter((v): v is string => v !== null),
            ),
          );
          if (colls.size > 1)
            throw refuseOrder(`text whose collation differs between shards (${[...colls].join(', ')})`);
          const cmp = comparatorFor(
            first.fields[k.col]!.dataTypeID,
            [...colls][0],
            defaults.every(Boolean),
            cursors.flatMap((c) => c.buffer.map((r) => r[k.col] ?? null)),
          );
          return { ...k, cmp };
        });
      } catch (e) {
        if ((e as ShardctlError).code !== 'STREAM_ORDER') throw e;
        // Keys the client cannot order as PostgreSQL does: PostgreSQL sorts them in a final query
        // (memory bounded by --max-rows instead of streaming).
        await Promise.all(cursors.map((c) => c.close()));
        return collected(await runQuery(map, sql, params, { ...options, router, finalSort: true }), finish);
      }
      const sorted = keyCmp;
      compare = (a, b) => {
        for (const k of sorted) {
          const x = a[k.col] ?? null;
          const y = b[k.col] ?? null;
          if (x === null || y === null) {
            if (x === y) continue;
            return (x === null) === k.nullsFirst ? -1 : 1;
          }
          const c = k.cmp(x, y);
          if (c !== 0) return k.desc ? -c : c;
        }
        return 0;
      };
    }
    // Rows travel in batches: one promise per batch, not per row, on the hot path of an export.
    async function* batches(): AsyncGenerator<(string | null)[][]> {
      let skip = Number(plan.offset ?? 0n);
      let left = plan.kind === 'concat' && plan.limit !== undefined ? Number(plan.limit) : Infinity;
      try {
        if (!compare) {
          for (const c of cursors) {
            for (;;) {
              let rows = c.buffer.slice(c.pos);
              c.pos = c.buffer.length;
              if (skip > 0) {
                const n = Math.min(skip, rows.length);
                skip -= n;
                rows = rows.slice(n);
              }
              if (rows.length > left) rows = rows.slice(0, left);
              left -= rows.length;
              if (rows.length > 0) yield rows;
              if (left <= 0 || c.done) break;
              await c.next();
            }
            if (left <= 0) return;
          }
          return;
        }
        const live = cursors.filter((c) => c.buffer.length > 0 || !c.done);
        for (const c of live) if (c.pos >= c.buffer.length && !c.done) await c.next();
        let out: (string | null)[][] = [];
        for (;;) {
          let best: Cursor | undefined;
          for (const c of live) {
            if (c.pos >= c.buffer.length) continue;
            // Ties keep shard order: any order of equal keys is a correct order.
            if (!best || compare(c.buffer[c.pos]!, best.buffer[best.pos]!) < 0) best = c;
          }
          if (!best) break;
          const row = best.buffer[best.pos++]!;
          if (best.pos >= best.buffer.length && !best.done) {
            if (out.length > 0) {
              yield out;
              out = [];
            }
            await best.next();
          }
          if (skip > 0) {
            skip--;
            continue;
          }
          out.push(row.length > visible ? row.slice(0, visible) : row);
          if (out.length >= BATCH) {
            yield out;
            out = [];
          }
        }
        if (out.length > 0) yield out;
      } finally {
        await Promise.all(cursors.map((c) => c.close()));
        await finish();
      }
    }
    const source = batches();
    async function* rows(): AsyncGenerator<(string | null)[]> {
      for await (const b of source) for (const r of b) yield r;
    }
    return { fields, rows: rows(), batches: source, plan, missing };
  } catch (e) {
    await finish();
    throw e;
  }
}
