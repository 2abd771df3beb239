import type { ShardMap } from '../config/shard-map.js';
import { answerBuffered } from './answer-buffered.js';
import { answerStream, collected, shapedAnswer } from './answer-stream.js';
import { prepareQuery, queryRouter } from './prepare-query.js';
import type { QueryStream, RunQueryOptions } from './query-types.js';

export type { QueryStream } from './query-types.js';

/**
 * Like `runQuery`, but the rows arrive as an async generator: plain queries read each shard through a
 * cursor, ordered queries without LIMIT merge the shards' sorted cursors (k-way) with PostgreSQL's
 * ordering rules, so memory stays bounded whatever the size of the answer. Aggregates and LIMIT
 * queries are answered by PostgreSQL's final query and then yielded.
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
  const { router, release, warmed } = await queryRouter(map, options);
  try {
    const plan = await prepareQuery(router, sql, params, options);
    if (options.explain || plan.shards.length === 0) {
      if (options.explain) await release();
      return collected({ fields: [], rows: [], plan, missing: [] }, release);
    }
    await warmed(plan.shards);
    const streaming = plan.kind === 'single' || plan.kind === 'concat' || (plan.kind === 'final' && !!plan.sortKeys);
    if (!streaming)
      return collected(await shapedAnswer(router, plan, await answerBuffered(router, plan, options)), release);
    return await answerStream(router, plan, options, release);
  } catch (e) {
    await release();
    throw e;
  }
}
