import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRouter, execEverywhere, recoverTransactions, type Router } from '../../src/index.js';
import { noPreparedTransactions, createTestCluster, type TestCluster } from '../harness/cluster.js';
import { refusal } from '../harness/refusal.js';
import { runCli } from '../harness/run-cli.js';
import { applyTxSchema, balances, openAccounts, preparedGids, type TxDb } from '../harness/tx-fixture.js';

/** External-server mode only: a server with max_prepared_transactions = 0 cannot commit across shards. */
const NO_2PC = await noPreparedTransactions();
if (NO_2PC) console.warn(`${import.meta.filename}: transactions across shards skipped: ${NO_2PC}`);

let cluster: TestCluster;
let router: Router;
// modulo over 3 shards: tenant % 3
const A = 3; // shard-0
const B = 4; // shard-1
const C = 5; // shard-2
beforeAll(async () => {
  cluster = await createTestCluster({ shards: 3, reference: ['plans'] });
  await applyTxSchema(cluster);
  await openAccounts(cluster, [A, B, C], 100);
  router = await createRouter(cluster.map, { pool: { maxPerShard: 8 } });
});
afterAll(async () => {
  await router?.close();
  await cluster.drop();
});

async function transfer(from: number, to: number, amount: number, after?: () => Promise<void>) {
  return router.transaction(async (tx) => {
    await tx
      .db<TxDb>(from)
      .updateTable('accounts')
      .set({ balance: sql`balance - ${amount}` })
      .where('tenant_id', '=', String(from))
      .execute();
    await tx
      .db<TxDb>(to)
      .updateTable('accounts')
      .set({ balance: sql`balance + ${amount}` })
      .where('tenant_id', '=', String(to))
      .execute();
    await after?.();
    return tx.participants;
  });
}

describe.skipIf(Boolean(NO_2PC))('router.transaction', () => {
  it('commits a transfer across two shards with two-phase commit and prunes its decision record', async () => {
    const parts = await transfer(A, B, 10);
    expect(parts).toEqual(['shard-0', 'shard-1']);
    const b = await balances(cluster);
    expect([b.get(A), b.get(B), b.get(C)]).toEqual([90, 110, 100]);
    expect(await preparedGids(cluster)).toEqual([]);
    // The finished transaction's record goes with the next decision (same round trip), the last on close.
    const [first] = await cluster.sql<{ id: string }>(0, 'SELECT id FROM shardctl.tx_decisions');
    expect(first).toBeDefined();
    await transfer(B, A, 10);
    const second = await cluster.sql<{ id: string }>(0, 'SELECT id FROM shardctl.tx_decisions');
    expect(second.map((r) => r.id)).not.toContain(first!.id);
    expect(second).toHaveLength(1);
    const other = await createRouter(cluster.map);
    await other.transaction((tx) =>
      Promise.all([A, B].map((t) => tx.db<TxDb>(t).selectFrom('accounts').select('balance').execute())),
    );
    await other.close();
    const after = await cluster.sql<{ id: string }>(0, 'SELECT id FROM shardctl.tx_decisions');
    expect(after).toEqual(second);
    await transfer(A, B, 10);
  });

  it('commits a single-shard transaction without preparing anything', async () => {
    const before = (await cluster.sql<{ n: string }>(0, 'SELECT count(*) AS n FROM shardctl.tx_decisions'))[0]!.n;
    const parts = await router.transaction(async (tx) => {
      await tx
        .db<TxDb>(A)
        .insertInto('transfer_log')
        .values({ tenant_id: String(A), txno: 1, delta: '0' })
        .execute();
      return tx.participants;
    });
    expect(parts).toEqual(['shard-0']);
    expect(await cluster.sql(0, 'SELECT txno FROM transfer_log WHERE tenant_id = $1', [A])).toEqual([{ txno: 1 }]);
    const after = (await cluster.sql<{ n: string }>(0, 'SELECT count(*) AS n FROM shardctl.tx_decisions'))[0]!.n;
    expect(after).toBe(before);
    expect(
      await cluster.sql(
        0,
        "SELECT * FROM pg_stat_activity WHERE application_name = 'shardctl 2pc' AND state LIKE 'idle in%'",
      ),
    ).toEqual([]);
  });

  it('rolls every shard back when the function throws after writing two shards', async () => {
    const e = await refusal(
      transfer(A, B, 50, async () => {
        throw new Error('app says no');
      }),
    );
    expect(e.message).toBe('app says no');
    const b = await balances(cluster);
    expect([b.get(A), b.get(B)]).toEqual([90, 110]);
  });

  it('rolls every shard back when a PREPARE fails (a deferred constraint fails at PREPARE on one shard)', async () => {
    await cluster.sql(2, 'CREATE TABLE guard (id int, CONSTRAINT once UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)');
    const e = await refusal(
      router.transaction(async (tx) => {
        await tx
          .db<TxDb>(A)
          .updateTable('accounts')
          .set({ balance: sql`balance - 1` })
          .where('tenant_id', '=', String(A))
          .execute();
        // Two equal keys under a deferred unique constraint: accepted now, refused at PREPARE on shard-2.
        await sql`INSERT INTO guard VALUES (1), (1)`.execute(tx.shard('shard-2'));
      }),
    );
    expect(e.message).toMatch(/shard-2.*PREPARE TRANSACTION failed.*duplicate key/);
    const b = await balances(cluster);
    expect(b.get(A)).toBe(90);
    expect(await cluster.sql(2, 'SELECT * FROM guard')).toEqual([]);
    expect(await preparedGids(cluster)).toEqual([]);
  });

  it('refuses to commit a transaction whose statement failed inside (error caught by the app): nothing commits', async () => {
    const e = await refusal(
      router.transaction(async (tx) => {
        await tx
          .db<TxDb>(B)
          .updateTable('accounts')
          .set({ balance: sql`balance + 1000` })
          .where('tenant_id', '=', String(B))
          .execute();
        await sql`SELECT 1/0`.execute(tx.db(A)).catch(() => undefined);
      }),
    );
    expect(e.code).toBe('TX_ABORTED');
    expect(e.message).toMatch(/shard-0/);
    const b = await balances(cluster);
    expect(b.get(B)).toBe(110);
  });

  it('writes a reference table on every shard through tx.reference(), refusing a write whose counts differ', async () => {
    await router.transaction(async (tx) => {
      const r = await tx
        .reference<TxDb>()
        .updateTable('plans')
        .set({ price: '14.00' })
        .where('name', '=', 'team')
        .executeTakeFirst();
      expect(r.numUpdatedRows).toBe(1n);
    });
    for (let i = 0; i < 3; i++)
      expect(await cluster.sql(i, "SELECT price FROM plans WHERE name = 'team'"), `shard-${i}`).toEqual([
        { price: '14.00' },
      ]);
    await cluster.sql(1, "DELETE FROM plans WHERE name = 'pro'");
    const e = await refusal(
      router.transaction((tx) => tx.reference<TxDb>().updateTable('plans').set({ price: '1.00' }).execute()),
    );
    expect(e.code).toBe('REFERENCE_DIVERGED');
    expect(e.message).toMatch(/shard-1: 2/);
    expect(await cluster.sql(0, "SELECT price FROM plans WHERE name = 'free'")).toEqual([{ price: '0.00' }]);
    await cluster.sql(1, "INSERT INTO plans VALUES (3, 'pro', 49.99)");
  });

  it('exec --reference commits one statement on every shard; a dry run reports counts and changes nothing', async () => {
    const dry = await execEverywhere(cluster.map, "UPDATE plans SET price = price + 1 WHERE name <> 'free'", {
      mode: 'reference',
      dryRun: true,
    });
    expect(dry.committed).toBe(false);
    expect(dry.shards.map((s) => s.rows)).toEqual([2, 2, 2]);
    expect(await cluster.sql(2, "SELECT price FROM plans WHERE name = 'pro'")).toEqual([{ price: '49.99' }]);
    const r = await execEverywhere(cluster.map, "INSERT INTO plans VALUES (4, 'enterprise', 199)", {
      mode: 'reference',
    });
    expect(r.committed).toBe(true);
    expect(r.transactionId).toMatch(/^\d+$/);
    for (let i = 0; i < 3; i++)
      expect(await cluster.sql(i, 'SELECT name FROM plans WHERE id = 4'), `shard-${i}`).toEqual([
        { name: 'enterprise' },
      ]);
  });

  it('recover finds nothing to do after committed and rolled-back transactions', async () => {
    const r = await recoverTransactions(cluster.map);
    expect(r.ok).toBe(true);
    expect(r.transactions).toEqual([]);
  });

  it('closing the router deletes the decision records it had left for its next transaction', async () => {
    await transfer(A, B, 1);
    await transfer(B, A, 1);
    expect((await cluster.sql(0, 'SELECT id FROM shardctl.tx_decisions')).length).toBeGreaterThan(0);
    await router.close();
    expect(await cluster.sql(0, 'SELECT id FROM shardctl.tx_decisions')).toEqual([]);
    router = await createRouter(cluster.map, { pool: { maxPerShard: 8 } });
  });
});

