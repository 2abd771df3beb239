// npm run bench -- verify [rows]
// 4 shards holding at least 2 million rows (default 2,400,000 across two tenant tables). Measures, in
// the same run, the wall time of verify's misplaced-rows check on all shards in parallel against the
// lower bound: a plain SELECT count(*) of the same tables on all shards in parallel. Target: <= 2x.
import pg from 'pg';
import { verifyCluster } from '../dist/index.js';
import { median, startBenchCluster } from './_cluster.mjs';

export default async function bench(args) {
  const total = Number(args[0] ?? 2_400_000);
  const shards = 4;
  const cluster = await startBenchCluster({ shards });
  try {
    const perShard = Math.ceil(total / shards);
    console.log(`loading ${total.toLocaleString('en-US')} rows into ${shards} shards...`);
    await Promise.all(
      cluster.urls.map(async (url, i) => {
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        await c.query(
          'CREATE TABLE events (tenant_id bigint NOT NULL, id bigint NOT NULL, kind text NOT NULL, at timestamptz NOT NULL, PRIMARY KEY (tenant_id, id))',
        );
        await c.query(
          'CREATE TABLE notes (tenant_id bigint NOT NULL, id bigint NOT NULL, body text, PRIMARY KEY (tenant_id, id))',
        );
        // tenant t lives on shard t % 4: 2,000 tenants per shard
        await c.query(
          `INSERT INTO events SELECT (g % 2000) * 4 + $1, g, 'k' || (g % 13), now() FROM generate_series(1, $2::int) g`,
          [i, Math.floor(perShard * 0.75)],
        );
        await c.query(
          `INSERT INTO notes SELECT (g % 2000) * 4 + $1, g, repeat('x', 40) FROM generate_series(1, $2::int) g`,
          [i, Math.ceil(perShard * 0.25)],
        );
        await c.query('VACUUM ANALYZE');
        await c.end();
      }),
    );
    const clients = await Promise.all(
      cluster.urls.map(async (url) => {
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        return c;
      }),
    );
    const countAll = async () => {
      const t0 = performance.now();
      await Promise.all(
        clients.map(async (c) => {
          await c.query('SELECT count(*) FROM events');
          await c.query('SELECT count(*) FROM notes');
        }),
      );
      return performance.now() - t0;
    };
    // The same lower bound as a one-shot command would pay it: connect, count, disconnect.
    const countFresh = async () => {
      const t0 = performance.now();
      await Promise.all(
        cluster.urls.map(async (url) => {
          const c = new pg.Client({ connectionString: url });
          await c.connect();
          await c.query('SELECT count(*) FROM events');
          await c.query('SELECT count(*) FROM notes');
          await c.end();
        }),
      );
      return performance.now() - t0;
    };
    const verifyMisplaced = async () => {
      const t0 = performance.now();
      const report = await verifyCluster(cluster.map, { only: ['misplaced-rows'] });
      const ms = performance.now() - t0;
      if (!report.ok) throw new Error(`unexpected findings: ${report.findings.map((f) => f.message).join('; ')}`);
      return ms;
    };
    await countAll();
    await verifyMisplaced();
    const base = [];
    const fresh = [];
    const ours = [];
    const all = [];
    for (let r = 0; r < 7; r++) {
      base.push(await countAll());
      fresh.push(await countFresh());
      ours.push(await verifyMisplaced());
      const t0 = performance.now();
      await verifyCluster(cluster.map);
      all.push(performance.now() - t0);
    }
    await Promise.all(clients.map((c) => c.end()));
    const b = median(base);
    const f = median(fresh);
    const o = median(ours);
    console.log(`rows: ${total.toLocaleString('en-US')} on ${shards} shards (medians of 7)`);
    console.log(
      `  (a) SELECT count(*) of the tenant tables, all shards in parallel, open connections: ${b.toFixed(0)} ms`,
    );
    console.log(`  (b) the same as a one-shot command (connect, count, disconnect):               ${f.toFixed(0)} ms`);
    console.log(
      `  (c) verifyCluster --only misplaced-rows (connect, read directory, check):        ${o.toFixed(0)} ms`,
    );
    console.log(`  ratio c/b ${(o / f).toFixed(2)}x (target <= 2x); c/a ${(o / b).toFixed(2)}x`);
    console.log(
      `  full verify (every check) for reference: ${median(all).toFixed(0)} ms (${(median(all) / f).toFixed(2)}x b)`,
    );
  } finally {
    await cluster.stop();
  }
}
