import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { abortMove, createRouter, moveReport, moveTenant, movesOf, planMove, verifyCluster } from '../../src/index.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';
import { crashPointsOfRun } from '../harness/crash-sample.js';
import { applyMoveSchema, loadMoveTenant, tenantRowCount, tenantRows } from '../harness/move-fixture.js';
import { replicationObjects, writerMismatches } from '../harness/online.js';
import { refusal } from '../harness/refusal.js';
import { runCli } from '../harness/run-cli.js';
import { startWriter, type WriterReport } from '../harness/writer.js';

// Many small tenants in one move: one copy, one change capture, one pause, one switch of all their
// directory entries in one catalog transaction; crash-safe like a single move.
let cluster: TestCluster;
const GROUP = Array.from({ length: 20 }, (_, i) => 2 * i + 1); // odd tenants: shard-1 under modulo 2
const CRASH_GROUP = [101, 103, 105, 107, 109];
beforeAll(async () => {
  // Routers (the writer's too) re-read the directory every 100 ms, within the cleanup's grace (0.6 s):
  // a router staler than the grace would send updates to deleted source rows (see README, cleanup).
  cluster = await createTestCluster({ shards: 2, reference: ['plans'], directoryTtl: '100ms' });
  await applyMoveSchema(cluster);
  for (const t of [...GROUP, ...CRASH_GROUP, 41]) await loadMoveTenant(cluster, 1, t, 3);
  await loadMoveTenant(cluster, 0, 2, 3);
});
afterAll(() => cluster.drop());

/** Rows of a tenant in every table but `users` (the writer's table). */
async function fixedRows(shard: number, tenant: number) {
  const { users: _users, ...rest } = await tenantRows(cluster, shard, tenant);
  return rest;
}

