import { describe, expect, it, vi } from 'vitest';
import { pollUntil } from '../../src/db/poll.js';
import { ShardctlError } from '../../src/errors.js';

describe('pollUntil', () => {
  it('returns the first value that is not undefined, null or false', async () => {
    let calls = 0;
    const value = await pollUntil(async () => (++calls >= 3 ? calls : calls === 1 ? null : false), {
      timeoutMs: 5000,
      intervalMs: 1,
      reason: 'the third call',
    });
    expect(value).toBe(3);
    expect(calls).toBe(3);
  });

  it('keeps 0 and the empty string as answers', async () => {
    expect(await pollUntil(() => 0, { timeoutMs: 0, reason: 'zero' })).toBe(0);
    expect(await pollUntil(() => '', { timeoutMs: 0, reason: 'empty' })).toBe('');
  });

  it('probes at least once, and once more at the deadline', async () => {
    let calls = 0;
    const started = Date.now();
    await expect(
      pollUntil(() => (calls++, undefined), { timeoutMs: 30, intervalMs: 1000, reason: 'x' }),
    ).rejects.toThrow();
    expect(calls).toBe(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
  });

  it('times out with a TIMEOUT error that names what it waited for', async () => {
    const e = await pollUntil(() => false, { timeoutMs: 5, intervalMs: 1, reason: 'slot s to be released' }).catch(
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(ShardctlError);
    expect((e as ShardctlError).code).toBe('TIMEOUT');
    expect((e as ShardctlError).message).toBe('timed out waiting for slot s to be released');
  });

  it('lets the caller turn a timeout into an answer or its own error', async () => {
    expect(await pollUntil<boolean>(() => false, { timeoutMs: 1, reason: 'x', onTimeout: () => false })).toBe(false);
    await expect(
      pollUntil(() => undefined, {
        deadline: Date.now(),
        reason: 'x',
        onTimeout: () => {
          throw new Error('old transactions: pid 42');
        },
      }),
    ).rejects.toThrow('old transactions: pid 42');
  });

  it('starts at firstIntervalMs and doubles the pause up to intervalMs', async () => {
    vi.useFakeTimers();
    try {
      let calls = 0;
      const wait = pollUntil(() => ++calls >= 5, { timeoutMs: 5000, firstIntervalMs: 1, intervalMs: 4, reason: 'x' });
      const after = async (ms: number) => (await vi.advanceTimersByTimeAsync(ms), calls);
      expect(await after(0)).toBe(1);
      expect(await after(1)).toBe(2); // 1 ms
      expect(await after(2)).toBe(3); // 2 ms
      expect(await after(3)).toBe(3);
      expect(await after(1)).toBe(4); // 4 ms
      expect(await after(3)).toBe(4);
      expect(await after(1)).toBe(5); // 4 ms: the cap
      expect(await wait).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  it('stops when its signal aborts, with the signal reason', async () => {
    const ac = new AbortController();
    const wait = pollUntil(() => undefined, { timeoutMs: 60_000, intervalMs: 10_000, reason: 'x', signal: ac.signal });
    ac.abort(new Error('interrupted'));
    await expect(wait).rejects.toThrow('interrupted');
  });
});
