// npm run bench -- transactions [seconds per run]
// Two shards. A transfer between a tenant on shard-0 and one on shard-1 through router.transaction
// (two-phase commit: PREPARE on both, the decision record, COMMIT PREPARED on both) against the
// baseline of the same two updates as two independent single-shard transactions, with 1 and 16
// concurrent workers, measured in the same run: latency p50/p99 and throughput.
// Targets: two-phase p50 within 3x of the baseline's; throughput at 16 workers at least 0.4x.
import { sql } from 'kysely';
import { createRouter } from '../dist/index.js';
import { startBenchCluster } from './_cluster.mjs';

const ACCOUNTS = 500; // per shard

function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

const debit = (db, t, amount) =>
  db
    .updateTable('accounts')
    .set({ balance: sql`balance - ${amount}` })
    .where('tenant_id', '=', t)
    .execute();
const credit = (db, t, amount) =>
  db
    .updateTable('accounts')
    .set({ balance: sql`balance + ${amount}` })
    .where('tenant_id', '=', t)
    .execute();

/** One transfer: tenant 2i on shard-0 pays tenant 2j+1 on shard-1. */
function pick() {
  return [2 * Math.floor(Math.random() * ACCOUNTS), 2 * Math.floor(Math.random() * ACCOUNTS) + 1];
}

const MODES = {
  independent: (router) => async () => {
    const [a, b] = pick();
    await router
      .db(a)
      .transaction()
      .execute((trx) => debit(trx, a, 1));
    await router
      .db(b)
      .transaction()
      .execute((trx) => credit(trx, b, 1));
  },
  'two-phase': (router) => async () => {
    const [a, b] = pick();
    await router.transaction(async (tx) => {
      await debit(tx.db(a), a, 1);
      await credit(tx.db(b), b, 1);
    });
  },
};

async function measure(op, workers, seconds) {
  const latencies = [];
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        await op();
        latencies.push(performance.now() - s);
      }
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  return {
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    tps: latencies.length / wall,
    n: latencies.length,
  };
}

export default async function bench(args) {
  const seconds = Number(args[0] ?? 5);
  const cluster = await startBenchCluster({ shards: 2 });
  try {
    const router = await createRouter(cluster.map, { pool: { maxPerShard: 20 } });
    for (const [i, s] of cluster.map.shards.entries()) {
      const db = router.shard(s.name);
      await sql`CREATE TABLE accounts (tenant_id bigint PRIMARY KEY, balance bigint NOT NULL)`.execute(db);
      await sql`INSERT INTO accounts SELECT 2 * g + ${i}, 1000000 FROM generate_series(0, ${ACCOUNTS - 1}) g`.execute(
        db,
      );
    }
    const total = async () => {
      let t = 0n;
      for (const s of cluster.map.shards)
        for (const r of (await sql`SELECT sum(balance)::text AS s FROM accounts`.execute(router.shard(s.name))).rows)
          t += BigInt(r.s);
      return t;
    };
    const before = await total();
    // warm up both paths (connections, catalog schema)
    for (const m of Object.values(MODES)) await measure(m(router), 4, 0.5);
    const rows = [];
    for (const workers of [1, 16]) {
      const base = await measure(MODES.independent(router), workers, seconds);
      const twoPhase = await measure(MODES['two-phase'](router), workers, seconds);
      rows.push({ workers, base, twoPhase });
    }
    if ((await total()) !== before) throw new Error('the total changed: a transfer was applied on one side only');
    await router.close();
    console.log(`transfers between two shards, ${seconds} s per run (same run, same servers)`);
    console.log('workers | mode        |   p50 ms |   p99 ms |   tx/s | p50 ratio | tx/s ratio');
    for (const { workers, base, twoPhase } of rows) {
      const line = (name, r, ratios) =>
        console.log(
          `${String(workers).padStart(7)} | ${name.padEnd(11)} | ${r.p50.toFixed(2).padStart(8)} | ${r.p99.toFixed(2).padStart(8)} | ${r.tps.toFixed(0).padStart(6)} | ${ratios}`,
        );
      line('independent', base, '  baseline');
      line(
        'two-phase',
        twoPhase,
        `${(twoPhase.p50 / base.p50).toFixed(2).padStart(8)}x | ${(twoPhase.tps / base.tps).toFixed(2)}x`,
      );
    }
    const r16 = rows.find((r) => r.workers === 16);
    const p50ok = rows.every((r) => r.twoPhase.p50 <= 3 * r.base.p50);
    const tpsOk = r16.twoPhase.tps >= 0.4 * r16.base.tps;
    console.log(
      `target p50 within 3x: ${p50ok ? 'met' : 'NOT met'}; throughput at 16 workers >= 0.4x: ${tpsOk ? 'met' : 'NOT met'}`,
    );
  } finally {
    await cluster.stop();
  }
}
