import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import {
  createRouter,
  isFenceError,
  type Router,
  moveTenant,
  movesOf,
  recoverTransactions,
  resumeMove,
} from '../../src/index.js';
import { olderSessions, preparedOnTables, xidHolders } from '../../src/move/waits.js';
import { ensureFenceTriggers } from '../../src/move/fence.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';
import { startOwnServers, type OwnServers } from '../harness/own-servers.js';
import { refusal } from '../harness/refusal.js';
import { runTransfers } from '../harness/tx-child.js';
import { applyTxSchema, balances, openAccounts, preparedGids, type TxDb } from '../harness/tx-fixture.js';

// modulo 2: even tenants on shard-0, odd on shard-1
const TENANTS = [2, 3, 4, 5];
let cluster: TestCluster;
/** Own servers: a prepared transaction held here would hold back other files' replication slots. */
let own: OwnServers | undefined;
// A router whose directory predates the first move and is never re-read: it routes tenant 2 to shard-0.
let stale: Router;
beforeAll(async () => {
  own = await startOwnServers(2);
  cluster = await createTestCluster({ shards: 2, reference: ['plans'], servers: own.urls });
  await applyTxSchema(cluster);
  await openAccounts(cluster, TENANTS, 1000);
  // Stale on purpose: no directory notices, and an hour's TTL.
  stale = await createRouter(cluster.map, { directoryTtlMs: 3_600_000, listen: false });
}, 180_000);
afterAll(async () => {
  await stale?.close();
  await cluster?.drop();
  await own?.stop();
});

async function total(): Promise<number> {
  return [...(await balances(cluster)).values()].reduce((a, b) => a + b, 0);
}

