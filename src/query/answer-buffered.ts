/** Answers a plan from whole shard results held in memory (aggregates, LIMIT, keys only PostgreSQL can sort). */
import { ShardctlError } from '../errors.js';
import type { ShardRouter } from '../router/create-router.js';
import { combineFinal, fieldsOf } from './merge-final.js';
import { combinePullup } from './merge-pullup.js';
import type { QueryPlan } from './plan-types.js';
import { DEFAULT_MAX_ROWS, type MissingShard, type QueryResult, type RunQueryOptions } from './query-types.js';
import { QuerySessions, readShard, shardFailed, type ShardRows } from './shard-session.js';

/**
 * The error that ends a query when no shard could be asked.
 *
 * @example
 * if (answered.length === 0) throw noShardAnswered(missing);
 */
export function noShardAnswered(missing: MissingShard[]): ShardctlError {
  return new ShardctlError(`no shard answered: ${missing.map((m) => m.error).join('; ')}`, { code: 'UNREACHABLE' });
}

/** Every planned shard's whole answer; with `allowPartial`, unreachable shards go to `missing`. */
async function readShards(
  router: ShardRouter,
  plan: QueryPlan,
  options: RunQueryOptions,
  missing: MissingShard[],
): Promise<ShardRows[]> {
  const maxRows = options.maxRows ?? DEFAULT_MAX_ROWS;
  // Every session is back in its pool before the query ends; the first failure cancels the others.
  const sessions = new QuerySessions(router.pools);
  const read = {
    maxRows,
    sessions,
    ...(options.statementTimeoutMs ? { statementTimeoutMs: options.statementTimeoutMs } : {}),
  };
  const results = await Promise.all(
    plan.shards.map((shard) =>
      readShard(router.pools, shard, plan.shardSql, plan.params, read).catch((e: unknown) =>
        shardFailed(e, shard, sessions, options, missing),
      ),
    ),
  );
  if (sessions.failure?.code === 'MAX_ROWS' && plan.kind === 'pullup')
    throw new ShardctlError(`pulling up rows for ${plan.construct}: ${sessions.failure.message}`, {
      code: 'MAX_ROWS',
      hint: 'narrow the WHERE, or raise --max-rows',
    });
  if (sessions.failure) throw sessions.failure;
  const ok = results.filter((r): r is ShardRows => r !== undefined);
  if (ok.length === 0 && plan.shards.length > 0) throw noShardAnswered(missing);
  const total = ok.reduce((a, r) => a + r.rows.length, 0);
  if (total > maxRows)
    throw new ShardctlError(
      `${plan.kind === 'pullup' ? `pulling up rows for ${plan.construct}: ` : ''}the shards returned ${total} rows, more than --max-rows ${maxRows}`,
      { code: 'MAX_ROWS', hint: 'narrow the WHERE, add a LIMIT, or raise --max-rows' },
    );
  return ok;
}

/**
 * Answers a plan by reading every shard's answer whole, then merging: unchanged (single), appended with
 * the window applied (concat), or combined by PostgreSQL's final query (final).
 *
 * @example
 * const { fields, rows, missing } = await answerBuffered(router, plan, { maxRows: 1000 });
 */
export async function answerBuffered(
  router: ShardRouter,
  plan: QueryPlan,
  options: RunQueryOptions,
): Promise<QueryResult> {
  const missing: MissingShard[] = [];
  const ok = await readShards(router, plan, options, missing);
  const first = ok[0];
  if (!first) return { fields: [], rows: [], plan, missing };
  if (plan.kind === 'single') return { fields: fieldsOf(first.fields), rows: first.rows, plan, missing };
  if (plan.kind === 'concat') {
    const from = Number(plan.offset ?? 0n);
    const to = plan.limit !== undefined ? from + Number(plan.limit) : undefined;
    return { fields: fieldsOf(first.fields), rows: ok.flatMap((r) => r.rows).slice(from, to), plan, missing };
  }
  if (plan.kind === 'pullup') return { ...(await combinePullup(router.pools, plan, ok, options)), plan, missing };
  const combined = await combineFinal(router.pools, plan, ok, options);
  return { ...combined, plan, missing };
}
