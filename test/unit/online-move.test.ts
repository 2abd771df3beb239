import { describe, expect, it } from 'vitest';
import { modeOptions, parseDuration } from '../../src/cli/commands/rebalance.js';
import { isFenceError, replicationName } from '../../src/index.js';
import { tenantLiteral } from '../../src/move/replication.js';

describe('online move helpers', () => {
  it('names replication objects per move with a tag, within PostgreSQL identifier length', () => {
    expect(replicationName(7, '9f2c01aa')).toBe('shardctl_move_7_9f2c01aa');
    expect(replicationName(Number.MAX_SAFE_INTEGER, 'ffffffff').length).toBeLessThanOrEqual(63);
  });

  it('writes tenant literals in the shard key type, quoting text', () => {
    expect(tenantLiteral('123', 'bigint')).toBe("'123'::int8");
    expect(tenantLiteral("o'hara", 'text')).toBe("'o''hara'::text");
    expect(tenantLiteral('6f1c2a9e-0000-4000-8000-000000000000', 'uuid')).toBe(
      "'6f1c2a9e-0000-4000-8000-000000000000'::uuid",
    );
  });

  it('recognises fence rejections and nothing else', () => {
    const fence = Object.assign(
      new Error('shardctl: tenant 5 is fenced on this shard: move 3 of tenant 5 to shard-0 in progress'),
      { code: 'P0001' },
    );
    expect(isFenceError(fence)).toBe(true);
    expect(
      isFenceError(
        Object.assign(new Error('shardctl: TRUNCATE of users refused: tenants on this shard are fenced'), {
          code: 'P0001',
        }),
      ),
    ).toBe(false);
    expect(
      isFenceError(Object.assign(new Error('some app error mentions: is fenced on this shard'), { code: 'P0001' })),
    ).toBe(false);
    expect(isFenceError(Object.assign(new Error(fence.message), { code: '23505' }))).toBe(false);
    expect(isFenceError(undefined)).toBe(false);
  });

  it('parses --max-pause and the mode flags', () => {
    expect(parseDuration('1s', '--max-pause')).toBe(1000);
    expect(parseDuration('250ms', '--max-pause')).toBe(250);
    expect(parseDuration('1.5s', '--max-pause')).toBe(1500);
    expect(parseDuration('40', '--max-pause')).toBe(40);
    expect(() => parseDuration('soon', '--max-pause')).toThrow(
      /--max-pause needs a duration such as 500ms or 2s, got "soon"/,
    );
    expect(() => parseDuration('0ms', '--max-pause')).toThrow(/at least 1ms/);
    expect(modeOptions({})).toEqual({ mode: 'online', allowOffline: false });
    expect(modeOptions({ offline: true, maxPause: '2s' })).toEqual({
      mode: 'fenced',
      allowOffline: false,
      maxPauseMs: 2000,
    });
    expect(() => modeOptions({ online: true, offline: true })).toThrow(/exclude each other/);
  });
});
