import { ShardctlError } from '../errors.js';

/** Options of {@link pollUntil}. */
export interface PollOptions<T> {
  /** Give up this many ms from now. One of `timeoutMs` and `deadline` is required. */
  timeoutMs?: number;
  /** Give up at this time (`Date.now()` scale); wins over `timeoutMs`. */
  deadline?: number;
  /** Pause between probes, in ms. Default 100. */
  intervalMs?: number;
  /**
   * The first pause, in ms, doubled after each probe up to `intervalMs`: for a condition that is
   * usually met within milliseconds (inside a write pause), without probing that often for long.
   */
  firstIntervalMs?: number;
  /** What is waited for, in words that complete "timed out waiting for ...": the timeout error says it. */
  reason: string;
  /**
   * Called once when time runs out. Its value ends the wait as the result (a caller that treats a timeout
   * as an answer returns one); its error ends it as the error. Default: a `TIMEOUT` error naming `reason`.
   */
  onTimeout?: () => T | Promise<T>;
  /** Stops the wait early with the signal's reason. */
  signal?: AbortSignal;
}

/** A probe's "not yet": any of these keeps the wait going. */
type NotYet = undefined | null | false;

/**
 * Calls `probe` until it returns a value (anything but `undefined`, `null` or `false`) and returns that
 * value; the probe always runs at least once, and once more at the deadline, so a condition met just in
 * time is not reported as a timeout. Every wait in shardctl goes through here: one place decides how
 * long the pauses are and what a timeout says.
 *
 * @example
 * const pid = await pollUntil(async () => (await slotPid(client)) ?? false, {
 *   timeoutMs: 10_000, intervalMs: 50, reason: `slot ${name} to be released`,
 * });
 */
export async function pollUntil<T>(probe: () => Promise<T | NotYet> | T | NotYet, options: PollOptions<T>): Promise<T> {
  const deadline = options.deadline ?? Date.now() + (options.timeoutMs ?? 0);
  const interval = Math.max(1, options.intervalMs ?? 100);
  let pause = Math.min(interval, Math.max(1, options.firstIntervalMs ?? interval));
  for (;;) {
    if (options.signal?.aborted) throw options.signal.reason;
    const value = await probe();
    if (value !== undefined && value !== null && value !== false) return value as T;
    const left = deadline - Date.now();
    if (left <= 0) {
      if (options.onTimeout) return options.onTimeout();
      throw new ShardctlError(`timed out waiting for ${options.reason}`, {
        code: 'TIMEOUT',
        details: { waitedMs: Math.max(0, Date.now() - (deadline - (options.timeoutMs ?? 0))) },
      });
    }
    await sleep(Math.min(pause, left), options.signal);
    pause = Math.min(interval, pause * 2);
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
