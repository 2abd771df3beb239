import type { ShardMap } from '../config/shard-map.js';
import { ShardctlError } from '../errors.js';
import { answerBuffered } from './answer-buffered.js';
import { answerStream } from './answer-stream.js';
import { prepareQuery, queryRouter } from './prepare-query.js';
import { DEFAULT_MAX_ROWS, type QueryResult, type QueryStream, type Row, type RunQueryOptions } from './query-types.js';

export type { QueryField, QueryResult, RunQueryOptions, MissingShard, ValueShape } from './query-types.js';

/** Collects a stream's rows, refusing more than `maxRows`. */
async function collect(stream: QueryStream, maxRows: number): Promise<Row[]> {
  const rows: Row[] = [];
  for await (const batch of stream.batches) {
    for (const r of batch) rows.push(r);
    if (rows.length > maxRows)
      throw new ShardctlError(`the answer has more than --max-rows ${maxRows} rows`, {
        code: 'MAX_ROWS',
        hint: 'stream it with shardctl query --format ndjson, add a LIMIT, or raise --max-rows',
      });
  }
  return rows;
}

/**
 * Answers a SELECT across the shards exactly as one PostgreSQL holding all the data would, or refuses
 * it (exit code 7) naming the construct. Every shard query runs in a READ ONLY transaction. Ordered
 * queries without LIMIT are merged k-way from the shards' cursors, then collected.
 *
 * @example
 * const { fields, rows } = await runQuery(map, 'SELECT plan_id, count(*) FROM tenants GROUP BY 1 ORDER BY 1', []);
 */
export async function runQuery(
  map: ShardMap,
  sql: string,
  params: unknown[],
  options: RunQueryOptions = {},
): Promise<QueryResult> {
  const { router, release, warmed } = await queryRouter(map, options);
  try {
    const plan = await prepareQuery(router, sql, params, options);
    if (options.explain) return { fields: [], rows: [], plan, missing: [] };
    await warmed(plan.shards);
    if (plan.kind !== 'final' || !plan.sortKeys || options.finalSort)
      return await answerBuffered(router, plan, options);
    const stream = await answerStream(router, plan, options, async () => undefined);
    const rows = await collect(stream, options.maxRows ?? DEFAULT_MAX_ROWS);
    return { fields: stream.fields, rows, plan, missing: stream.missing };
  } finally {
    await release();
  }
}
