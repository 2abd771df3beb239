import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyFleetPlan,
  computeFleetPlan,
  createRouter,
  loadShardMap,
  verifyCluster,
  type ShardMap,
} from '../../src/index.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';
import { runCli } from '../harness/run-cli.js';

// Three loaded shards with skewed tenants and a new empty fourth shard (hash strategy: the new shard
// owns no buckets, it fills only through moves recorded in the directory).
let cluster: TestCluster;
let map: ShardMap;
const SIZES = new Map<number, number>();

async function rowsOf(shard: number): Promise<Map<string, string[]>> {
  const rows = await cluster.sql<{ t: string; r: string }>(
    shard,
    'SELECT tenant_id::text AS t, x::text AS r FROM items x ORDER BY tenant_id, n',
  );
  const out = new Map<string, string[]>();
  for (const r of rows) out.set(r.t, [...(out.get(r.t) ?? []), r.r]);
  return out;
}

async function everything(): Promise<Map<string, string[]>> {
  const all = new Map<string, string[]>();
  for (let i = 0; i < 4; i++)
    for (const [t, r] of await rowsOf(i)) {
      expect(all.has(t), `tenant ${t} on two shards`).toBe(false);
      all.set(t, r);
    }
  return all;
}

beforeAll(async () => {
  cluster = await createTestCluster({ shards: 4, strategy: 'hash', buckets: 30, directoryTtl: '100ms' });
  // shard-3 owns no bucket: give shard-2 buckets 20-29
  const text = readFileSync(cluster.mapFile, 'utf8')
    .replace('buckets: 14-21', 'buckets: 14-29')
    .replace(/buckets: 21-29/, 'buckets: 14-29');
  const fixed = text
    .replace(/(name: shard-2\n\s+url: [^\n]+\n\s+buckets: )[^\n]+/, '$114-29')
    .replace(/(name: shard-3\n\s+url: [^\n]+\n)\s+buckets: [^\n]+\n/, '$1');
  writeFileSync(cluster.mapFile, fixed);
  map = await loadShardMap(cluster.mapFile);
  expect(map.shards[3]!.buckets).toEqual([]);
  for (let i = 0; i < 4; i++)
    await cluster.sql(
      i,
      'CREATE TABLE items (tenant_id bigint NOT NULL, n int NOT NULL, payload text NOT NULL, PRIMARY KEY (tenant_id, n))',
    );
  const router = await createRouter(map, { offline: true });
  for (let t = 1; t <= 45; t++) {
    const shard = Number(router.locate(t).shard.slice(6));
    const rows = shard === 0 ? 150 + ((t * 37) % 200) : 20 + ((t * 13) % 60);
    SIZES.set(t, rows);
    await cluster.sql(
      shard,
      "INSERT INTO items SELECT $1::bigint, g, repeat('x', 200) FROM generate_series(1, $2::int) g",
      [t, rows],
    );
  }
  for (let i = 0; i < 4; i++) await cluster.sql(i, 'VACUUM ANALYZE items');
});
afterAll(() => cluster.drop());

describe('fleet rebalancing', () => {
  it('plans moves that bring every shard within the threshold, and applying them moves exactly those tenants', async () => {
    const before = await everything();
    const plan = await computeFleetPlan(map, { threshold: 0.15 });
    expect(plan.balanced).toBe(true);
    expect(plan.moves.length).toBeGreaterThan(0);
    expect(plan.moves.some((m) => m.to === 'shard-3')).toBe(true);
    expect(plan.bytesMoved).toBeGreaterThanOrEqual(plan.lowerBound.band);
    // two at a time on disjoint shards, throttled: the scheduler and the throttle on the real path
    const report = await applyFleetPlan(map, plan, { parallel: 2, maxBytesPerSecond: 50_000_000 });
    expect(report.state).toBe('done');
    expect(report.moves.map((m) => m.status)).toEqual(plan.moves.map(() => 'done'));
    const after = await everything();
    expect(after).toEqual(before);
    const router = await createRouter(map);
    try {
      for (const m of plan.moves) {
        expect(router.locate(m.tenant).shard).toBe(m.to);
        expect((await rowsOf(Number(m.to.slice(6)))).has(m.tenant)).toBe(true);
      }
      for (let t = 1; t <= 45; t++) {
        const at = Number(router.locate(t).shard.slice(6));
        expect((await rowsOf(at)).get(String(t))).toEqual(before.get(String(t)));
      }
    } finally {
      await router.close();
    }
    expect((await verifyCluster(map)).findings).toEqual([]);
  });

  it('refuses a saved plan that no longer applies, with the reason', async () => {
    const plan = await computeFleetPlan(map, { drain: ['shard-1'] });
    const file = `${cluster.dir}/plan.json`;
    writeFileSync(file, JSON.stringify({ plan }));
    const moved = plan.moves[0]!;
    const other = map.shards.find((s) => s.name !== moved.from && s.name !== moved.to)!.name;
    const r0 = await runCli(['-c', cluster.mapFile, 'rebalance', '--tenant', moved.tenant, '--to', other, '--yes']);
    expect(r0.code).toBe(0);
    const r = await runCli(['-c', cluster.mapFile, 'rebalance', '--apply', file, '--yes']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `the plan no longer applies: tenant ${moved.tenant} now lives on ${other}, not ${moved.from} as the plan says`,
    );
  });

  it('drains a shard, survives SIGKILL between and during moves, and --resume-plan finishes it', async () => {
    const before = await everything();
    const crash1 = await runCli(
      ['-c', cluster.mapFile, 'rebalance', '--drain', 'shard-1', '--apply', '--yes', '--json'],
      { env: { SHARDCTL_TEST_CRASH_AT: 'plan-after-move:1' } },
    );
    expect(crash1.code).not.toBe(0);
    const plans = await cluster.sql<{ id: string; state: string }>(
      0,
      'SELECT id::text, state FROM shardctl.rebalance_plans ORDER BY id DESC LIMIT 1',
    );
    expect(plans[0]!.state).toBe('running');
    const id = plans[0]!.id;
    const crash2 = await runCli(['-c', cluster.mapFile, 'rebalance', '--resume-plan', id], {
      env: { SHARDCTL_TEST_CRASH_AT: 'mid-copy:public.items' },
    });
    expect(crash2.code).not.toBe(0);
    const fin = await runCli(['-c', cluster.mapFile, 'rebalance', '--resume-plan', id, '--json']);
    expect(fin.stderr).not.toMatch(/error/);
    expect(fin.code).toBe(0);
    expect(JSON.parse(fin.stdout).applied.state).toBe('done');
    expect((await rowsOf(1)).size).toBe(0);
    expect(await everything()).toEqual(before);
    const router = await createRouter(map);
    try {
      for (let t = 1; t <= 45; t++) expect(router.locate(t).shard).not.toBe('shard-1');
    } finally {
      await router.close();
    }
    expect((await verifyCluster(map)).findings).toEqual([]);
  });

  it('prints a plan with before/after bars', async () => {
    const r = await runCli(['-c', cluster.mapFile, 'rebalance', '--plan', '--threshold', '10%']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/shard-0 .* █/);
    expect(r.stdout).toMatch(/lower bound/);
  });
});
