import type { PoolClient } from 'pg';
import type { ShardMap } from '../config/shard-map.js';
import { ensureCatalogSchema } from '../catalog/catalog-schema.js';
import { forEachShard } from '../db/for-each-shard.js';
import { ShardPools } from '../db/shard-pools.js';
import { pruneDecisions, readDecisions, resolveDecision, type Decision, type DecisionState } from './decisions.js';
import { finishSql, listPrepared, type PreparedTransaction } from './prepared.js';

/** Options of {@link recoverTransactions}. */
export interface RecoverOptions {
  /**
   * How long to wait for a coordinator that still holds its decision open, per transaction, in ms;
   * after it the transaction is reported `pending` and left alone. Default 2000.
   */
  waitMs?: number;
  /** Leave alone transactions prepared less than this long ago (their coordinator is finishing them). Default 0. */
  minAgeMs?: number;
  /** Report what would be done; change nothing (no abort record is written either). Default false. */
  dryRun?: boolean;
  /** Connection timeout per shard, ms. Default 5000. */
  timeoutMs?: number;
}

/** What recovery did with one prepared transaction. */
export interface RecoveredTransaction extends PreparedTransaction {
  /** The decision record's verdict (`none`: no record, in a dry run). */
  decision: DecisionState | 'none';
  action:
    | 'committed'
    | 'rolled-back'
    | 'already-finished'
    | 'left-pending'
    | 'left-young'
    | 'would-commit'
    | 'would-roll-back'
    | 'failed';
  error?: string;
}

/** Result of {@link recoverTransactions}. */
export interface RecoverReport {
  /** Nothing failed, nothing left pending, every shard answered. */
  ok: boolean;
  transactions: RecoveredTransaction[];
  /** Decision records deleted (every participant finished). */
  pruned: number;
  /** Shards that could not be listed (their prepared transactions are unknown). */
  unreachable: { shard: string; error: string }[];
  durationMs: number;
}

/**
 * Commits or rolls back every shardctl transaction left prepared on any shard, from its decision record
 * on the catalog shard alone: a `commit` record commits it; no record (its coordinator's decision
 * transaction is gone without committing) rolls it back, after recording `abort` so that the decision
 * can never change; a decision still held open by a live coordinator is waited for (`waitMs`), then
 * reported `pending`. Then deletes the records no participant needs any more.
 *
 * @example
 * const report = await recoverTransactions(map);
 * for (const t of report.transactions) console.log(t.gid, t.decision, t.action);
 */
export async function recoverTransactions(map: ShardMap, options: RecoverOptions = {}): Promise<RecoverReport> {
  const pools = await ShardPools.open(map, {
    connectTimeoutMs: options.timeoutMs ?? 5000,
    maxPerShard: 2,
    applicationName: 'shardctl recover',
  });
  try {
    return await recoverWithPools(map, pools, options);
  } finally {
    await pools.close();
  }
}

/**
 * {@link recoverTransactions} over pools the caller owns (a router's background recovery).
 *
 * Order matters for pruning: the records are read before the shards are listed. A commit record is
 * visible only after every PREPARE of its transaction, so a listing made after reading it sees every
 * participant still prepared; a record pruned on a listing made before its PREPAREs could orphan them.
 *
 * @example
 * const report = await recoverWithPools(router.map, router.pools, { minAgeMs: 10_000 });
 */
