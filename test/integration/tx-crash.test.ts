import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recoverTransactions, verifyCluster } from '../../src/index.js';
import { startServer, stopServer } from '../../src/dev/embedded-server.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';
import { startOwnServers, type OwnServers } from '../harness/own-servers.js';
import { runCli } from '../harness/run-cli.js';
import { runTransfers } from '../harness/tx-child.js';
import { applyTxSchema, balances, openAccounts, preparedGids } from '../harness/tx-fixture.js';

// Two shards; tenants 2, 4 on shard-0 and 3, 5 on shard-1 (modulo 2): most transfers cross shards.
const TENANTS = [2, 3, 4, 5];
const START_BALANCE = 1000;
let cluster: TestCluster;
/**
 * The shards live on servers of this file's own: one test restarts a server, and prepared
 * transactions would hold back the other files' replication slots on the suite's servers.
 */
let own: OwnServers | undefined;
beforeAll(async () => {
  own = await startOwnServers(2);
  cluster = await createTestCluster({ shards: 2, reference: ['plans'], servers: own.urls });
  await applyTxSchema(cluster);
  await openAccounts(cluster, TENANTS, START_BALANCE);
}, 180_000);
afterAll(async () => {
  await cluster?.drop();
  await own?.stop();
});

/** Per transfer number, the tenants that logged it; per tenant, the sum of its logged deltas. */
async function logs(): Promise<{ byTxno: Map<number, number[]>; deltas: Map<number, number> }> {
  const byTxno = new Map<number, number[]>();
  const deltas = new Map<number, number>();
  for (let i = 0; i < 2; i++)
    for (const r of await cluster.sql<{ t: string; n: number; d: string }>(
      i,
      'SELECT tenant_id AS t, txno AS n, delta AS d FROM transfer_log',
    )) {
      byTxno.set(r.n, [...(byTxno.get(r.n) ?? []), Number(r.t)]);
      deltas.set(Number(r.t), (deltas.get(Number(r.t)) ?? 0) + Number(r.d));
    }
  return { byTxno, deltas };
}

/** The cluster is whole: no transfer half-applied, balances equal their logs, the total unchanged, nothing prepared. */
async function expectWhole(label: string): Promise<Map<number, number[]>> {
  const { byTxno, deltas } = await logs();
  for (const [n, tenants] of byTxno) expect(tenants.length, `${label}: transfer ${n} on both sides`).toBe(2);
  const b = await balances(cluster);
  for (const t of TENANTS) expect(b.get(t), `${label}: balance of ${t}`).toBe(START_BALANCE + (deltas.get(t) ?? 0));
  expect(
    [...b.values()].reduce((x, y) => x + y, 0),
    `${label}: total`,
  ).toBe(START_BALANCE * TENANTS.length);
  expect(await preparedGids(cluster), `${label}: nothing left prepared`).toEqual([]);
  expect(await cluster.sql(0, 'SELECT id FROM shardctl.tx_decisions'), `${label}: decision records pruned`).toEqual([]);
  return byTxno;
}

// Where the coordinator dies, and whether its in-flight transfer must end committed.
const MATRIX: { point: string; committed: boolean }[] = [
  { point: 'tx:after-first-prepare', committed: false },
  { point: 'tx:after-prepares', committed: false },
  { point: 'tx:after-decision', committed: true },
  { point: 'tx:after-first-commit-prepared', committed: true },
];

