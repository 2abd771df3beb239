import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { abortMove, createRouter, fencesOf, movesOf, resumeMove, verifyCluster } from '../../src/index.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';
import { crashPointsOfRun } from '../harness/crash-sample.js';
import { applyMoveSchema, loadMoveTenant, MOVE_TABLES, tenantRows } from '../harness/move-fixture.js';
import { runCli } from '../harness/run-cli.js';

// SIGKILL the shardctl process at every journaled step and in the middle of copying each table,
// then resume or abort. Every time the end state must be fully moved or fully unmoved: nothing lost,
// nothing duplicated, directory, journal and fences consistent.
const POINTS = [
  'after-plan',
  'after-state:fenced',
  'after-fence',
  'after-state:copying',
  ...MOVE_TABLES.flatMap((t) => [`before-copy:public.${t}`, `mid-copy:public.${t}`]),
  'after-copy:public.invoice_lines',
  'before-copy-commit',
  'after-copy',
  'after-state:copied',
  'after-state:verified',
  'after-state:switched',
  'mid-cleanup',
  'after-state:cleaned',
];

let cluster: TestCluster;
const TENANT = 3; // starts on shard-0
beforeAll(async () => {
  cluster = await createTestCluster({ shards: 2, reference: ['plans'], directoryTtl: '100ms' });
  await applyMoveSchema(cluster);
  await loadMoveTenant(cluster, 1, 1, 5);
  await loadMoveTenant(cluster, 0, 2, 5);
  await loadMoveTenant(cluster, 1, TENANT, 25);
});
afterAll(() => cluster.drop());

describe('crash safety of fenced tenant moves (--offline)', () => {
  // One test walks every crash point in turn (kill, then resume or abort): minutes on a busy 2-core machine.
  it(`ends fully moved or fully unmoved after a SIGKILL at any of ${POINTS.length} points`, async () => {
    expect(POINTS.length).toBeGreaterThanOrEqual(20);
    const expected = await tenantRows(cluster, 1, TENANT);
    const bystanders = { a: await tenantRows(cluster, 1, 1), b: await tenantRows(cluster, 0, 2) };
    let where = 1;
    for (const [i, point] of crashPointsOfRun(POINTS).entries()) {
      const to = 1 - where;
      const run = await runCli(
        ['-c', cluster.mapFile, 'rebalance', '--tenant', String(TENANT), '--to', `shard-${to}`, '--yes', '--offline'],
        { env: { SHARDCTL_TEST_CRASH_AT: point } },
      );
      expect(run.code, `${point}: the process should have been killed (${run.stderr})`).not.toBe(0);
      const [m] = await movesOf(cluster.map, { tenant: String(TENANT) });
      // Alternate between finishing and undoing; a switched move can only be finished. The killed run is
      // the CLI's; the resume or abort is the same library call, in this process (one process start less).
      const abort = i % 2 === 1 && m !== undefined && !['switched', 'cleaned', 'done'].includes(m.state);
      if (m && m.state !== 'done' && m.state !== 'aborted') await (abort ? abortMove : resumeMove)(cluster.map, m.id);
      const [after] = await movesOf(cluster.map, { tenant: String(TENANT) });
      const moved = after !== undefined && after.id === m?.id && after.state === 'done';
      if (m) expect(['done', 'aborted'], point).toContain(after!.state);
      const now = moved ? to : where;
      expect(await tenantRows(cluster, now, TENANT), `${point}: tenant rows on shard-${now}`).toEqual(expected);
      const other = await tenantRows(cluster, 1 - now, TENANT);
      expect(Object.values(other).flat(), `${point}: nothing left on shard-${1 - now}`).toEqual([]);
      const router = await createRouter(cluster.map);
      expect(router.locate(TENANT).shard, point).toBe(`shard-${now}`);
      await router.close();
      // no fence blocks the tenant where it lives
      const fences = (await fencesOf(cluster.map)).flatMap((r) => (r.status === 'ok' ? r.value : []));
      expect(
        fences.filter((f) => f.tenant === String(TENANT) && f.shard === `shard-${now}`),
        point,
      ).toEqual([]);
      expect((await verifyCluster(cluster.map)).findings, point).toEqual([]);
      where = now;
    }
    expect(await tenantRows(cluster, 1, 1)).toEqual(bystanders.a);
    expect(await tenantRows(cluster, 0, 2)).toEqual(bystanders.b);
  }, 300_000);
});
