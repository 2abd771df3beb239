import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyFleetPlan, computeFleetPlan, createRouter, movesOf, tenantsOf, verifyCluster } from '../../src/index.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';

// The fleet planner groups small tenants going between the same pair of shards into one move each.
let cluster: TestCluster;
const TENANTS = Array.from({ length: 25 }, (_, i) => 2 * i + 1); // odd: shard-1 under modulo 2
beforeAll(async () => {
  cluster = await createTestCluster({ shards: 2, directoryTtl: '100ms' });
  for (const i of [0, 1])
    await cluster.sql(
      i,
      'CREATE TABLE items (tenant_id bigint NOT NULL, id bigint NOT NULL, body text, PRIMARY KEY (tenant_id, id))',
    );
  for (const t of TENANTS)
    await cluster.sql(1, "INSERT INTO items SELECT $1::bigint, g, repeat('x', 100) FROM generate_series(1, 30) g", [t]);
});
afterAll(() => cluster.drop());

describe('grouped fleet apply', () => {
  it('drains 25 small tenants in groups of at most 10: 3 moves, every tenant switched with its group, every row kept', async () => {
    const plan = await computeFleetPlan(cluster.map, { drain: ['shard-1'] });
    expect(plan.moves).toHaveLength(25);
    const report = await applyFleetPlan(cluster.map, plan, { group: { maxTenants: 10 } });
    expect(report.state).toBe('done');
    expect(new Set(report.moves.map((m) => m.moveId)).size).toBe(3);
    const moves = (await movesOf(cluster.map)).filter((m) => m.planId === report.planId);
    expect(moves.map((m) => tenantsOf(m).length).sort((a, b) => a - b)).toEqual([5, 10, 10]);
    expect(moves.every((m) => m.state === 'done')).toBe(true);
    const router = await createRouter(cluster.map);
    try {
      for (const t of TENANTS) expect(router.locate(t).shard).toBe('shard-0');
    } finally {
      await router.close();
    }
    expect(await cluster.sql(0, 'SELECT count(*)::int AS n FROM items')).toEqual([{ n: 25 * 30 }]);
    expect(await cluster.sql(1, 'SELECT count(*)::int AS n FROM items')).toEqual([{ n: 0 }]);
    expect((await verifyCluster(cluster.map)).findings).toEqual([]);
  });
});