describe('crash matrix of two-phase commit', () => {
  let txno = 1;

  it('after a SIGKILL at each point, recover ends every transfer on all participants or none, equal to the oracle', async () => {
    for (const { point, committed } of MATRIX) {
      const before = (await logs()).byTxno;
      // One worker, three transfers between the two shards; the third dies at the point.
      const run = await runTransfers({
        mapFile: cluster.mapFile,
        dir: cluster.dir,
        tenants: [2, 3],
        start: txno,
        count: 3,
        workers: 1,
        point,
        armAfter: 2,
      });
      expect(run.signal, `${point}: killed (${run.stderr} ${run.failed.join('; ')})`).toBe('SIGKILL');
      expect(run.acked, point).toEqual([txno, txno + 1]);
      const inFlight = txno + 2;
      const left = await preparedGids(cluster);
      // The COMMIT PREPAREDs go out together: after the first answer the others may have landed too.
      if (point !== 'tx:after-first-commit-prepared')
        expect(left.length, `${point}: prepared transactions left by the crash`).toBeGreaterThan(0);
      // The decision record stays behind whenever the decision was made: recover prunes it.
      if (committed) expect((await cluster.sql(0, 'SELECT id FROM shardctl.tx_decisions')).length, point).toBe(1);
      expect(
        left.every((g) => g.startsWith('shardctl_')),
        point,
      ).toBe(true);
      const r = await runCli(['-c', cluster.mapFile, 'recover', '--json']);
      expect(r.code, `${point}: recover: ${r.stderr}`).toBe(0);
      const report = JSON.parse(r.stdout) as { transactions: { decision: string; action: string }[]; pruned: number };
      expect(
        report.transactions.map((t) => t.decision),
        point,
      ).toEqual(report.transactions.map(() => (committed ? 'commit' : 'abort')));
      // committed: the in-flight record (its decision deleted the previous one); else the abort just
      // recorded and the previous transfer's record, whose deletion rolled back with the decision.
      expect(report.pruned, `${point}: decision records pruned`).toBe(committed ? 1 : 2);
      const byTxno = await expectWhole(point);
      // the oracle: every acknowledged transfer, plus the in-flight one exactly when its decision was made
      const expected = new Set([...before.keys(), txno, txno + 1, ...(committed ? [inFlight] : [])]);
      expect(new Set(byTxno.keys()), point).toEqual(expected);
      txno += 3;
    }
    expect(
      (await verifyCluster(cluster.map, { inDoubtAfterMs: 0 })).findings.filter(
        (f) => f.kind === 'in-doubt-transaction',
      ),
    ).toEqual([]);
  }, 300_000);

  it('a participant restarted with fast shutdown while prepared keeps the transaction, and recover ends it by the decision', async () => {
    // shard-1 is on this file's second own server.
    const server = own!.dirs[1]!;
    for (const { point, committed } of [MATRIX[1]!, MATRIX[2]!]) {
      const before = (await logs()).byTxno;
      const run = await runTransfers({
        mapFile: cluster.mapFile,
        dir: cluster.dir,
        tenants: [2, 3],
        start: txno,
        count: 1,
        workers: 1,
        point,
      });
      expect(run.signal, `${point}: killed (${run.stderr} ${run.failed.join('; ')})`).toBe('SIGKILL');
      await stopServer(server);
      await startServer(server);
      expect(
        (await preparedGids(cluster)).some((g) => g.endsWith('_shard-1')),
        `${point}: still prepared after the restart`,
      ).toBe(true);
      const report = await recoverTransactions(cluster.map);
      expect(report.ok, point).toBe(true);
      const byTxno = await expectWhole(`${point} + restart`);
      expect(new Set(byTxno.keys()), point).toEqual(new Set([...before.keys(), ...(committed ? [txno] : [])]));
      txno += 1;
    }
  }, 300_000);

  it('8 workers of random transfers keep the total through crashes at every point, kills from outside, and recovery', async () => {
    const runs = [...MATRIX.map((m) => ({ point: m.point })), { killAfter: 25 }, { killAfter: 60 }];
    for (const [i, how] of runs.entries()) {
      const start = 10_000 * (i + 1);
      const run = await runTransfers({
        mapFile: cluster.mapFile,
        dir: cluster.dir,
        tenants: TENANTS,
        start,
        count: 400,
        workers: 8,
        armAfter: 20,
        ...how,
      });
      const label = JSON.stringify(how);
      expect(run.signal, `${label}: killed (${run.stderr})`).toBe('SIGKILL');
      expect(run.acked.length, label).toBeGreaterThanOrEqual(20);
      const report = await recoverTransactions(cluster.map, { waitMs: 5000 });
      expect(report.ok, `${label}: ${JSON.stringify(report)}`).toBe(true);
      const byTxno = await expectWhole(label);
      for (const n of run.acked) expect(byTxno.has(n), `${label}: acknowledged transfer ${n} committed`).toBe(true);
    }
  }, 300_000);

  it('exec --reference killed before or after its decision ends, after recover, on every shard or none', async () => {
    for (const [k, { point, committed }] of [MATRIX[1]!, MATRIX[2]!].entries()) {
      const id = 100 + k;
      const run = await runCli(
        ['-c', cluster.mapFile, 'exec', `INSERT INTO plans VALUES (${id}, 'p${id}', 1)`, '--reference', '--yes'],
        {
          env: { SHARDCTL_TEST_CRASH_AT: point },
        },
      );
      expect(run.code, `${point}: killed (${run.stderr})`).not.toBe(0);
      expect((await preparedGids(cluster)).length, point).toBe(2);
      const r = await runCli(['-c', cluster.mapFile, 'recover']);
      expect(r.code, r.stderr).toBe(0);
      for (let i = 0; i < 2; i++)
        expect(await cluster.sql(i, 'SELECT id FROM plans WHERE id = $1', [id]), `${point}: shard-${i}`).toEqual(
          committed ? [{ id: String(id) }] : [],
        );
      expect(await preparedGids(cluster)).toEqual([]);
    }
  }, 120_000);
});
