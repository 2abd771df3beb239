import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRouter, runQuery, streamQuery, ShardctlError, type Router, type ShardMap } from '../../src/index.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';

// Every shard query holds a pooled connection in a read-only session; whatever fails (a connect, a
// row mid-stream, the consumer walking away), every connection taken goes back to its pool and the
// query ends with the failing shard's error.
let cluster: TestCluster;
let router: Router;

const ROWS = 12_000; // more than two cursor batches (5000)

beforeAll(async () => {
  cluster = await createTestCluster({ shards: 2 });
  for (const i of [0, 1]) {
    await cluster.sql(i, 'CREATE TABLE t (tenant_id bigint NOT NULL, id int NOT NULL, d int NOT NULL)');
    // shard-1's row 11000 divides by zero: its error arrives in the third batch of a plain scan
    await cluster.sql(
      i,
      `INSERT INTO t SELECT 2 * g + $1, g, CASE WHEN $1 = 1 AND g = 11000 THEN 0 ELSE 1 END FROM generate_series(1, $2::int) g`,
      [i, ROWS],
    );
  }
  // No directory notices: a notice's read would hold a pool connection while the counts are taken.
  router = await createRouter(cluster.map, { pool: { maxPerShard: 2 }, listen: false });
});
afterAll(async () => {
  await router?.close();
  await cluster?.drop();
});

/** Connections checked out of the router's pools, by shard. */
function checkedOut(r: Router): Record<string, number> {
  return Object.fromEntries(
    r.map.shards.map((s) => {
      const p = r.pools.pool(s.name);
      return [s.name, p.totalCount - p.idleCount];
    }),
  );
}

const none = { 'shard-0': 0, 'shard-1': 0 };

async function drain(batches: AsyncGenerator<unknown[]>): Promise<number> {
  let n = 0;
  for await (const b of batches) n += b.length;
  return n;
}

describe('shard sessions', () => {
  it('a shard failing mid-stream ends the query with its error and releases every connection', async () => {
    const s = await streamQuery(cluster.map, 'SELECT id, 10 / d AS q FROM t', [], { router });
    let seen = 0;
    const err = await (async () => {
      try {
        for await (const b of s.batches) seen += b.length;
      } catch (e) {
        return e as ShardctlError;
      }
    })();
    expect(err).toBeInstanceOf(ShardctlError);
    expect(err!.message).toMatch(/^shard shard-1: division by zero/);
    expect(err!.pg?.code).toBe('22012');
    expect(seen).toBeGreaterThan(ROWS); // shard-0 whole, then shard-1's first batches
    expect(checkedOut(router)).toEqual(none);
  });

  it('a shard failing when its sorted cursor opens releases the others', async () => {
    await expect(runQuery(cluster.map, 'SELECT id, 10 / d AS q FROM t ORDER BY id', [], { router })).rejects.toThrow(
      /shard shard-1: division by zero/,
    );
    expect(checkedOut(router)).toEqual(none);
  });

  it('a consumer that stops early releases every connection', async () => {
    const s = await streamQuery(cluster.map, 'SELECT tenant_id, id FROM t WHERE d = 1 ORDER BY id, tenant_id', [], {
      router,
    });
    for await (const b of s.batches) {
      expect(b.length).toBeGreaterThan(0);
      break;
    }
    expect(checkedOut(router)).toEqual(none);
    // and the pools still answer a whole ordered export afterwards
    const again = await streamQuery(cluster.map, 'SELECT tenant_id, id FROM t WHERE d = 1 ORDER BY id, tenant_id', [], {
      router,
    });
    expect(await drain(again.batches)).toBe(2 * ROWS - 1);
    expect(checkedOut(router)).toEqual(none);
  });

  it('a shard that cannot be reached is named; the connections to the others are released', async () => {
    const port = new URL(cluster.urls[1]!).port;
    const down: ShardMap = {
      ...cluster.map,
      shards: cluster.map.shards.map((s, i) => (i === 1 ? { ...s, url: s.url.replace(`:${port}/`, ':1/') } : s)),
    };
    const r = await createRouter(down, { pool: { maxPerShard: 2, connectTimeoutMs: 2000 } });
    try {
      const sql = 'SELECT tenant_id, id FROM t ORDER BY id, tenant_id';
      await expect(streamQuery(down, sql, [], { router: r })).rejects.toThrow(/shard-1/);
      expect(checkedOut(r)).toEqual(none);
      await expect(runQuery(down, 'SELECT count(*) FROM t', [], { router: r })).rejects.toMatchObject({
        code: 'UNREACHABLE',
      });
      expect(checkedOut(r)).toEqual(none);
      const partial = await streamQuery(down, sql, [], { router: r, allowPartial: true });
      expect(partial.missing.map((m) => m.shard)).toEqual(['shard-1']);
      expect(await drain(partial.batches)).toBe(ROWS);
      expect(checkedOut(r)).toEqual(none);
    } finally {
      await r.close();
    }
  });
});
