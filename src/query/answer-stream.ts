/** Answers a plan as a stream: shard cursors appended (plain rows) or merged k-way (ordered rows). */
import type { ShardctlError } from '../errors.js';
import type { ShardRouter } from '../router/create-router.js';
import { answerBuffered, noShardAnswered } from './answer-buffered.js';
import { comparatorFor, refuseOrder, rowComparator, type KeyComparator } from './merge-compare.js';
import { concatCursors, mergeCursors, type StreamWindow } from './merge-stream.js';
import type { FinalPlan, QueryPlan } from './plan-types.js';
import type { MissingShard, QueryField, QueryResult, QueryStream, Row } from './query-types.js';
import type { RunQueryOptions } from './query-types.js';
import { BATCH, MERGE_BATCH, openShardCursor, QuerySessions, shardFailed, type ShardCursor } from './shard-session.js';
import { withValueShapes } from './value-shapes.js';

/** Batches as a stream of rows too (consume one or the other). */
function streamOf(
  fields: QueryField[],
  source: AsyncGenerator<Row[]>,
  plan: QueryPlan,
  missing: MissingShard[],
): QueryStream {
  async function* rows(): AsyncGenerator<Row> {
    for await (const b of source) for (const r of b) yield r;
  }
  return { fields, rows: rows(), batches: source, plan, missing };
}

/**
 * A stream over an answer already in memory; `finish` runs once it is consumed or abandoned.
 *
 * @example
 * return collected(await answerBuffered(router, plan, options), release);
 */
export function collected(result: QueryResult, finish: () => Promise<void>): QueryStream {
  async function* batches(): AsyncGenerator<Row[]> {
    try {
      if (result.rows.length > 0) yield result.rows;
    } finally {
      await finish();
    }
  }
  return streamOf(result.fields, batches(), result.plan, result.missing);
}

/** Opens every planned shard's cursor in parallel; what fails closes the others (unless partial answers are allowed). */
async function openCursors(
  router: ShardRouter,
  plan: QueryPlan,
  options: RunQueryOptions,
): Promise<{ cursors: ShardCursor[]; missing: MissingShard[]; sessions: QuerySessions }> {
  const sessions = new QuerySessions(router.pools);
  const merged = plan.kind === 'final';
  const batchRows = merged ? MERGE_BATCH : BATCH;
  const open = { probeCollation: merged, statementTimeoutMs: options.statementTimeoutMs, sessions, batchRows };
  const missing: MissingShard[] = [];
  const settled = await Promise.all(
    plan.shards.map((shard) =>
      openShardCursor(router.pools, shard, plan.shardSql, plan.params, open).catch((e: unknown) =>
        shardFailed(e, shard, sessions, options, missing),
      ),
    ),
  );
  const cursors = settled.filter((c): c is ShardCursor => c !== undefined);
  if (sessions.failure || cursors.length === 0) {
    await Promise.all(cursors.map((c) => c.close()));
    throw sessions.failure ?? noShardAnswered(missing);
  }
  return { cursors, missing, sessions };
}

/** Comparators of the plan's sort keys for these cursors' types and collations (error STREAM_ORDER if none). */
function keyComparators(plan: FinalPlan, cursors: ShardCursor[]): KeyComparator[] {
  const first = cursors[0]!;
  const defaultByteOrder = cursors.every((c) => c.byteOrderDefault);
  return (plan.sortKeys ?? []).map((k) => {
    const collCol = plan.collations[k.col];
    const colls = new Set(
      cursors.flatMap((c) =>
        c.buffer
          .slice(0, 1)
          .map((r) => (collCol !== undefined ? r[collCol] : null))
          .filter((v): v is string => v !== null && v !== undefined),
      ),
    );
    if (colls.size > 1) throw refuseOrder(`text whose collation differs between shards (${[...colls].join(', ')})`);
    const values = cursors.flatMap((c) => c.buffer.map((r) => r[k.col] ?? null));
    return { ...k, cmp: comparatorFor(first.fields[k.col]!.dataTypeID, [...colls][0], defaultByteOrder, values) };
  });
}

/**
 * An answer read whole, its fields given their value shapes by a shard that answered.
 *
 * @example
 * return collected(await shapedAnswer(router, plan, await answerBuffered(router, plan, options)), release);
 */
export async function shapedAnswer(router: ShardRouter, plan: QueryPlan, answer: QueryResult): Promise<QueryResult> {
  const shard = plan.shards.find((s) => !answer.missing.some((m) => m.shard === s));
  if (shard === undefined || answer.fields.length === 0) return answer;
  return { ...answer, fields: await withValueShapes(router.pools, shard, answer.fields) };
}

/** The visible result fields: final plans name them as the query did; hidden sort keys are left out. */
function visibleFields(plan: QueryPlan, first: ShardCursor): QueryField[] {
  const visible = plan.kind === 'final' ? plan.visible : first.fields.length;
  return first.fields.slice(0, visible).map((f, i) => ({
    name: plan.kind === 'final' ? (plan.columns[i] ?? f.name) : f.name,
    typeOid: f.dataTypeID,
  }));
}

/**
 * Streams a single, concat or ordered-without-LIMIT plan through shard cursors; `finish` runs once
 * the stream is consumed or abandoned (or at once on failure). Ordered keys the client cannot compare
 * as PostgreSQL does are sorted by PostgreSQL instead, in memory bounded by `maxRows`.
 *
 * @example
 * const s = await answerStream(router, plan, options, release);
 * for await (const batch of s.batches) write(batch);
 */
export async function answerStream(
  router: ShardRouter,
  plan: QueryPlan,
  options: RunQueryOptions,
  finish: () => Promise<void>,
): Promise<QueryStream> {
  const { cursors, missing, sessions } = await openCursors(router, plan, options);
  let fields: QueryField[];
  let compare: ((a: Row, b: Row) => number) | undefined;
  try {
    fields = await withValueShapes(router.pools, cursors[0]!.shard, visibleFields(plan, cursors[0]!));
    if (plan.kind === 'final') compare = rowComparator(keyComparators(plan, cursors));
  } catch (e) {
    await Promise.all(cursors.map((c) => c.close()));
    if ((e as ShardctlError).code !== 'STREAM_ORDER') throw e;
    return collected(await shapedAnswer(router, plan, await answerBuffered(router, plan, options)), finish);
  }
  const window: StreamWindow = {
    skip: Number(plan.offset ?? 0n),
    limit: plan.kind === 'concat' && plan.limit !== undefined ? Number(plan.limit) : Infinity,
    visible: plan.kind === 'final' ? plan.visible : Infinity,
  };
  async function* batches(): AsyncGenerator<Row[]> {
    try {
      yield* compare ? mergeCursors(cursors, compare, window) : concatCursors(cursors, window);
    } catch (e) {
      // The first shard error is the query's, whichever cursor noticed it.
      throw sessions.failure ?? e;
    } finally {
      await Promise.all(cursors.map((c) => c.close()));
      await finish();
    }
  }
  return streamOf(fields, batches(), plan, missing);
}
