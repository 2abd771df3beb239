import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from 'pg';
import { ShardPools, type ShardMap } from '../../src/index.js';
import { withTransaction } from '../../src/db/transaction.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';

let cluster: TestCluster;
/** The cluster's map with shard-1 pointing at a port nothing listens on. */
let brokenMap: ShardMap;

beforeAll(async () => {
  cluster = await createTestCluster({ shards: 2 });
  await cluster.sql(0, 'CREATE TABLE door (id int PRIMARY KEY)');
  const dead = new URL(cluster.urls[1]!);
  dead.port = '1';
  brokenMap = {
    ...cluster.map,
    shards: cluster.map.shards.map((s, i) => (i === 1 ? { ...s, url: dead.toString() } : s)),
  };
});
afterAll(() => cluster.drop());

/** Connections of the pool that are checked out (taken and not yet released). */
const checkedOut = (pool: Pool) => pool.totalCount - pool.idleCount;

describe('ShardPools.withClients', () => {
  it('releases the connections it took when a later one cannot connect', async () => {
    const pools = await ShardPools.open(brokenMap, { connectTimeoutMs: 2000 });
    try {
      const names = [brokenMap.shards[0]!.name, brokenMap.shards[0]!.name, brokenMap.shards[1]!.name];
      let ran = false;
      const e = await pools
        .withClients(names, async () => {
          ran = true;
        })
        .catch((x: Error) => x);
      expect(ran).toBe(false);
      expect((e as Error).message).toMatch(new RegExp(`^shard ${brokenMap.shards[1]!.name}: cannot connect`));
      expect(pools.pool(brokenMap.shards[0]!.name).totalCount).toBe(2);
      expect(checkedOut(pools.pool(brokenMap.shards[0]!.name))).toBe(0);
      expect(pools.pool(brokenMap.shards[0]!.name).waitingCount).toBe(0);
    } finally {
      await pools.close();
    }
  });

  it('releases every connection when the work fails, and gives them in the order asked', async () => {
    const pools = await ShardPools.open(cluster.map);
    const [a, b] = cluster.map.shards.map((s) => s.name) as [string, string];
    try {
      const dbs = await pools.withClients([b, a], async (clients) =>
        Promise.all(
          clients.map(async (c) => (await c.query<{ d: string }>('SELECT current_database() AS d')).rows[0]!.d),
        ),
      );
      expect(dbs).toEqual([new URL(cluster.urls[1]!).pathname.slice(1), new URL(cluster.urls[0]!).pathname.slice(1)]);
      await expect(
        pools.withClients([a, b], async () => {
          throw new Error('work failed');
        }),
      ).rejects.toThrow('work failed');
      for (const name of [a, b]) expect(checkedOut(pools.pool(name))).toBe(0);
    } finally {
      await pools.close();
    }
  });
});

describe('withTransaction', () => {
  it('applies isolation, READ ONLY and SET LOCAL settings to this transaction only', async () => {
    const pools = await ShardPools.open(cluster.map);
    const shard = cluster.map.shards[0]!.name;
    try {
      await pools.withShard(shard, async (c) => {
        const inside = await withTransaction(
          c,
          async () =>
            (
              await c.query<{ iso: string; ro: string; lock: string; stmt: string; app: string }>(
                `SELECT current_setting('transaction_isolation') AS iso, current_setting('transaction_read_only') AS ro,
                        current_setting('lock_timeout') AS lock, current_setting('statement_timeout') AS stmt,
                        current_setting('shardctl.test_value') AS app`,
              )
            ).rows[0],
          {
            isolation: 'repeatable read',
            readOnly: true,
            lockTimeoutMs: 1500,
            statementTimeoutMs: 60_000,
            settings: { 'shardctl.test_value': "it's set" },
          },
        );
        expect(inside).toEqual({ iso: 'repeatable read', ro: 'on', lock: '1500ms', stmt: '1min', app: "it's set" });
        const after = await c.query<{ lock: string }>("SELECT current_setting('lock_timeout') AS lock");
        expect(after.rows[0]!.lock).toBe('0');
      });
    } finally {
      await pools.close();
    }
  });

  it('refuses writes in a READ ONLY transaction and rolls back on any error', async () => {
    const pools = await ShardPools.open(cluster.map);
    const shard = cluster.map.shards[0]!.name;
    try {
      const ro = await pools
        .withTransaction(shard, (c) => c.query('INSERT INTO door VALUES (1)'), { readOnly: true })
        .catch((e: { pgCode?: string; code?: string }) => e);
      expect(JSON.stringify(ro)).toMatch(/25006/);
      await expect(
        pools.withTransaction(shard, async (c) => {
          await c.query('INSERT INTO door VALUES (2)');
          throw new Error('after the insert');
        }),
      ).rejects.toThrow('after the insert');
      expect(await cluster.sql(0, 'SELECT id FROM door')).toEqual([]);
      await pools.withTransaction(shard, (c) => c.query('INSERT INTO door VALUES (3)'));
      expect(await cluster.sql(0, 'SELECT id FROM door')).toEqual([{ id: 3 }]);
    } finally {
      await pools.close();
    }
  });
});