export async function recoverWithPools(
  map: ShardMap,
  pools: ShardPools,
  options: RecoverOptions = {},
): Promise<RecoverReport> {
  const start = performance.now();
  const decisions = await pools.withShard(map.catalog, (c) => readDecisions(c));
  const listed = await forEachShard(map.shards, (s) => pools.withShard(s.name, (c) => listPrepared(c, s.name)));
  const unreachable = listed.flatMap((r) =>
    r.status === 'failed' ? [{ shard: r.shard, error: r.error.message }] : [],
  );
  const prepared = listed.flatMap((r) => (r.status === 'ok' ? r.value : []));
  const minAgeS = (options.minAgeMs ?? 0) / 1000;
  const transactions: RecoveredTransaction[] = [];
  let schemaReady = false;
  for (const t of prepared) {
    if (t.ageSeconds < minAgeS) {
      transactions.push({ ...t, decision: decisions.get(t.id)?.state ?? 'none', action: 'left-young' });
      continue;
    }
    if (!options.dryRun && !schemaReady && !decisions.has(t.id)) {
      await pools.withShard(map.catalog, (c) => ensureCatalogSchema(c));
      schemaReady = true;
    }
    const done = await recoverOne(map, pools, t, decisions.get(t.id), options);
    transactions.push(done);
    // An abort recorded by this run is prunable too: with its coordinator's transaction gone, no
    // commit can follow, whatever the listing saw.
    if (done.decision === 'abort' && !decisions.has(t.id))
      decisions.set(t.id, { id: t.id, state: 'abort', participants: [], coordinator: null, createdAt: '' });
  }
  const pruned = options.dryRun ? 0 : await pruneFinished(map, pools, decisions, prepared, transactions, unreachable);
  return {
    ok: unreachable.length === 0 && transactions.every((t) => !['failed', 'left-pending'].includes(t.action)),
    transactions,
    pruned,
    unreachable,
    durationMs: Math.round(performance.now() - start),
  };
}

/** The decision of one prepared transaction (recorded now if nobody decided), and its execution. */
async function recoverOne(
  map: ShardMap,
  pools: ShardPools,
  t: PreparedTransaction,
  record: Decision | undefined,
  options: RecoverOptions,
): Promise<RecoveredTransaction> {
  let decision: DecisionState | 'none';
  try {
    decision =
      record?.state ??
      (options.dryRun
        ? 'none'
        : await pools.withShard(map.catalog, (c) => resolveDecision(c, t.id, options.waitMs ?? 2000)));
  } catch (e) {
    return { ...t, decision: 'none', action: 'failed', error: (e as Error).message };
  }
  if (options.dryRun) return { ...t, decision, action: decision === 'commit' ? 'would-commit' : 'would-roll-back' };
  if (decision === 'pending') return { ...t, decision, action: 'left-pending' };
  const commit = decision === 'commit';
  try {
    const done = await pools.withShard(t.shard, (c) => finishPrepared(c, t.gid, commit));
    return { ...t, decision, action: done ? (commit ? 'committed' : 'rolled-back') : 'already-finished' };
  } catch (e) {
    return { ...t, decision, action: 'failed', error: (e as Error).message };
  }
}

/**
 * COMMIT or ROLLBACK PREPARED; false when the gid is gone. Only the decision's own coordinator ends a
 * shardctl gid besides recovery, and it follows the same record, so a gid gone here was ended the same
 * way; the caller still lists it as `already-finished`, not as done by this run.
 */
async function finishPrepared(client: PoolClient, gid: string, commit: boolean): Promise<boolean> {
  try {
    await client.query(finishSql(gid, commit));
    return true;
  } catch (e) {
    if ((e as { code?: string }).code === '42704') return false;
    throw e;
  }
}

/**
 * Deletes the decision records read before the listing whose transactions no shard holds prepared any
 * more. A record is kept while a shard that could hold one of its participants did not answer.
 */
async function pruneFinished(
  map: ShardMap,
  pools: ShardPools,
  decisions: Map<string, Decision>,
  prepared: PreparedTransaction[],
  done: RecoveredTransaction[],
  unreachable: { shard: string }[],
): Promise<number> {
  const finished = new Set(
    done.filter((t) => ['committed', 'rolled-back', 'already-finished'].includes(t.action)).map((t) => t.gid),
  );
  const open = new Set(prepared.filter((t) => !finished.has(t.gid)).map((t) => t.id));
  const down = new Set(unreachable.map((u) => u.shard));
  const ids = [...decisions.values()]
    .filter((d) => !open.has(d.id))
    .filter((d) => (d.participants.length > 0 ? d.participants.every((s) => !down.has(s)) : down.size === 0))
    .map((d) => d.id);
  if (ids.length === 0) return 0;
  return pools.withShard(map.catalog, (c) => pruneDecisions(c, ids)).catch(() => 0);
}
