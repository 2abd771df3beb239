// npm run bench -- query [rows]
// 4 shards holding `rows` rows (default 4 million). For count(*), a GROUP BY with sum and avg, ORDER BY
// ... LIMIT 100, a co-located sub-query, a global window and a non-co-located join, measured in the same
// run against the lower bound: the same per-shard SQL fired at all shards in parallel with plain pg, rows
// drained and discarded (a query this build refuses prints `refused: <construct>`). Then the full
// ordered export of half and all the rows, each in a child process of its own (peak RSS is the
// export's), against the raw drain. Reports the parser's start-up separately.
import { spawn } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { loadSqlTools, runQuery, createRouter } from '../dist/index.js';
import { median, startBenchCluster } from './_cluster.mjs';

const QUERIES = [
  ['count(*)', 'SELECT count(*) FROM events'],
  ['GROUP BY sum/avg', 'SELECT kind, sum(amount), avg(amount), count(*) FROM events GROUP BY kind ORDER BY kind'],
  ['ORDER BY LIMIT 100', 'SELECT tenant_id, id, amount FROM events ORDER BY amount DESC, tenant_id, id LIMIT 100'],
  [
    'co-located sub-query',
    'SELECT count(*) AS tenants, avg(n) AS per_tenant FROM (SELECT tenant_id, count(*) AS n FROM events GROUP BY tenant_id) t',
  ],
  [
    'global window',
    'SELECT tenant_id, id, amount, rank() OVER (ORDER BY amount DESC, tenant_id, id) AS r FROM events ORDER BY r LIMIT 100',
  ],
  [
    'non-co-located join',
    'SELECT t.label, count(*) AS n FROM events e JOIN tags t ON t.kind = e.kind GROUP BY t.label ORDER BY 1',
  ],
];

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

/** The planner's refusal of a query this build does not answer, or undefined. */
async function refusal(map, sql, router) {
  try {
    await runQuery(map, sql, [], { router, explain: true });
    return undefined;
  } catch (e) {
    if (e.code === 'REFUSED') return e.message;
    throw e;
  }
}

// A child process streaming the ordered export and discarding it; prints rows, seconds and its peak RSS.
const EXPORT_CHILD = `
import { loadShardMap, streamQuery } from ${JSON.stringify(path.join(root, 'dist', 'index.js'))};
const [mapFile, sql] = process.argv.slice(1);
const map = await loadShardMap(mapFile);
const t0 = performance.now();
let rows = 0;
const s = await streamQuery(map, sql, []);
for await (const b of s.batches) rows += b.length;
console.log(JSON.stringify({ rows, s: (performance.now() - t0) / 1000, maxRssMb: process.resourceUsage().maxRSS / 1024 }));`;

function exportInChild(mapFile, sql) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', EXPORT_CHILD, mapFile, sql], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`export child exited ${code}`))));
  });
}

export default async function bench(args) {
  const total = Number(args[0] ?? 4_000_000);
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
        await c.query('CREATE TABLE tags (tenant_id bigint NOT NULL, kind text NOT NULL, label text NOT NULL)');
        // 17 kinds spread over the shards: a join on kind needs rows from other shards
        await c.query(
          "INSERT INTO tags SELECT g * 4 + $1, 'k' || g, 'label ' || (g % 5) FROM generate_series(0, 16) g WHERE g % 4 = $1",
          [i],
        );
        await c.query('VACUUM ANALYZE');
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
      const refused = await refusal(cluster.map, sql, router);
      if (refused) {
        console.log(`${label.padEnd(20)} refused: ${refused.replace(/^refused: /, '')}`);
        continue;
      }
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
    // Full ordered export, streamed (as `shardctl query --format ndjson` does), half and all the rows,
    // each in a child process of its own: rows/s and peak RSS against all shards drained in parallel.
    for (const n of [Math.floor(total / 2), total]) {
      const sql = `SELECT tenant_id, id, amount FROM events WHERE id <= ${Math.floor(n / 4)} ORDER BY tenant_id, id`;
      const plan = (await runQuery(cluster.map, sql, [], { router, explain: true })).plan;
      const e = await exportInChild(cluster.mapFile, sql);
      const lowerStart = performance.now();
      await Promise.all(
        clients.map((c) => c.query({ text: plan.shardSql, values: plan.params, rowMode: 'array', types })),
      );
      const lowerS = (performance.now() - lowerStart) / 1000;
      console.log(
        `full ordered export of ${e.rows.toLocaleString('en-US')} rows (streamed k-way merge, own process): ${e.s.toFixed(2)} s -> ${(e.rows / e.s).toFixed(0)} rows/s, ${(lowerS / e.s).toFixed(2)}x the raw drain (${lowerS.toFixed(2)} s; target >= 0.95x); peak RSS ${e.maxRssMb.toFixed(0)} MB (target < 150 MB whatever the row count)`,
      );
    }
    await raw.end();
    await router.close();
    for (const c of clients) await c.end();
  } finally {
    await cluster.stop();
  }
}
