import path from 'node:path';
import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { checkShards, createRouter, loadShardMap, verifyCluster, type ShardMap } from '../../src/index.js';
import { initServer, serverUrl, startServer, stopServer } from '../../src/dev/embedded-server.js';
import { pollUntil } from '../../src/db/poll.js';
import { noPreparedTransactions, createTestCluster, testTempDir, type TestCluster } from '../harness/cluster.js';
import { refusal } from '../harness/refusal.js';
import { runCli } from '../harness/run-cli.js';
import { runTransfers } from '../harness/tx-child.js';
import { applyTxSchema, balances, openAccounts, preparedGids, type TxDb } from '../harness/tx-fixture.js';

/** External-server mode only: a server with max_prepared_transactions = 0 cannot commit across shards. */
const NO_2PC = await noPreparedTransactions();
if (NO_2PC) console.warn(`${import.meta.filename}: transactions across shards skipped: ${NO_2PC}`);

let cluster: TestCluster;
beforeAll(async () => {
  cluster = await createTestCluster({ shards: 3, reference: ['plans'] });
  await applyTxSchema(cluster);
  await openAccounts(cluster, [3, 4, 5], 100);
});
afterAll(() => cluster.drop());

const planRows = (i: number) => cluster.sql(i, 'SELECT id, name, price FROM plans ORDER BY id');

