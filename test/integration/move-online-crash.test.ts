import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRouter, fencesOf, movesOf, verifyCluster } from '../../src/index.js';
import { createTestCluster, type TestCluster, noLogicalReplication } from '../harness/cluster.js';
import { crashPointsOfRun } from '../harness/crash-sample.js';
import { applyMoveSchema, loadMoveTenant } from '../harness/move-fixture.js';
import { replicationObjects, writerMismatches } from '../harness/online.js';
import { runCli } from '../harness/run-cli.js';
import { startWriter, type WriterReport } from '../harness/writer.js';
import { tenantRows } from '../harness/move-fixture.js';

/** External-server mode only: a server without wal_level = logical cannot move by logical replication. */
const NO_LOGICAL = await noLogicalReplication();
if (NO_LOGICAL) console.warn(`${import.meta.filename}: logical-replication moves skipped: ${NO_LOGICAL}`);

// SIGKILL an online move in every phase, a writer on the moving tenant and a bystander running
// throughout, then resume or abort. Every time: fully moved or fully unmoved, every acknowledged
// write where the tenant lives, and no slot, publication, subscription or change-log trigger left.
const POINTS = [
  'after-plan',
  'after-state:syncing',
  'online:after-publication',
  'online:after-slot',
  'mid-copy:public.users',
  'before-copy-commit',
  'online:after-copy',
  'online:after-subscription',
  'after-state:replicating',
  'after-state:fenced',
  'online:in-pause',
  'after-state:verified',
  'after-state:switched',
  'mid-cleanup',
  'after-state:cleaned',
];

let cluster: TestCluster;
const TENANT = 3; // starts on shard-1
beforeAll(async () => {
  // Routers (the writer's too) re-read the directory every 100 ms, within the cleanup's grace (0.6 s):
  // a router staler than the grace would send updates to deleted source rows (see README, cleanup).
  cluster = await createTestCluster({ shards: 2, reference: ['plans'], directoryTtl: '100ms' });
  await applyMoveSchema(cluster);
  await loadMoveTenant(cluster, 0, 2, 5);
  await loadMoveTenant(cluster, 1, TENANT, 60);
});
afterAll(() => cluster.drop());

/** Rows of a tenant in every table but `users` (the writer's table). */
async function fixedRows(shard: number, tenant: number) {
  const { users: _users, ...rest } = await tenantRows(cluster, shard, tenant);
  return rest;
}

describe.skipIf(Boolean(NO_LOGICAL))('crash safety of online moves', () => {
  // One test walks every crash point in turn (kill, then resume or abort): minutes on a busy 2-core machine.
  it(`ends fully moved or fully unmoved, with every acknowledged write, after a SIGKILL at any of ${POINTS.length} points`, async () => {
    const expected = await fixedRows(1, TENANT);
    const router = await createRouter(cluster.map);
    const writer = startWriter(router, [TENANT, 2], { concurrency: 2, ratePerSecond: 300 });
    let where = 1;
    let report: WriterReport;
    try {
      for (const [i, point] of crashPointsOfRun(POINTS, { serverSpecific: true }).entries()) {
        const to = 1 - where;
        const run = await runCli(
          ['-c', cluster.mapFile, 'rebalance', '--tenant', String(TENANT), '--to', `shard-${to}`, '--yes'],
          { env: { SHARDCTL_TEST_CRASH_AT: point } },
        );
        expect(run.code, `${point}: the process should have been killed (${run.stdout}${run.stderr})`).not.toBe(0);
        const [m] = await movesOf(cluster.map, { tenant: String(TENANT) });
        expect(m?.mode, point).toBe('online');
        const abort = i % 2 === 1 && m !== undefined && !['switched', 'cleaned', 'done'].includes(m.state);
        if (m && m.state !== 'done' && m.state !== 'aborted') {
          const r = await runCli(['-c', cluster.mapFile, 'rebalance', abort ? '--abort' : '--resume', String(m.id)]);
          expect(r.code, `${point}: ${abort ? 'abort' : 'resume'} failed: ${r.stderr}`).toBe(0);
        }
        const [after] = await movesOf(cluster.map, { tenant: String(TENANT) });
        expect(['done', 'aborted'], point).toContain(after!.state);
        const now = after!.state === 'done' ? to : where;
        expect(await fixedRows(now, TENANT), `${point}: tenant rows on shard-${now}`).toEqual(expected);
        expect(
          Object.values(await tenantRows(cluster, 1 - now, TENANT)).flat(),
          `${point}: nothing left on shard-${1 - now}`,
        ).toEqual([]);
        const r2 = await createRouter(cluster.map);
        expect(r2.locate(TENANT).shard, point).toBe(`shard-${now}`);
        await r2.close();
        const fences = (await fencesOf(cluster.map)).flatMap((r) => (r.status === 'ok' ? r.value : []));
        expect(
          fences.filter((f) => f.tenant === String(TENANT) && f.shard === `shard-${now}`),
          point,
        ).toEqual([]);
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
    expect(report.writes).toBeGreaterThan(100);
    expect(await writerMismatches(cluster, report, (t) => (t === TENANT ? where : t % 2))).toEqual([]);
  }, 300_000);
});
