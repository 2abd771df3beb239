import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bucketOf, ruleSql, tenantHash, type ShardMap } from '../../src/index.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';

// The hash strategy is only useful if PostgreSQL computes exactly what shardctl computes: shards find
// misplaced rows in SQL, and apps in any language can ask SQL for a placement. Prove it on 10,000+
// random keys of each type, including extremes and non-ASCII text.
let cluster: TestCluster;
beforeAll(async () => {
  cluster = await createTestCluster({ shards: 1, strategy: 'hash', buckets: 4096 });
});
afterAll(() => cluster.drop());

async function serverHashes(type: 'bigint' | 'text' | 'uuid', keys: string[]): Promise<{ h: number; b: number }[]> {
  const map: ShardMap = { ...cluster.map, shardKey: { column: 'k', type, columns: {} } };
  const cast = type === 'bigint' ? 'int8' : type;
  const fn = type === 'bigint' ? 'hashint8(k)' : type === 'uuid' ? 'uuid_hash(k)' : 'hashtext(k COLLATE "C")';
  const rows = await cluster.sql<{ h: number; b: string }>(
    0,
    `SELECT ${fn} AS h, ${ruleSql(map, 'k')} AS b FROM unnest($1::${cast}[]) WITH ORDINALITY AS u(k, i) ORDER BY i`,
    [keys],
  );
  return rows.map((r) => ({ h: r.h, b: Number(r.b) }));
}

describe('hash placement equals PostgreSQL', () => {
  it('bigint keys, extremes and negatives included', async () => {
    const extremes = [
      0n,
      1n,
      -1n,
      2n ** 31n - 1n,
      -(2n ** 31n),
      2n ** 32n,
      -(2n ** 32n),
      2n ** 53n,
      -(2n ** 53n) - 7n,
      2n ** 63n - 1n,
      -(2n ** 63n),
    ];
    const random = fc.sample(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), 6000);
    const small = fc.sample(fc.integer({ min: -1_000_000, max: 1_000_000 }).map(BigInt), 4000);
    const keys = [...extremes, ...random, ...small];
    const server = await serverHashes('bigint', keys.map(String));
    keys.forEach((k, i) => {
      expect.soft(tenantHash(k, 'bigint'), `key ${k}`).toBe(server[i]!.h);
      expect.soft(bucketOf(k, 'bigint', 4096), `key ${k}`).toBe(server[i]!.b);
    });
    expect(keys.length).toBeGreaterThanOrEqual(10_000);
  });

  it('text keys, non-ASCII and lengths across the 12-byte blocks', async () => {
    const keys = [
      '',
      'a',
      'acme',
      'ééé',
      '日本語のテナント',
      '🚀 rocket',
      'x'.repeat(11),
      'y'.repeat(12),
      'z'.repeat(13),
      'ü'.repeat(50),
      ...fc.sample(
        fc.string({ unit: 'binary', maxLength: 40 }).filter((s) => !s.includes('\u0000')),
        5000,
      ),
      ...fc.sample(fc.string({ maxLength: 30 }), 5000),
    ];
    const server = await serverHashes('text', keys);
    keys.forEach((k, i) => {
      expect.soft(tenantHash(k, 'text'), JSON.stringify(k)).toBe(server[i]!.h);
      expect.soft(bucketOf(k, 'text', 4096)).toBe(server[i]!.b);
    });
  });

  it('uuid keys', async () => {
    const keys = [
      '00000000-0000-0000-0000-000000000000',
      'ffffffff-ffff-ffff-ffff-ffffffffffff',
      ...fc.sample(fc.uuid(), 10_000),
    ];
    const server = await serverHashes('uuid', keys);
    keys.forEach((k, i) => {
      expect.soft(tenantHash(k, 'uuid'), k).toBe(server[i]!.h);
      expect.soft(bucketOf(k, 'uuid', 4096)).toBe(server[i]!.b);
    });
  });
});
