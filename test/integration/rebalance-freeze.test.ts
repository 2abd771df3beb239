import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createRouter,
  ensureCatalogSchema,
  freezePlacements,
  loadShardMap,
  measureTenantSizes,
  pruneDirectory,
  ShardPools,
  verifyCluster,
  writeRuleState,
  type ShardMap,
} from '../../src/index.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';
import { runCli } from '../harness/run-cli.js';

// A modulo fleet of 3 shards grows to 4. Tenants 0..59 were placed by the 3-shard rule.
let cluster: TestCluster;
let map3: ShardMap;
let map4: ShardMap;
let file3: string;
let file4: string;

beforeAll(async () => {
  cluster = await createTestCluster({ shards: 4 });
  file4 = cluster.mapFile;
  const text = readFileSync(file4, 'utf8');
  file3 = `${cluster.dir}/shards3.yaml`;
  writeFileSync(file3, text.replace(/ {2}- name: shard-3\n {4}url: [^\n]+\n/, ''));
  map3 = await loadShardMap(file3);
  map4 = await loadShardMap(file4);
  expect(map3.shards).toHaveLength(3);
  for (let i = 0; i < 4; i++)
    await cluster.sql(i, 'CREATE TABLE items (tenant_id bigint NOT NULL, n int NOT NULL, PRIMARY KEY (tenant_id, n))');
  for (let t = 0; t < 60; t++)
    await cluster.sql(t % 3, 'INSERT INTO items SELECT $1::bigint, g FROM generate_series(1, 1 + $1::int % 5) g', [t]);
  // The cluster was managed with the 3-shard map: its rule is recorded.
  const pools = await ShardPools.open(map3);
  await pools.withShard('shard-0', async (c) => {
    await ensureCatalogSchema(c);
    await writeRuleState(c, map3, { ifAbsent: true });
  });
  await pools.close();
});
afterAll(() => cluster.drop());

describe('changing the shard count under modulo', () => {
  it('catches a map grown without --freeze instead of routing by it', async () => {
    await expect(createRouter(map4)).rejects.toThrow(
      /differs from the rule the catalog records \(modulo over 3 shards/,
    );
    const locate = await runCli(['-c', file4, 'locate', '4']);
    expect(locate.code).toBe(1);
    expect(locate.stderr).toMatch(/modulo over 4 shards/);
    expect(locate.stderr).toMatch(/hint: run `shardctl rebalance --freeze`/);
    // offline, the map alone is all there is; it says so
    expect((await runCli(['-c', file4, 'locate', '4', '--offline'])).code).toBe(0);
    const report = await verifyCluster(map4);
    expect(report.findings.map((f) => f.kind)).toContain('rule-changed');
    expect(report.findings.filter((f) => f.kind === 'misplaced-rows').length).toBeGreaterThan(20);
  });

  it('after a freeze every tenant locates to the shard holding its rows under the grown map', async () => {
    const frozen = await freezePlacements(map4);
    expect(frozen.tenants).toBe(60);
    expect(frozen.perShard).toEqual({ 'shard-0': 20, 'shard-1': 20, 'shard-2': 20, 'shard-3': 0 });
    const router = await createRouter(map4);
    try {
      for (let t = 0; t < 60; t++) expect(router.locate(t).shard).toBe(`shard-${t % 3}`);
    } finally {
      await router.close();
    }
    expect((await verifyCluster(map4)).findings).toEqual([]);
    // the old map is still safe too: every tenant is in the directory
    expect((await verifyCluster(map3)).findings).toEqual([]);
  });

  it('pruning keeps only the exceptions to the new rule and makes the new rule the recorded one', async () => {
    const pools = await ShardPools.open(map4);
    try {
      const dropped = await pruneDirectory(map4, pools);
      // tenants where t % 3 == t % 4 agree with the new rule: t mod 12 in {0, 1, 2}
      expect(dropped).toBe(15);
    } finally {
      await pools.close();
    }
    const router = await createRouter(map4);
    for (let t = 0; t < 60; t++) expect(router.locate(t).shard).toBe(`shard-${t % 3}`);
    await router.close();
    await expect(createRouter(map3)).rejects.toThrow(/RULE|differs from the rule/);
    expect((await verifyCluster(map4)).findings).toEqual([]);
  });

  it('applying a plan on the grown map fills the new shard and every tenant still locates to its rows', async () => {
    const { computeFleetPlan, applyFleetPlan } = await import('../../src/index.js');
    const plan = await computeFleetPlan(map4, { threshold: 0.25 });
    expect(plan.moves.some((m) => m.to === 'shard-3')).toBe(true);
    expect(plan.balanced).toBe(true);
    const report = await applyFleetPlan(map4, plan);
    expect(report.state).toBe('done');
    const router = await createRouter(map4);
    try {
      for (let t = 0; t < 60; t++) {
        const at = Number(router.locate(t).shard.slice(6));
        const [r] = await cluster.sql<{ n: string }>(at, 'SELECT count(*)::text AS n FROM items WHERE tenant_id = $1', [
          t,
        ]);
        expect(Number(r!.n), `tenant ${t} on shard-${at}`).toBe(1 + (t % 5));
      }
    } finally {
      await router.close();
    }
    expect((await verifyCluster(map4)).findings).toEqual([]);
  });

  it('measures tenant sizes per shard, counting small tables and sampling large ones', async () => {
    const sizes = await measureTenantSizes(map4);
    expect(sizes.map((s) => s.status)).toEqual(['ok', 'ok', 'ok', 'ok']);
    const s0 = sizes[0]!.status === 'ok' ? sizes[0]!.value : undefined;
    const router = await createRouter(map4);
    const on0 = [...Array(60).keys()].filter((t) => router.locate(t).shard === 'shard-0');
    await router.close();
    expect(s0!.tenants).toHaveLength(on0.length);
    expect(s0!.rows).toBe(on0.reduce((a, t) => a + 1 + (t % 5), 0));
    expect(s0!.estimated).toBe(false);
    expect(s0!.bytes).toBeGreaterThan(0);
    expect(s0!.tenants.reduce((a, t) => a + t.bytes, 0)).toBeGreaterThan(s0!.bytes * 0.99);
    const sampled = await measureTenantSizes(map4, { exactBelowRows: 0, sampleRows: 10 });
    expect(sampled[0]!.status === 'ok' && sampled[0]!.value.estimated).toBe(true);
  });
});
