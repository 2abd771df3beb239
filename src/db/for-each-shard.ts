import type { Shard } from '../config/shard-map.js';
import { fromDriverError, type ShardctlError } from '../errors.js';

/**
 * The outcome of an operation on one shard. Operations across shards return one of these per shard
 * instead of throwing on the first failure; the caller decides what the operator sees.
 */
export type ShardResult<T> =
  | { shard: string; status: 'ok'; value: T; ms: number }
  | { shard: string; status: 'failed'; error: ShardctlError; ms: number }
  | { shard: string; status: 'skipped'; reason: string };

/** Options of {@link forEachShard}. */
export interface ForEachShardOptions {
  /** Shards worked on at once. Default: all of them. */
  concurrency?: number;
  /** Stop starting new shards after the first failure (the rest are `skipped`). Default false. */
  failFast?: boolean;
  /** Aborts shards not yet started (they become `skipped`). */
  signal?: AbortSignal;
}

/**
 * Runs `fn` on every shard with bounded concurrency and collects a {@link ShardResult} per shard,
 * in the order of `shards`.
 *
 * @example
 * const results = await forEachShard(map.shards, (s) => pools.withShard(s.name, (c) => c.query('select 1')));
 */
export async function forEachShard<T>(
  shards: readonly Shard[],
  fn: (shard: Shard) => Promise<T>,
  options: ForEachShardOptions = {},
): Promise<ShardResult<T>[]> {
  const results = new Array<ShardResult<T>>(shards.length);
  const limit = Math.max(1, Math.min(options.concurrency ?? shards.length, shards.length || 1));
  let next = 0;
  let failed = false;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= shards.length) return;
      const shard = shards[i]!;
      if (options.signal?.aborted) {
        results[i] = { shard: shard.name, status: 'skipped', reason: 'interrupted' };
        continue;
      }
      if (failed && options.failFast) {
        results[i] = { shard: shard.name, status: 'skipped', reason: 'an earlier shard failed (--fail-fast)' };
        continue;
      }
      const start = performance.now();
      try {
        const value = await fn(shard);
        results[i] = { shard: shard.name, status: 'ok', value, ms: performance.now() - start };
      } catch (e) {
        failed = true;
        results[i] = {
          shard: shard.name,
          status: 'failed',
          error: fromDriverError(e, { shard: shard.name }),
          ms: performance.now() - start,
        };
      }
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return results;
}