describe('group moves', () => {
  it('refuses a group split across shards, one with a tenant in flight, and logical replication', async () => {
    const split = await refusal(planMove(cluster.map, [1, 2], 'shard-0'));
    expect(split.code).toBe('GROUP_SPLIT');
    expect(split.message).toMatch(/1 on shard-1, 2 on shard-0/);
    const logical = await refusal(planMove(cluster.map, [1, 3], 'shard-0', { capture: 'logical' }));
    expect(logical.code).toBe('ONLINE_UNSUPPORTED');
    const dry = await runCli(['-c', cluster.mapFile, 'rebalance', '--tenant', '1,3,5', '--to', 'shard-0', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/move tenants 1, 3, 5 \(one group\): shard-1 -> shard-0/);
    expect(dry.stdout).toMatch(/capture: change-log triggers/);
  });

  it('moves 20 tenants with writers on several: one pause, all switched together, every write kept', async () => {
    const expected = new Map(await Promise.all(GROUP.map(async (t) => [t, await fixedRows(1, t)] as const)));
    const router = await createRouter(cluster.map);
    const writer = startWriter(router, [1, 7, 13, 29, 41], { concurrency: 5 });
    let report: WriterReport;
    let move;
    try {
      await writer.waitForWrites(40);
      ({ move } = await moveTenant(cluster.map, GROUP, 'shard-0'));
      await writer.waitForWrites(20, { tenant: 13 });
    } finally {
      report = await writer.stop();
      await router.close();
    }
    expect(move).toMatchObject({ state: 'done', mode: 'trigger' });
    expect(move.plan.group).toEqual(GROUP.map(String));
    expect(report.otherErrors).toEqual([]);
    expect(await writerMismatches(cluster, report, (t) => (GROUP.includes(t) ? 0 : 1))).toEqual([]);
    for (const t of GROUP) {
      expect(await fixedRows(0, t), `tenant ${t}`).toEqual(expected.get(t));
      expect(await tenantRowCount(cluster, 1, t), `tenant ${t} left on shard-1`).toBe(0);
    }
    expect(await tenantRowCount(cluster, 1, 41)).toBeGreaterThan(0);
    // One switch: every directory entry written by this move, in the one transaction of `switched`.
    const entries = await cluster.sql<{ n: number; moves: number }>(
      0,
      'SELECT count(*)::int AS n, count(DISTINCT move_id)::int AS moves FROM shardctl.placements WHERE tenant = ANY($1)',
      [GROUP.map(String)],
    );
    expect(entries).toEqual([{ n: 20, moves: 1 }]);
    const r = moveReport(move);
    expect(r.pauses.filter((p) => p.outcome === 'switched')).toHaveLength(1);
    // Every tenant of the group lists the group move as its own.
    for (const t of ['1', '13', '39']) expect((await movesOf(cluster.map, { tenant: t }))[0]!.id, t).toBe(move.id);
    expect([...(await replicationObjects(cluster, 0)), ...(await replicationObjects(cluster, 1))]).toEqual([]);
    expect((await verifyCluster(cluster.map)).findings).toEqual([]);
  });

  it('a tenant of a group in flight cannot move alone, and abort leaves every tenant where it was', async () => {
    const run = await runCli(
      ['-c', cluster.mapFile, 'rebalance', '--tenant', CRASH_GROUP.join(','), '--to', 'shard-0', '--yes'],
      { env: { SHARDCTL_TEST_CRASH_AT: 'after-state:replicating' } },
    );
    expect(run.code).not.toBe(0);
    const [m] = await movesOf(cluster.map, { tenant: String(CRASH_GROUP[0]) });
    expect(m!.plan.group).toEqual(CRASH_GROUP.map(String));
    const alone = await refusal(planMove(cluster.map, CRASH_GROUP[2], 'shard-0'));
    expect(alone.code).toBe('MOVE_IN_FLIGHT');
    expect(alone.message).toMatch(new RegExp(`move ${m!.id}`));
    expect((await abortMove(cluster.map, m!.id)).move.state).toBe('aborted');
    for (const t of CRASH_GROUP) {
      expect(await tenantRowCount(cluster, 0, t)).toBe(0);
      expect(await tenantRowCount(cluster, 1, t)).toBeGreaterThan(0);
    }
    expect(await replicationObjects(cluster, 1)).toEqual([]);
  });
});

// SIGKILL a group move at its journaled states and in the middle of a delta pass, then resume or
// abort: all tenants of the group on one side, together, every acknowledged write kept.
const POINTS = [
  'after-state:syncing',
  'before-copy-commit',
  'after-state:replicating',
  'trigger:mid-delta',
  'after-state:fenced',
  'trigger:in-pause',
  'after-state:verified',
  'after-state:switched',
  'mid-cleanup',
];

describe('crash safety of group moves', () => {
  it(`ends with the whole group moved or unmoved after a SIGKILL at any of ${POINTS.length} points`, async () => {
    const expected = new Map(await Promise.all(CRASH_GROUP.map(async (t) => [t, await fixedRows(1, t)] as const)));
    const router = await createRouter(cluster.map);
    const writer = startWriter(router, [CRASH_GROUP[0]!, CRASH_GROUP[3]!], { concurrency: 2, ratePerSecond: 200 });
    let where = 1;
    let report: WriterReport;
    try {
      for (const [i, point] of crashPointsOfRun(POINTS).entries()) {
        const to = 1 - where;
        const run = await runCli(
          ['-c', cluster.mapFile, 'rebalance', '--tenant', CRASH_GROUP.join(','), '--to', `shard-${to}`, '--yes'],
          { env: { SHARDCTL_TEST_CRASH_AT: point } },
        );
        expect(run.code, `${point}: the process should have been killed (${run.stdout}${run.stderr})`).not.toBe(0);
        const [m] = await movesOf(cluster.map, { tenant: String(CRASH_GROUP[0]) });
        const abort = i % 2 === 1 && !['switched', 'cleaned', 'done'].includes(m!.state);
        if (m!.state !== 'done' && m!.state !== 'aborted') {
          const r = await runCli(['-c', cluster.mapFile, 'rebalance', abort ? '--abort' : '--resume', String(m!.id)]);
          expect(r.code, `${point}: ${abort ? 'abort' : 'resume'} failed: ${r.stderr}`).toBe(0);
        }
        const [after] = await movesOf(cluster.map, { tenant: String(CRASH_GROUP[0]) });
        const now = after!.state === 'done' ? to : where;
        const r2 = await createRouter(cluster.map);
        for (const t of CRASH_GROUP) {
          expect(r2.locate(t).shard, `${point}: tenant ${t}`).toBe(`shard-${now}`);
          expect(await fixedRows(now, t), `${point}: tenant ${t} rows`).toEqual(expected.get(t));
          expect(await tenantRowCount(cluster, 1 - now, t), `${point}: tenant ${t} left behind`).toBe(0);
        }
        await r2.close();
        expect([...(await replicationObjects(cluster, 0)), ...(await replicationObjects(cluster, 1))], point).toEqual(
          [],
        );
        expect((await verifyCluster(cluster.map)).findings, point).toEqual([]);
        where = now;
      }
    } finally {
      report = await writer.stop();
      await router.close();
    }
    expect(report.otherErrors).toEqual([]);
    expect(await writerMismatches(cluster, report, () => where)).toEqual([]);
  }, 300_000);
});
