import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRouter, runQuery, streamQuery, ShardctlError, type Router } from '../../src/index.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';
import { pollUntil } from '../../src/db/poll.js';

// No query hangs on a shard's error: whatever stage fails (session setup, cursor open, a fetch, a
// connection killed mid-stream, the final combine), the query ends with that shard's error and every
// other shard's session is released: nothing left `idle in transaction` or still running. The test
// timeout is the hang detector: a query that waited on a slow shard after another failed would exceed it.
let cluster: TestCluster;
let router: Router;

const ROWS = 12_000; // more than two cursor batches (5000)
const HANG = 20_000;

beforeAll(async () => {
  cluster = await createTestCluster({ shards: 3 });
  for (const i of [0, 1, 2]) {
    await cluster.sql(i, 'CREATE TABLE t (tenant_id bigint NOT NULL, id int PRIMARY KEY, v int NOT NULL)');
    await cluster.sql(i, 'INSERT INTO t SELECT 3 * g + $1, g, g FROM generate_series(1, $2::int) g', [i, ROWS]);
    // shard-1's copy of `lacks` has no column `extra` (schema drift): the shard query fails when it opens
    await cluster.sql(i, `CREATE TABLE lacks (tenant_id bigint NOT NULL, id int${i === 1 ? '' : ', extra int'})`);
    // boom(x) raises on shard-1 once x reaches 11000 (the third cursor batch of an ordered scan)
    await cluster.sql(
      i,
      `CREATE FUNCTION boom(x int) RETURNS int LANGUAGE plpgsql AS $$
       BEGIN IF ${i === 1 ? 'x >= 11000' : 'false'} THEN RAISE EXCEPTION 'boom at %', x USING ERRCODE = 'P0042'; END IF;
       RETURN x; END $$`,
    );
    // fail_or_sleep(): shard-0 fails at once, the others would run for a minute
    await cluster.sql(
      i,
      `CREATE FUNCTION fail_or_sleep() RETURNS boolean LANGUAGE plpgsql AS $$
       BEGIN ${i === 0 ? "RAISE EXCEPTION 'fails first' USING ERRCODE = 'P0043'" : 'PERFORM pg_sleep(60)'}; RETURN true; END $$`,
    );
  }
  router = await createRouter(cluster.map, { pool: { maxPerShard: 2 }, listen: false });
});
afterAll(async () => {
  await router?.close();
  await cluster?.drop();
});

/** Sessions of other clients on shard i that are inside a transaction or running a statement. */
async function busy(i: number): Promise<string[]> {
  const c = new pg.Client({ connectionString: cluster.urls[i] });
  await c.connect();
  try {
    const r = await c.query<{ s: string }>(
      `SELECT state || ': ' || left(query, 60) AS s FROM pg_stat_activity
       WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'
         AND backend_type = 'client backend'`,
    );
    return r.rows.map((x) => x.s);
  } finally {
    await c.end();
  }
}

async function expectAllReleased(): Promise<void> {
  for (const s of router.map.shards) {
    const p = router.pools.pool(s.name);
    expect(p.totalCount - p.idleCount, `${s.name} connections checked out`).toBe(0);
  }
  // The query has ended; the other shards' cancelled statements end on the server a moment later.
  await pollUntil(async () => [...(await busy(0)), ...(await busy(1)), ...(await busy(2))].length === 0, {
    timeoutMs: 15_000,
    intervalMs: 50,
    reason: 'the other shards sessions to end',
  }).catch(() => undefined);
  expect([...(await busy(0)), ...(await busy(1)), ...(await busy(2))]).toEqual([]);
}

async function failure(p: () => Promise<unknown>): Promise<ShardctlError> {
  try {
    await p();
  } catch (e) {
    expect(e).toBeInstanceOf(ShardctlError);
    return e as ShardctlError;
  }
  throw new Error('expected the query to fail');
}

async function drain(s: Awaited<ReturnType<typeof streamQuery>>): Promise<number> {
  let n = 0;
  for await (const b of s.batches) n += b.length;
  return n;
}

const STREAMED = {
  'plain rows (concat)': 'SELECT id, extra FROM lacks',
  'ordered rows (k-way merge)': 'SELECT id, extra FROM lacks ORDER BY id',
  'aggregates (buffered + final query)': 'SELECT count(extra) FROM lacks',
  'ORDER BY ... LIMIT (buffered + final query)': 'SELECT id, extra FROM lacks ORDER BY id LIMIT 5',
};

