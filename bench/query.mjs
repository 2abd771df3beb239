// npm run bench -- query [rows]
// 4 shards holding at least 2 million rows. For count(*), a GROUP BY with sum and avg, ORDER BY ... LIMIT
// 100 and a full ordered export, measured in the same run against the lower bound: the same per-shard SQL
// fired at all shards in parallel with plain pg, rows drained and discarded. Reports the parser's start-up
// separately.
import pg from 'pg';
import { loadSqlTools, runQuery, streamQuery, createRouter } from '../dist/index.js';
import { median, startBenchCluster } from './_cluster.mjs';

const QUERIES = [
  ['count(*)', 'SELECT count(*) FROM events'],
  ['GROUP BY sum/avg', 'SELECT kind, sum(amount), avg(amount), count(*) FROM events GROUP BY kind ORDER BY kind'],
  ['ORDER BY LIMIT 100', 'SELECT tenant_id, id, amount FROM events ORDER BY amount DESC, tenant_id, id LIMIT 100'],
];

export default async function bench(args) {
  const total = Number(args[0] ?? 2_000_000);
  const cluster = await startBenchCluster({ shards: 4 });
  try {
    const clients = await Promise.all(
      cluster.urls.map(async (u) => {
        const c = new pg.Client({ connectionString: u });
        await c.connect();
        return c;
      }),
    );
    console.log(`loading ${total.toLocaleString('en-US')} rows...`);
    await Promise.all(
      clients.map(async (c, i) => {
        await c.query(
          'CREATE TABLE events (tenant_id bigint NOT NULL, id bigint NOT NULL, kind text NOT NULL, amount numeric(12, 2) NOT NULL, PRIMARY KEY (tenant_id, id))',
        );
        await c.query(
          `INSERT INTO events SELECT (g % 1000) * 4 + $1, g, 'k' || (g % 17), (g % 100000) / 100.0 FROM generate_series(1, $2::int) g`,
          [i, total / 4],
        );
        await c.query('VACUUM ANALYZE events');
      }),
    );
    let t0 = performance.now();
    await loadSqlTools();
    const parserMs = performance.now() - t0;
    const router = await createRouter(cluster.map, { pool: { maxPerShard: 2 } });
    const raw = new pg.Client({ connectionString: cluster.urls[0] });
    await raw.connect();
    const types = { getTypeParser: () => (v) => v };
    console.log(`parser start-up (WebAssembly, once per process): ${parserMs.toFixed(0)} ms`);
    for (const [label, sql] of QUERIES) {
      const plan = (await runQuery(cluster.map, sql, [], { router, explain: true })).plan;
      const lower = async () => {
        const s = performance.now();
        await Promise.all(
          clients.map((c) => c.query({ text: plan.shardSql, values: plan.params, rowMode: 'array', types })),
        );
        return performance.now() - s;
      };
      const ours = async () => {
        const s = performance.now();
        await runQuery(cluster.map, sql, [], { router });
        return performance.now() - s;
      };
      await lower();
      await ours();
      const a = [];
      const b = [];
      for (let r = 0; r < 5; r++) {
        a.push(await lower());
        b.push(await ours());
      }
      console.log(
        `${label.padEnd(20)} lower bound ${median(a).toFixed(1)} ms, shardctl ${median(b).toFixed(1)} ms -> ${(median(b) / median(a)).toFixed(2)}x (target <= 1.2x + parser start-up)`,
      );
    }
    // Full ordered export, streamed (as `shardctl query --format ndjson` does): rows/s and peak RSS.
    const rssBefore = process.memoryUsage().rss;
    let peak = rssBefore;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    t0 = performance.now();
    let exported = 0;
    const stream = await streamQuery(
      cluster.map,
      'SELECT tenant_id, id, amount FROM events ORDER BY tenant_id, id',
      [],
      { router },
    );
    for await (const batch of stream.batches) exported += batch.length;
    const s = (performance.now() - t0) / 1000;
    clearInterval(timer);
    const lowerStart = performance.now();
    await Promise.all(
      clients.map((c) => c.query({ text: stream.plan.shardSql, values: stream.plan.params, rowMode: 'array', types })),
    );
    const lowerS = (performance.now() - lowerStart) / 1000;
    console.log(
      `full ordered export (streamed k-way merge): ${exported.toLocaleString('en-US')} rows in ${s.toFixed(2)} s -> ${(exported / s).toFixed(0)} rows/s (target >= 300,000); lower bound (all shards drained in parallel) ${lowerS.toFixed(2)} s; peak RSS ${(peak / 1e6).toFixed(0)} MB (target < 200 MB)`,
    );
    await raw.end();
    await router.close();
    for (const c of clients) await c.end();
  } finally {
    await cluster.stop();
  }
}
