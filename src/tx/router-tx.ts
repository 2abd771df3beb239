import type { RouterOptions, ShardRouter } from '../router/create-router.js';
import { ShardPools } from '../db/shard-pools.js';
import type { ShardctlError } from '../errors.js';
import { pruneDecisions } from './decisions.js';
import { recoverWithPools, type RecoverOptions, type RecoverReport } from './recover.js';
import {
  runTransaction,
  type DistributedTransactionOptions,
  type TransactionHandle,
  type TxContext,
} from './two-phase.js';

/** Options of the router's background recovery (off unless given). */
export interface BackgroundRecoveryOptions {
  /** Pause between two recovery runs, ms. */
  intervalMs: number;
  /** Leave transactions prepared less than this long ago to their coordinator, ms. Default 10000. */
  minAgeMs?: number;
  /** Called with each run's report and with each run's error (a run's failure never stops the next). */
  onReport?: (report: RecoverReport) => void;
  onError?: (error: unknown) => void;
}

/** Options of a router with transactions: the router's, and background recovery. */
export interface TransactionRouterOptions extends RouterOptions {
  /** Run `recover` in the background every `intervalMs` while the router is open. Default: off. */
  recovery?: BackgroundRecoveryOptions;
}

/** What {@link withTransactions} adds to a router. */
export interface TransactionMethods {
  /**
   * Runs `fn` in one transaction over every shard it touches, all-or-nothing: a plain transaction on
   * one shard, a two-phase commit on several. Resolves with `fn`'s value once committed; rejects (and
   * rolls everything back) on any error before the commit decision. Atomic, not a distributed snapshot:
   * a reader may see one shard's part before another's. Default lock_timeout 10 s: a deadlock across
   * shards is invisible to each server, the timeout ends it.
   *
   * @example
   * await router.transaction(async (tx) => {
   *   await tx.db<DB>(from).updateTable('accounts').set((eb) => ({ balance: eb('balance', '-', 10) })).where('tenant_id', '=', from).execute();
   *   await tx.db<DB>(to).updateTable('accounts').set((eb) => ({ balance: eb('balance', '+', 10) })).where('tenant_id', '=', to).execute();
   * });
   */
  transaction<T>(fn: (tx: TransactionHandle) => Promise<T>, options?: DistributedTransactionOptions): Promise<T>;
  /** Runs one recovery now over the router's pools (see `recoverTransactions`). */
  recover(options?: RecoverOptions): Promise<RecoverReport>;
}

/**
 * Adds `transaction` and `recover` to a router (and, when asked, a background recovery), extending it
 * so that its getters stay live.
 *
 * @example
 * const router = withTransactions(await createShardRouter(map), { recovery: { intervalMs: 30_000 } });
 */
export function withTransactions<R extends ShardRouter>(
  base: R,
  options: TransactionRouterOptions = {},
): R & TransactionMethods {
  let decisionPools: ShardPools | undefined;
  let kysely: typeof import('kysely') | undefined;
  const finished: string[] = [];
  const context = async (): Promise<TxContext> => {
    kysely ??= await import('kysely');
    decisionPools ??= await ShardPools.open(base.map, {
      ...options.pool,
      applicationName: 'shardctl 2pc',
    });
    return { map: base.map, pools: base.pools, decisionPools, kysely, finished, locate: (t) => base.locate(t).shard };
  };
  const background = startRecovery(base, options.recovery);
  const methods: TransactionMethods = {
    async transaction(fn, txOptions = {}) {
      const ctx = await context();
      const r = await runTransaction(ctx, fn, { lockTimeoutMs: 10_000, ...txOptions });
      return r.value;
    },
    recover: (o) => recoverWithPools(base.map, base.pools, o),
  };
  const close = async () => {
    await background.stop();
    const ids = finished.splice(0);
    if (decisionPools && ids.length > 0)
      // What is left here is pruned by the next `recover` anyway: a failure only delays it.
      await decisionPools.withShard(base.map.catalog, (c) => pruneDecisions(c, ids)).catch(() => undefined);
    await decisionPools?.close();
    await base.close();
  };
  return Object.assign(Object.create(base) as R, methods, { close }) as R & TransactionMethods;
}

/** The background recovery loop of a router: one run at a time, the next `intervalMs` after the last ended. */
function startRecovery(base: ShardRouter, o: BackgroundRecoveryOptions | undefined): { stop(): Promise<void> } {
  if (!o || base.offline) return { stop: async () => undefined };
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;
  const tick = () => {
    running = recoverWithPools(base.map, base.pools, { minAgeMs: o.minAgeMs ?? 10_000, waitMs: 200 })
      .then((r) => o.onReport?.(r))
      .catch((e: ShardctlError) => o.onError?.(e))
      .finally(() => {
        running = undefined;
        if (!stopped) schedule();
      });
  };
  const schedule = () => {
    timer = setTimeout(tick, Math.max(10, o.intervalMs));
    // The loop never keeps a process alive on its own.
    timer.unref();
  };
  schedule();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