describe.skipIf(Boolean(NO_2PC))('shardctl exec and recover on the command line', () => {
  it('exec needs one of --reference and --all-shards, confirmation or --yes, and prints counts per shard', async () => {
    const neither = await runCli(['-c', cluster.mapFile, 'exec', 'DELETE FROM plans']);
    expect(neither.code).toBe(2);
    expect(neither.stderr).toMatch(/exactly one of --reference and --all-shards/);
    const unconfirmed = await runCli([
      '-c',
      cluster.mapFile,
      'exec',
      "DELETE FROM plans WHERE name = 'free'",
      '--reference',
    ]);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toMatch(/pass --yes/);
    const dry = await runCli([
      '-c',
      cluster.mapFile,
      'exec',
      "DELETE FROM plans WHERE name = 'free'",
      '--reference',
      '--dry-run',
    ]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/shard-2\s*│\s*1/);
    expect(dry.stdout).toMatch(/dry run: rolled back on 3 shard\(s\)/);
    const run = await runCli([
      '-c',
      cluster.mapFile,
      'exec',
      'UPDATE accounts SET balance = balance + $1::bigint WHERE tenant_id = $2::bigint',
      '--all-shards',
      '-p',
      '5',
      String(C),
      '--yes',
      '--json',
    ]);
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as { shards: { shard: string; rows: number }[]; committed: boolean };
    expect(report.committed).toBe(true);
    expect(report.shards).toEqual([
      { shard: 'shard-0', rows: 0 },
      { shard: 'shard-1', rows: 0 },
      { shard: 'shard-2', rows: 1 },
    ]);
    const refused = await runCli([
      '-c',
      cluster.mapFile,
      'exec',
      `UPDATE accounts SET balance = balance + 1 WHERE tenant_id = ${C}`,
      '--reference',
      '--yes',
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/different row counts/);
    const recover = await runCli(['-c', cluster.mapFile, 'recover']);
    expect(recover.code, recover.stderr).toBe(0);
    expect(recover.stdout).toMatch(/recover: 0 prepared transaction\(s\)/);
  }, 60_000);
});