describe.skipIf(Boolean(NO_2PC))('reference tables and in-doubt transactions in verify', () => {
  it('finds reference-table drift naming the odd shard, and --fix --from copies the table in one two-phase commit', async () => {
    expect((await verifyCluster(cluster.map, { only: ['reference'] })).findings).toEqual([]);
    await cluster.sql(2, "UPDATE plans SET price = 99 WHERE name = 'team'; INSERT INTO plans VALUES (9, 'stray', 1)");
    const report = await verifyCluster(cluster.map, { only: ['reference'] });
    expect(report.findings.map((f) => [f.kind, f.shard, f.table])).toEqual([['reference-drift', 'shard-2', 'plans']]);
    expect(report.findings[0]!.message).toMatch(/shard-2 \(4 rows.*other shards \(3 rows.*--fix --from shard-0/);
    const noFrom = await runCli(['-c', cluster.mapFile, 'verify', '--only', 'reference', '--fix', '--yes']);
    expect(noFrom.code).toBe(1);
    expect(noFrom.stderr).toMatch(/--fix --from SHARD/);
    expect(await planRows(2)).toHaveLength(4);
    const fix = await runCli([
      '-c',
      cluster.mapFile,
      'verify',
      '--only',
      'reference',
      '--fix',
      '--from',
      'shard-0',
      '--yes',
    ]);
    expect(fix.stderr).toMatch(/copied plans \(3 rows\) from shard-0: shard-1 0 changed, shard-2 2 changed/);
    const expected = await planRows(0);
    expect(await planRows(1)).toEqual(expected);
    expect(await planRows(2)).toEqual(expected);
    expect((await verifyCluster(cluster.map, { only: ['reference'] })).findings).toEqual([]);
    expect(await preparedGids(cluster)).toEqual([]);
  }, 60_000);

  it('verify reports an in-doubt prepared transaction with its age and decision; shards --check counts it', async () => {
    const run = await runTransfers({
      mapFile: cluster.mapFile,
      dir: cluster.dir,
      tenants: [3, 4],
      start: 1,
      count: 1,
      workers: 1,
      point: 'tx:after-decision',
    });
    expect(run.signal).toBe('SIGKILL');
    const report = await verifyCluster(cluster.map, { only: ['transactions'], inDoubtAfterMs: 0 });
    expect(report.findings.map((f) => [f.kind, f.shard])).toEqual([
      ['in-doubt-transaction', 'shard-0'],
      ['in-doubt-transaction', 'shard-1'],
    ]);
    expect(report.findings[0]!.message).toMatch(
      /^prepared transaction shardctl_\d+_shard-0 in doubt for [\d.]+ s, decision: commit/,
    );
    expect((report.findings[0]!.details as { ageSeconds: number }).ageSeconds).toBeGreaterThanOrEqual(0);
    // the default threshold leaves a just-prepared transaction to its coordinator
    const health = await checkShards(cluster.map);
    expect(health.map((h) => (h.status === 'ok' ? h.value.preparedTransactions : -1))).toEqual([1, 1, 0]);
    const cli = await runCli(['-c', cluster.mapFile, 'shards', '--check']);
    expect(cli.stdout).toMatch(/prepared transactions shard-0: 1 in doubt/);
  }, 60_000);

  it('a router with background recovery finishes what a dead coordinator left', async () => {
    expect((await preparedGids(cluster)).length).toBe(2);
    const reports: number[] = [];
    const router = await createRouter(cluster.map, {
      recovery: { intervalMs: 50, minAgeMs: 0, onReport: (r) => reports.push(r.transactions.length) },
    });
    await pollUntil(async () => (await preparedGids(cluster)).length === 0, {
      timeoutMs: 30_000,
      reason: 'background recovery',
    });
    await router.close();
    expect(reports.some((n) => n === 2)).toBe(true);
    const b = await balances(cluster);
    expect((b.get(3) ?? 0) + (b.get(4) ?? 0)).toBe(200);
    expect(b.get(3)).not.toBe(100);
  }, 60_000);
});

// Its own server lacks prepared transactions; an external server without them (NO_2PC) is a second such
// participant, and either may be the one the refusal names.
describe('a participant without prepared transactions', () => {
  let dir: string;
  let map: ShardMap;
  let mapFile: string;
  beforeAll(async () => {
    dir = path.join(await testTempDir('shardctl-no2pc-'), 'pg');
    const info = await initServer(dir, {
      port: await freePort(),
      fast: true,
      settings: ['max_prepared_transactions = 0'],
    });
    await startServer(dir);
    const yaml = `version: 1
shardKey: { column: tenant_id, type: bigint }
placement:
  strategy: modulo
shards:
  - name: shard-0
    url: ${cluster.urls[0]}
  - name: shard-1
    url: ${serverUrl(info, 'postgres')}
`;
    mapFile = path.join(path.dirname(dir), 'shards.yaml');
    await writeFile(mapFile, yaml);
    map = await loadShardMap(mapFile);
    const { default: pg } = await import('pg');
    const c = new pg.Client({ connectionString: serverUrl(info, 'postgres') });
    await c.connect();
    await c.query(
      'CREATE TABLE IF NOT EXISTS accounts (tenant_id bigint PRIMARY KEY, balance bigint NOT NULL); INSERT INTO accounts VALUES (1, 100)',
    );
    await c.end();
  }, 120_000);
  afterAll(() => stopServer(dir));

  it('refuses a transaction across shards with a clear error, and nothing commits', async () => {
    const router = await createRouter(map);
    const before = await cluster.sql(0, 'SELECT balance FROM accounts WHERE tenant_id = 3');
    const e = await refusal(
      router.transaction(async (tx) => {
        await tx
          .shard<TxDb>('shard-0')
          .updateTable('accounts')
          .set({ balance: '0' })
          .where('tenant_id', '=', '3')
          .execute();
        await tx
          .shard<TxDb>('shard-1')
          .updateTable('accounts')
          .set({ balance: '0' })
          .where('tenant_id', '=', '1')
          .execute();
      }),
    );
    await router.close();
    expect(e.code).toBe('PREPARED_DISABLED');
    expect(e.message).toMatch(
      new RegExp(
        `^shard shard-${NO_2PC ? '[01]' : '1'} cannot take part in a transaction across shards: max_prepared_transactions is 0 there$`,
      ),
    );
    expect(e.hint).toMatch(/set max_prepared_transactions/);
    expect(await cluster.sql(0, 'SELECT balance FROM accounts WHERE tenant_id = 3')).toEqual(before);
    expect(before).not.toEqual([{ balance: '0' }]);
    const check = await runCli(['-c', mapFile, 'shards', '--check']);
    expect(check.stdout).toMatch(/shard-1: max_prepared_transactions = 0/);
  }, 60_000);
});

describe('a participant that cannot be reached', () => {
  it('fails the whole transaction even when the app catches the connect error', async () => {
    const dir = await testTempDir('shardctl-down-');
    const mapFile = path.join(dir, 'shards.yaml');
    await writeFile(
      mapFile,
      `version: 1
shardKey: { column: tenant_id, type: bigint }
placement:
  strategy: modulo
shards:
  - name: shard-0
    url: ${cluster.urls[0]}
  - name: shard-1
    url: postgres://postgres:x@127.0.0.1:${await freePort()}/none
`,
    );
    const router = await createRouter(await loadShardMap(mapFile), { pool: { connectTimeoutMs: 2000 } });
    const before = await cluster.sql(0, 'SELECT balance FROM accounts WHERE tenant_id = 3');
    const e = await refusal(
      router.transaction(async (tx) => {
        await tx
          .shard<TxDb>('shard-0')
          .updateTable('accounts')
          .set({ balance: '1' })
          .where('tenant_id', '=', '3')
          .execute();
        await tx
          .shard<TxDb>('shard-1')
          .selectFrom('accounts')
          .selectAll()
          .execute()
          .catch(() => undefined);
      }),
    );
    await router.close();
    expect(e.code).toBe('TX_ABORTED');
    expect(e.message).toMatch(/^shard shard-1: /);
    expect(await cluster.sql(0, 'SELECT balance FROM accounts WHERE tenant_id = 3')).toEqual(before);
  }, 60_000);
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}
