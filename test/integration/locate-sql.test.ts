import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  adoptFleet,
  createRouter,
  ensureCatalogSchema,
  freezePlacements,
  loadShardMap,
  moveTenant,
  pruneDirectory,
  ShardPools,
  writeRuleState,
  type ShardMap,
} from '../../src/index.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';

// shardctl.locate(tenant) in SQL must answer exactly what router.locate answers (rule plus directory),
// so that an app in any language routes with one call to the catalog shard.
const clusters: TestCluster[] = [];
afterAll(() => Promise.all(clusters.map((c) => c.drop())));

type KeyType = 'bigint' | 'text' | 'uuid';
const N = 10_000;

function keysOf(type: KeyType): string[] {
  const seed = 1313;
  if (type === 'bigint') {
    const extremes = ['0', '-1', '-7', '9223372036854775807', '-9223372036854775808', '4294967296', '-2147483649'];
    const rnd = fc.sample(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { numRuns: N, seed });
    const small = fc.sample(fc.integer({ min: -1_000_000, max: 1_000_000 }), { numRuns: N, seed });
    return [...new Set([...extremes, ...rnd.map(String), ...small.map(String)])].slice(0, N);
  }
  if (type === 'uuid') return Array.from({ length: N }, () => randomUUID());
  const text = fc.sample(fc.string({ unit: 'grapheme', maxLength: 24 }), { numRuns: 2 * N, seed });
  return [...new Set(['', 'acme', 'ÄÖü', '日本', ...text.map((s) => s.split('\u0000').join(''))])].slice(0, N);
}

async function fleet(type: KeyType, strategy: 'modulo' | 'hash'): Promise<TestCluster> {
  const c = await createTestCluster({ shards: 3, keyType: type, strategy, buckets: 256 });
  clusters.push(c);
  return c;
}

/** Points every 10th key at another shard than the rule's, as moves do, on the catalog. */
async function moveSome(c: TestCluster, keys: string[]): Promise<number> {
  const router = await createRouter(c.map, { offline: true });
  const moved = keys.filter((_, i) => i % 10 === 3);
  const shards = moved.map((k) => {
    const s = router.locate(k).shard;
    return c.map.shards[(c.map.shards.findIndex((x) => x.name === s) + 1) % c.map.shards.length]!.name;
  });
  await c.sql(0, 'INSERT INTO shardctl.placements (tenant, shard) SELECT * FROM unnest($1::text[], $2::text[])', [
    moved.map((k) => router.locate(k).tenant),
    shards,
  ]);
  return moved.length;
}

/** Both answers for every key: the SQL function on the catalog shard, and router.locate. */
async function compare(c: TestCluster, map: ShardMap, keys: string[]): Promise<void> {
  const cast = map.shardKey.type === 'bigint' ? 'int8' : map.shardKey.type;
  const rows = await c.sql<{ s: string }>(
    0,
    `SELECT shardctl.locate(k) AS s FROM unnest($1::${cast}[]) WITH ORDINALITY AS u(k, i) ORDER BY i`,
    [keys],
  );
  const router = await createRouter(map, { directoryTtlMs: 0 });
  try {
    expect(router.ruleRecorded).toBe(true);
    const want = keys.map((k) => router.locate(k).shard);
    const got = rows.map((r) => r.s);
    const diff = keys.flatMap((k, i) => (got[i] === want[i] ? [] : [`${k}: sql ${got[i]}, router ${want[i]}`]));
    expect(diff.slice(0, 5)).toEqual([]);
    expect(got).toHaveLength(keys.length);
  } finally {
    await router.close();
  }
}

async function recordRule(c: TestCluster): Promise<void> {
  const pools = await ShardPools.open(c.map);
  try {
    await pools.withShard('shard-0', async (cl) => {
      await ensureCatalogSchema(cl);
      await writeRuleState(cl, c.map);
    });
  } finally {
    await pools.close();
  }
}

describe('shardctl.locate() equals router.locate on 10,000 keys with moved tenants', () => {
  for (const type of ['bigint', 'text', 'uuid'] as const) {
    for (const strategy of ['modulo', 'hash'] as const) {
      if (strategy === 'modulo' && type !== 'bigint') continue; // modulo needs integer keys (the validator says so)
      it(`${type} keys, ${strategy}`, async () => {
        const c = await fleet(type, strategy);
        await recordRule(c);
        const keys = keysOf(type);
        expect(keys.length).toBe(N);
        expect(await moveSome(c, keys)).toBe(N / 10);
        await compare(c, c.map, keys);
      }, 60_000);
    }
  }

  it('text arguments are read as the recorded key type; no recorded rule raises instead of guessing', async () => {
    const c = await fleet('bigint', 'hash');
    await c.sql(0, 'CREATE TABLE t (tenant_id bigint)');
    const pools = await ShardPools.open(c.map);
    await pools.withShard('shard-0', (cl) => ensureCatalogSchema(cl));
    await pools.close();
    await expect(c.sql(0, 'SELECT shardctl.locate(7)')).rejects.toThrow(/records no placement rule/);
    await recordRule(c);
    const r = await c.sql<{ a: string; b: string; u: string }>(
      0,
      "SELECT shardctl.locate('007') AS a, shardctl.locate(7) AS b, shardctl.locate(7::int4) AS u",
    );
    expect(r[0]!.a).toBe(r[0]!.b);
    expect(r[0]!.u).toBe(r[0]!.b);
  });
});

describe('shardctl.locate() stays right through moves, freeze and a re-recorded rule', () => {
  it('freeze, a grown map recorded by adopt, then prune', async () => {
    const c = await fleet('bigint', 'modulo');
    const text = readFileSync(c.mapFile, 'utf8');
    const file2 = path.join(c.dir, 'shards2.yaml');
    writeFileSync(file2, text.replace(/ {2}- name: shard-2\n {4}url: [^\n]+\n/, ''));
    const map2 = await loadShardMap(file2);
    for (let i = 0; i < 3; i++)
      await c.sql(i, 'CREATE TABLE items (tenant_id bigint NOT NULL, n int, PRIMARY KEY (tenant_id, n))');
    // Placed by the 2-shard rule; adopt records it.
    for (let t = -20; t < 40; t++) await c.sql(((t % 2) + 2) % 2, 'INSERT INTO items VALUES ($1, 1)', [t]);
    const adopted = await adoptFleet(map2);
    expect(adopted.problems).toEqual([]);
    expect(adopted.ruleRecorded).toBe(true);
    const keys = keysOf('bigint');
    await compare(c, map2, keys);
    // Freeze under the 2-shard map, then grow to 3: routers accept any rule; new tenants follow the map.
    await freezePlacements(map2);
    await compare(c, map2, keys);
    const grown = await adoptFleet(c.map);
    expect(grown).toMatchObject({ refused: false, alreadyAdopted: true, ruleRecorded: true });
    await compare(c, c.map, keys);
    const pools = await ShardPools.open(c.map);
    try {
      expect(await pruneDirectory(c.map, pools)).toBeGreaterThan(0);
    } finally {
      await pools.close();
    }
    await compare(c, c.map, keys);
    expect(await c.sql(0, 'SELECT shardctl.locate(-7) AS s')).toEqual([{ s: 'shard-1' }]); // placed by mod 2
    // A real move: the directory changes, and the function follows it.
    const moved = await moveTenant(c.map, 5, 'shard-0', { mode: 'fenced' });
    expect(moved.move.state).toBe('done');
    expect(await c.sql(0, 'SELECT shardctl.locate(5) AS s')).toEqual([{ s: 'shard-0' }]);
    await compare(c, c.map, keys);
  }, 120_000);
});
