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

/** A statement every planned shard answers: the plan's own, or one per part of a pull-up. */
function shardQueries(plan: QueryPlan): { shardSql: string; params: unknown[] }[] {
  return plan.kind === 'pullup' ? plan.parts : [plan];
}

/**
 * Every planned shard's whole answer to each of the plan's shard queries (`[query][shard]`); with
 * `allowPartial`, unreachable shards go to `missing`. A shard answers a pull-up's parts one after
 * another in its own session turn, so a query holds at most one session per shard.
 */
async function readShards(
  router: ShardRouter,
  plan: QueryPlan,
  options: RunQueryOptions,
  missing: MissingShard[],
): Promise<ShardRows[][]> {
  const maxRows = options.maxRows ?? DEFAULT_MAX_ROWS;
  // Every session is back in its pool before the query ends; the first failure cancels the others.
  const sessions = new QuerySessions(router.pools);
  const read = {
    maxRows,
    sessions,
    ...(options.statementTimeoutMs ? { statementTimeoutMs: options.statementTimeoutMs } : {}),
  };
  const queries = shardQueries(plan);
  const perShard = await Promise.all(
    plan.shards.map(async (shard) => {
      const answers: (ShardRows | undefined)[] = [];
      for (const q of queries) {
        if (sessions.failure) break;
        answers.push(
          await readShard(router.pools, shard, q.shardSql, q.params, read).catch((e: unknown) =>
            shardFailed(e, shard, sessions, options, missing),
          ),
        );
        if (answers[answers.length - 1] === undefined) break;
      }
      return answers;
    }),
  );
  const pulling = plan.kind === 'pullup' ? `pulling up rows for ${plan.construct}: ` : '';
  if (sessions.failure?.code === 'MAX_ROWS' && pulling)
    throw new ShardctlError(`${pulling}${sessions.failure.message}`, {
      code: 'MAX_ROWS',
      hint: 'narrow the WHERE, or raise --max-rows',
    });
  if (sessions.failure) throw sessions.failure;
  // A shard that missed one part is left out of every part: each part then sees the same shards.
  const whole = perShard.filter((a) => a.length === queries.length && a.every((r) => r !== undefined));
  const ok = queries.map((_, k) => whole.map((a) => a[k]!));
  if (whole.length === 0 && plan.shards.length > 0) throw noShardAnswered(missing);
  const total = ok.flat().reduce((a, r) => a + r.rows.length, 0);
  if (total > maxRows)
    throw new ShardctlError(`${pulling}the shards returned ${total} rows, more than --max-rows ${maxRows}`, {
      code: 'MAX_ROWS',
      hint: 'narrow the WHERE, add a LIMIT, or raise --max-rows',
    });
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
  const parts = await readShards(router, plan, options, missing);
  const ok = parts[0] ?? [];
  const first = ok[0];
  if (!first) return { fields: [], rows: [], plan, missing };
  if (plan.kind === 'single') return { fields: fieldsOf(first.fields), rows: first.rows, plan, missing };
  if (plan.kind === 'concat') {
    const from = Number(plan.offset ?? 0n);
    const to = plan.limit !== undefined ? from + Number(plan.limit) : undefined;
    return { fields: fieldsOf(first.fields), rows: ok.flatMap((r) => r.rows).slice(from, to), plan, missing };
  }
  if (plan.kind === 'pullup') return { ...(await combinePullup(router.pools, plan, parts, options)), plan, missing };
  const combined = await combineFinal(router.pools, plan, ok, options);
  return { ...combined, plan, missing };
}