describe('a shard error at any stage ends the query with that error', () => {
  for (const [path, sql] of Object.entries(STREAMED)) {
    it(
      `cursor open / shard query: a shard lacking a column, ${path}`,
      async () => {
        const err = await failure(async () => drain(await streamQuery(cluster.map, sql, [], { router })));
        expect(err.message).toMatch(/^shard shard-1: column "extra" does not exist/);
        expect(err.pg?.code).toBe('42703');
        expect(err.pg?.position).toBeGreaterThan(0);
        await expectAllReleased();
      },
      HANG,
    );
  }

  it(
    'fetch: a function that raises after 11000 rows, mid k-way merge',
    async () => {
      const s = await streamQuery(cluster.map, 'SELECT id, boom(v) FROM t ORDER BY id', [], { router });
      let seen = 0;
      const err = await failure(async () => {
        for await (const b of s.batches) seen += b.length;
      });
      expect(err.message).toMatch(/^shard shard-1: boom at 11000/);
      expect(err.pg?.code).toBe('P0042');
      expect(seen).toBeGreaterThan(20_000); // the merge was well under way
      await expectAllReleased();
    },
    HANG,
  );

  it(
    'fetch: a function that raises after 11000 rows, plain rows through cursors',
    async () => {
      const err = await failure(async () =>
        drain(await streamQuery(cluster.map, 'SELECT id, boom(v) FROM t', [], { router })),
      );
      expect(err.message).toMatch(/^shard shard-1: boom at 11000/);
      await expectAllReleased();
    },
    HANG,
  );

  for (const [path, sql] of [
    ['plain rows', 'SELECT id, v FROM t'],
    ['ordered rows', 'SELECT id, v FROM t ORDER BY id'],
  ] as const) {
    it(
      `a shard's session terminated mid-stream (${path}): its error, at once`,
      async () => {
        const s = await streamQuery(cluster.map, sql, [], { router });
        const it = s.batches[Symbol.asyncIterator]();
        const first = await it.next();
        expect(first.done).toBe(false);
        // every shard's cursor is open (its portal suspended between fetches): kill shard-2's session
        const killed = await cluster.sql<{ k: boolean }>(
          2,
          `SELECT pg_terminate_backend(pid) AS k FROM pg_stat_activity
           WHERE datname = current_database() AND state <> 'idle' AND pid <> pg_backend_pid()
             AND backend_type = 'client backend'`,
        );
        expect(killed.map((k) => k.k)).toEqual([true]);
        const err = await failure(async () => {
          for (let r = await it.next(); !r.done; r = await it.next()) void r;
        });
        expect(err.message).toMatch(/^shard shard-2: terminating connection due to administrator command/);
        expect(err.pg?.code).toBe('57P01');
        await expectAllReleased();
        // the pools still answer afterwards
        const again = await runQuery(cluster.map, 'SELECT count(*) FROM t', [], { router });
        expect(again.rows).toEqual([[String(3 * ROWS)]]);
      },
      HANG,
    );
  }

  it(
    'final combine: an error in the final query names the shard it ran on',
    async () => {
      const err = await failure(() =>
        runQuery(cluster.map, `SELECT 10 / (count(*) - ${3 * ROWS}) AS q FROM t`, [], { router }),
      );
      expect(err.message).toMatch(/^shard shard-\d: division by zero/);
      expect(err.pg?.code).toBe('22012');
      await expectAllReleased();
    },
    HANG,
  );

  for (const [path, sql] of [
    ['buffered aggregate', 'SELECT count(*) FROM t WHERE fail_or_sleep()'],
    ['plain rows', 'SELECT id FROM t WHERE fail_or_sleep()'],
    ['ordered rows', 'SELECT id FROM t WHERE fail_or_sleep() ORDER BY id'],
  ] as const) {
    it(
      `one shard failing at once cancels the others still running (${path})`,
      async () => {
        const err = await failure(async () => drain(await streamQuery(cluster.map, sql, [], { router })));
        expect(err.message).toMatch(/^shard shard-0: fails first/);
        expect(err.pg?.code).toBe('P0043');
        await expectAllReleased();
      },
      HANG,
    );
  }
});

describe('a fleet whose placement rule is not recorded', () => {
  it('asks every shard where the map would have pinned one, and answers right', async () => {
    const sql = 'SELECT count(*) FROM t WHERE tenant_id = 4';
    const explained = await runQuery(cluster.map, sql, [], { router, explain: true });
    expect(router.ruleRecorded).toBe(false);
    expect(explained.plan.shards).toEqual(['shard-0', 'shard-1', 'shard-2']);
    expect(explained.plan.routing).toMatch(/not recorded in the catalog/);
    expect((await runQuery(cluster.map, sql, [], { router })).rows).toEqual([['1']]);
    await expect(runQuery(cluster.map, 'SELECT 1', [], { router, tenant: '4' })).rejects.toThrow(
      /refused: --tenant 4 on a fleet whose placement rule the catalog has not recorded/,
    );
  });
});
