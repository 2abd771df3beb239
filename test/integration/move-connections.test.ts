import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { abortMove, movesOf, ShardPools, type ShardMap } from '../../src/index.js';
import { ensureCatalogSchema } from '../../src/catalog/catalog-schema.js';
import { pollUntil, sleep } from '../../src/db/poll.js';
import { FENCED_STEPS } from '../../src/move/fenced-steps.js';
import { createMove, type MoveRecord } from '../../src/move/move-journal.js';
import { CAPTURES } from '../../src/move/move-loop.js';
import { moveRun } from '../../src/move/move-run.js';
import { ONLINE_STEPS } from '../../src/move/online-steps.js';
import { resumeMove } from '../../src/move/move-tenant.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';
import { applyMoveSchema, loadMoveTenant } from '../harness/move-fixture.js';

// A move step that takes sessions on two shards, when the second shard cannot be reached: whatever it
// connected first goes back to its pool. Before, `await pool(a).connect(); await pool(b).connect()`
// kept the first session checked out for good when the second connect threw.

let cluster: TestCluster;
const TENANT = 1; // lives on shard-1 (modulo over 3 shards); the catalog is shard-0
beforeAll(async () => {
  cluster = await createTestCluster({ shards: 3, reference: ['plans'] });
  await applyMoveSchema(cluster);
  await loadMoveTenant(cluster, 1, TENANT, 3);
});
afterAll(() => cluster.drop());

/** The cluster's map with shard-2 pointing at a port nothing listens on. */
function mapWithDeadTarget(): ShardMap {
  return {
    ...cluster.map,
    shards: cluster.map.shards.map((s) =>
      s.name === 'shard-2' ? { ...s, url: 'postgres://postgres@127.0.0.1:1/nowhere' } : s,
    ),
  };
}

async function journalMove(mode: 'fenced' | 'online'): Promise<MoveRecord> {
  const c = await cluster.sql<{ n: string }>(1, 'SELECT count(*)::text AS n FROM users WHERE tenant_id = $1', [TENANT]);
  expect(Number(c[0]!.n)).toBeGreaterThan(0);
  const pools = await ShardPools.open(cluster.map);
  try {
    return await pools.withShard(cluster.map.catalog, async (client) => {
      await ensureCatalogSchema(client);
      return createMove(client, {
        tenant: String(TENANT),
        source: 'shard-1',
        target: 'shard-2',
        keepSource: false,
        plan: { tables: [{ table: 'public.users', rows: 3, bytes: 100 }] },
        mode,
      });
    });
  } finally {
    await pools.close();
  }
}

/** Sessions the pool handed out and never got back. */
function checkedOut(pools: ShardPools, shard: string): { checkedOut: number; waiting: number; total: number } {
  const p = pools.pool(shard);
  return { checkedOut: p.totalCount - p.idleCount, waiting: p.waitingCount, total: p.totalCount };
}

/** Closes the pools; a pool with a session never given back would wait forever, so this gives up after 2 s. */
async function closeBounded(pools: ShardPools): Promise<void> {
  await Promise.race([pools.close(), sleep(2000)]);
}

describe('connections of a move when the target cannot be reached', () => {
  it('the fenced copy gives its source session back when the target connect fails', async () => {
    const move = await journalMove('fenced');
    const pools = await ShardPools.open(mapWithDeadTarget(), { connectTimeoutMs: 2000 });
    try {
      const r = moveRun(pools.map, pools, move, {}, CAPTURES.fenced);
      const error: unknown = await FENCED_STEPS.copying.run(r).catch((e: unknown) => e);
      // The source was connected (for the table list and the copy) and every session is back.
      expect(checkedOut(pools, 'shard-1')).toMatchObject({ checkedOut: 0, waiting: 0 });
      expect(checkedOut(pools, 'shard-1').total).toBeGreaterThan(0);
      expect(error).toMatchObject({ code: 'UNREACHABLE', shard: 'shard-2' });
    } finally {
      await closeBounded(pools);
    }
    await abortMove(cluster.map, move.id);
  });

  it('the online pause gives its source session back when the target connect fails', async () => {
    const move = await journalMove('online');
    const pools = await ShardPools.open(mapWithDeadTarget(), { connectTimeoutMs: 2000 });
    try {
      const r = moveRun(pools.map, pools, move, {}, CAPTURES.online);
      const error: unknown = await ONLINE_STEPS.fenced.run(r).catch((e: unknown) => e);
      expect(checkedOut(pools, 'shard-1')).toMatchObject({ checkedOut: 0, waiting: 0 });
      expect(checkedOut(pools, 'shard-1').total).toBeGreaterThan(0);
      expect(error).toMatchObject({ code: 'UNREACHABLE', shard: 'shard-2' });
    } finally {
      await closeBounded(pools);
    }
    await abortMove(cluster.map, move.id);
  });

  it('a whole move that fails on the target leaves no session of shardctl on the source', async () => {
    const move = await journalMove('fenced');
    const sourceSessions = async () =>
      Number(
        (
          await cluster.sql<{ n: string }>(
            1,
            "SELECT count(*)::text AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'shardctl move'",
          )
        )[0]!.n,
      );
    await expect(resumeMove(mapWithDeadTarget(), move.id, { timeoutMs: 2000 })).rejects.toMatchObject({
      code: 'UNREACHABLE',
    });
    const [journaled] = await movesOf(cluster.map, { tenant: String(TENANT) });
    expect(journaled).toMatchObject({ id: move.id, state: 'failed', failedIn: 'copying' });
    // A session that was never released would stay connected after the pools closed.
    await pollUntil(async () => (await sourceSessions()) === 0, {
      timeoutMs: 10_000,
      intervalMs: 50,
      reason: 'the move sessions on the source to end',
    });
    expect(await sourceSessions()).toBe(0);
    await abortMove(cluster.map, move.id);
    expect((await movesOf(cluster.map, { tenant: String(TENANT) }))[0]).toMatchObject({ state: 'aborted' });
  });
});