describe('distributed transactions and tenant moves', () => {
  it('a prepared transaction writing the moving tenant holds the fence wait, is named, and its write moves with the tenant after recover', async () => {
    // The fence triggers are in place (as after any earlier move from this shard): the move goes
    // straight to raising the fence and waiting for older writers.
    const admin = new pg.Client({ connectionString: cluster.urls[0] });
    await admin.connect();
    await ensureFenceTriggers(
      admin as never,
      ['public.accounts', 'public.transfer_log'].map((table) => ({ table, keyColumn: 'tenant_id' })),
      5000,
    ).finally(() => admin.end());
    // The coordinator dies after its decision: 2 -> 3 is committed by record, still prepared on both shards.
    const run = await runTransfers({
      mapFile: cluster.mapFile,
      dir: cluster.dir,
      tenants: [2, 3],
      start: 1,
      count: 1,
      workers: 1,
      point: 'tx:after-decision',
    });
    expect(run.signal).toBe('SIGKILL');
    const c = new pg.Client({ connectionString: cluster.urls[0] });
    await c.connect();
    const holders = await preparedOnTables(c as never, ['public.accounts']);
    // what a move's waits report each second: the prepared transaction, though it has no session
    const xid = (await c.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x;
    const older = await olderSessions(c as never, xid);
    const slotWait = await xidHolders(c as never, [], 0);
    await c.end();
    expect(older.filter((s) => s.gid).map((s) => [s.pid, s.state, s.terminate])).toEqual([
      [0, 'prepared', 'shardctl recover'],
    ]);
    expect(slotWait.some((s) => s.gid === holders[0]?.gid)).toBe(true);
    expect(holders.map((h) => [h.gid?.replace(/_\d+_/, '_N_'), h.state, h.terminate])).toEqual([
      ['shardctl_N_shard-0', 'prepared', 'shardctl recover'],
    ]);
    const e = await refusal(moveTenant(cluster.map, 2, 'shard-1', { mode: 'fenced', waitMs: 1000, cleanupGraceMs: 0 }));
    expect(e.code, e.message).toBe('OLD_TRANSACTIONS');
    expect((await balances(cluster)).get(2)).toBe(1000); // not yet visible anywhere
    const report = await recoverTransactions(cluster.map);
    expect(report.transactions.map((t) => t.action)).toEqual(['committed', 'committed']);
    const [m] = await movesOf(cluster.map, { tenant: '2' });
    const done = await resumeMove(cluster.map, m!.id, { waitMs: 5000, cleanupGraceMs: 0 });
    expect(done.move.state).toBe('done');
    const moved = await cluster.sql<{ b: string }>(1, 'SELECT balance AS b FROM accounts WHERE tenant_id = 2');
    const log = await cluster.sql<{ d: string }>(
      1,
      'SELECT delta AS d FROM transfer_log WHERE tenant_id = 2 AND txno = 1',
    );
    expect(
      log.map((r) => Math.abs(Number(r.d))),
      'transfer 1 moved with the tenant',
    ).toEqual([2]); // 1 + 1 % 7
    expect(moved).toEqual([{ b: String(1000 + Number(log[0]!.d)) }]);
    expect(await cluster.sql(0, 'SELECT * FROM accounts WHERE tenant_id = 2')).toEqual([]);
    expect(await total()).toBe(4000);
    expect(await preparedGids(cluster)).toEqual([]);
  }, 120_000);

  it('a write to a fenced tenant fails the whole distributed transaction before anything commits', async () => {
    // tenant 2 now lives on shard-1; shard-0 keeps its tombstone fence, where the stale router sends it.
    expect(stale.locate(2).shard).toBe('shard-0');
    const before = await balances(cluster);
    const e = await refusal(
      stale.transaction(async (tx) => {
        await tx
          .db<TxDb>(3)
          .updateTable('accounts')
          .set({ balance: sql`balance + 7` })
          .where('tenant_id', '=', '3')
          .execute();
        // The source rows are gone (cleanup ran), so an UPDATE there would match nothing: the insert of
        // the tenant's new row is what the tombstone fence refuses.
        await tx.db<TxDb>(2).insertInto('transfer_log').values({ tenant_id: '2', txno: 99, delta: '-7' }).execute();
      }),
    );
    expect(isFenceError(e)).toBe(true);
    expect(await balances(cluster)).toEqual(before);
  });

  it('transfers racing a move of one of their tenants commit before the switch or are refused by the fence, never written on the old shard after it', async () => {
    const router = await createRouter(cluster.map, { directoryTtlMs: 50, pool: { maxPerShard: 10 } });
    const acked: number[] = [];
    let refused = 0;
    let stop = false;
    let txno = 100;
    const transfer = async (a: number, b: number, n: number) =>
      router.transaction(async (tx) => {
        for (const [t, d] of [
          [a, -3],
          [b, 3],
        ].sort((x, y) => x[0]! - y[0]!) as [number, number][]) {
          const r = await tx
            .db<TxDb>(t)
            .updateTable('accounts')
            .set({ balance: sql`balance + ${d}` })
            .where('tenant_id', '=', String(t))
            .executeTakeFirst();
          // A stale route after the source rows are gone would match nothing: refuse, never half-apply.
          if (r.numUpdatedRows !== 1n) throw new Error(`tenant ${t}: ${r.numUpdatedRows} rows`);
          await tx
            .db<TxDb>(t)
            .insertInto('transfer_log')
            .values({ tenant_id: String(t), txno: n, delta: String(d) })
            .execute();
        }
      });
    const worker = async (w: number) => {
      while (!stop) {
        const n = txno++;
        const other = TENANTS[((n + w) % 3) + 1]!; // 3, 4 or 5: tenant 4 crosses shards with 3 and 5
        try {
          await transfer(4, other === 4 ? 5 : other, n);
          acked.push(n);
        } catch (e) {
          if (!isFenceError(e) && !/rows$/.test((e as Error).message)) throw e;
          refused++;
          await router.refresh();
        }
      }
    };
    const workers = Array.from({ length: 4 }, (_, w) => worker(w));
    await pollUntilMore(() => acked.length, 10);
    const moved = await moveTenant(cluster.map, 4, 'shard-1', { mode: 'fenced', waitMs: 10_000, cleanupGraceMs: 200 });
    // a few more transfers after the switch, through the refreshed directory
    const afterSwitch = acked.length;
    await pollUntilMore(() => acked.length, afterSwitch + 5);
    stop = true;
    await Promise.all(workers);
    await router.close();
    expect(moved.move.state).toBe('done');
    expect(await total()).toBe(4000);
    const logged = new Map<number, number>();
    for (let i = 0; i < 2; i++)
      for (const r of await cluster.sql<{ n: number }>(i, 'SELECT txno AS n FROM transfer_log WHERE txno >= 100'))
        logged.set(r.n, (logged.get(r.n) ?? 0) + 1);
    for (const n of acked) expect(logged.get(n), `transfer ${n} on both sides`).toBe(2);
    expect([...logged.keys()].sort((a, b) => a - b)).toEqual([...acked].sort((a, b) => a - b));
    expect(await cluster.sql(0, 'SELECT * FROM accounts WHERE tenant_id = 4')).toEqual([]);
    expect(await cluster.sql(0, 'SELECT * FROM transfer_log WHERE tenant_id = 4')).toEqual([]);
    expect(refused + acked.length).toBeGreaterThan(0);
  }, 120_000);
});

/** Waits until `count()` reaches `n` (transfers keep flowing after the move). */
async function pollUntilMore(count: () => number, n: number): Promise<void> {
  const { pollUntil } = await import('../../src/db/poll.js');
  await pollUntil(() => count() >= n, { timeoutMs: 30_000, intervalMs: 20, reason: `${n} acknowledged transfers` });
}
