import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { planRebalance, type PlanTenant } from '../../src/index.js';

const spread = (loads: Record<string, number>, shards: string[]) =>
  Math.max(...shards.map((s) => loads[s]!)) - Math.min(...shards.map((s) => loads[s]!));

describe('rebalance planner', () => {
  it('moves the tenant closest to what brings both shards to the mean', () => {
    const plan = planRebalance({
      shards: ['a', 'b'],
      tenants: [
        { tenant: '1', shard: 'a', bytes: 60 },
        { tenant: '2', shard: 'a', bytes: 40 },
        { tenant: '3', shard: 'a', bytes: 50 },
      ],
    });
    expect(plan.moves).toEqual([{ tenant: '1', from: 'a', to: 'b', bytes: 60, reason: 'balance' }]);
    expect(plan.after).toEqual({ a: 90, b: 60 });
    expect(plan.mean).toBe(75);
    // 90 vs 60 is outside 10% of 75, but every further move would widen the spread: the plan says so
    expect(plan.balanced).toBe(false);
  });

  it('fills a new empty shard from a skewed fleet, within the threshold, close to the lower bound', () => {
    const tenants: PlanTenant[] = [];
    let id = 0;
    const sizes = { s0: 400, s1: 250, s2: 150, s3: 100 };
    for (const [shard, n] of Object.entries(sizes))
      for (let i = 0; i < n; i++) tenants.push({ tenant: String(id++), shard, bytes: 1000 + ((id * 7919) % 5000) });
    const shards = ['s0', 's1', 's2', 's3', 'new'];
    const plan = planRebalance({ shards, tenants, threshold: 0.1 });
    expect(plan.balanced).toBe(true);
    for (const s of shards) expect(Math.abs(plan.after[s]! - plan.mean) / plan.mean).toBeLessThanOrEqual(0.1);
    expect(plan.bytesMoved).toBeGreaterThanOrEqual(plan.lowerBound.band);
    expect(plan.bytesMoved).toBeLessThanOrEqual(plan.lowerBound.surplus * 1.25);
    expect(new Set(plan.moves.map((m) => m.tenant)).size).toBe(plan.moves.length);
  });

  it('reports whales instead of shuffling them', () => {
    const plan = planRebalance({
      shards: ['a', 'b', 'c'],
      tenants: [
        { tenant: 'whale', shard: 'a', bytes: 1000 },
        { tenant: 'x', shard: 'b', bytes: 10 },
        { tenant: 'y', shard: 'c', bytes: 10 },
      ],
    });
    expect(plan.whales.map((w) => w.tenant)).toEqual(['whale']);
    expect(plan.moves.find((m) => m.tenant === 'whale')).toBeUndefined();
    expect(plan.notes.join('\n')).toMatch(/tenant whale \(1000 bytes\) is larger than a shard may hold/);
  });

  it('drains a shard onto the others, largest tenants first to the emptiest shard', () => {
    const plan = planRebalance({
      shards: ['a', 'b', 'c'],
      drain: ['c'],
      tenants: [
        { tenant: '1', shard: 'a', bytes: 100 },
        { tenant: '2', shard: 'b', bytes: 100 },
        { tenant: '3', shard: 'c', bytes: 80 },
        { tenant: '4', shard: 'c', bytes: 60 },
        { tenant: '5', shard: 'c', bytes: 20 },
      ],
    });
    expect(plan.after.c).toBe(0);
    expect(plan.moves.filter((m) => m.reason === 'drain').map((m) => [m.tenant, m.to])).toEqual([
      ['3', 'a'],
      ['4', 'b'],
      ['5', 'b'],
    ]);
    expect(plan.lowerBound.surplus).toBeGreaterThanOrEqual(160);
  });

  it('respects excluded tenants, the move limit and the byte limit', () => {
    const tenants = Array.from({ length: 20 }, (_, i) => ({ tenant: String(i), shard: 'a', bytes: 10 }));
    expect(planRebalance({ shards: ['a', 'b'], tenants, maxMoves: 3 }).moves).toHaveLength(3);
    expect(planRebalance({ shards: ['a', 'b'], tenants, maxBytes: 45 }).bytesMoved).toBe(40);
    const ex = planRebalance({ shards: ['a', 'b'], tenants, exclude: tenants.slice(0, 15).map((t) => t.tenant) });
    expect(ex.moves.every((m) => Number(m.tenant) >= 15)).toBe(true);
  });

  it('moves tenants toward the rule first when asked', () => {
    const plan = planRebalance({
      shards: ['a', 'b'],
      tenants: [
        { tenant: '1', shard: 'a', bytes: 10 },
        { tenant: '2', shard: 'a', bytes: 10 },
      ],
      ruleShard: (t) => (t === '1' ? 'b' : 'a'),
      towardRule: true,
    });
    expect(plan.moves).toEqual([{ tenant: '1', from: 'a', to: 'b', bytes: 10, reason: 'rule' }]);
  });

  it('never moves a tenant twice, keeps bytes, and never widens the spread (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 6 }),
        fc.array(fc.record({ shard: fc.integer({ min: 0, max: 5 }), bytes: fc.integer({ min: 1, max: 10_000 }) }), {
          minLength: 1,
          maxLength: 120,
        }),
        fc.double({ min: 0.02, max: 0.5, noNaN: true }),
        (n, raw, threshold) => {
          const shards = Array.from({ length: n }, (_, i) => `s${i}`);
          const tenants = raw.map((t, i) => ({ tenant: String(i), shard: `s${t.shard % n}`, bytes: t.bytes }));
          const plan = planRebalance({ shards, tenants, threshold });
          expect(new Set(plan.moves.map((m) => m.tenant)).size).toBe(plan.moves.length);
          const total = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
          expect(total(plan.after)).toBe(total(plan.before));
          expect(spread(plan.after, shards)).toBeLessThanOrEqual(spread(plan.before, shards));
          expect(plan.bytesMoved).toBe(plan.moves.reduce((a, m) => a + m.bytes, 0));
          // With only small tenants (each at most a fifth of the band), greedy always lands within it.
          const mean = total(plan.before) / n;
          if (tenants.every((t) => t.bytes <= (threshold * mean) / 5)) expect(plan.balanced).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});
