// npm run bench -- query-cli [rows] [--no-16]
// `shardctl query` as users run it: the whole CLI process (bin/shardctl, built), against
//  (a) the bound: the same per-shard SQL sent to every shard in parallel by psql (one process per
//      shard; without /usr/bin/psql, plain pg in a fresh node process per shard, and it says so), and
//  (b) postgres_fdw: a coordinator database on shard-0's server whose `events` is a table partitioned
//      by hash into foreign tables, one per shard (async foreign scans, partition-wise aggregates on:
//      what a PostgreSQL user would set up instead).
// Every figure is the median of 3 runs, the alternatives interleaved, on PostgreSQL 15 servers, and
// is printed as a ratio against the bound measured in the same run. Then the fixed cost: a trivial
// cross-shard query against `node -e 0` and a node process making one round trip, at 4 and 16 shards
// (added ms per added shard). shardctl's CPU time (user + sys) and peak RSS come from /usr/bin/time:
// CPU is what a loaded machine distorts least. Then the export's peak RSS at a quarter, half and all
// the rows (`query-cli 4000000` shows 1, 2 and 4 million). Default: 1,000,000 rows on 4 shards.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { median, startBenchCluster } from './_cluster.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const BIN = path.join(root, 'bin', 'shardctl');
const PSQL = '/usr/bin/psql';
const MAJOR = 15;

/** Wall time of a child process (ms), stdout to /dev/null; throws on a non-zero exit. */
function timed(cmd, args, env = {}) {
  return new Promise((resolve, reject) => {
    const out = openSync('/dev/null', 'w');
    const start = performance.now();
    const p = spawn(cmd, args, { stdio: ['ignore', out, 'pipe'], env: { ...process.env, ...env } });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => {
      closeSync(out);
      const ms = performance.now() - start;
      if (code === 0) resolve(ms);
      else reject(new Error(`${path.basename(cmd)} ${args.slice(-1)[0]} exited ${code}: ${err.trim()}`));
    });
  });
}

const TIME = '/usr/bin/time';

/**
 * A child's wall time (ms), CPU time (user + sys, ms: what the machine's load does not inflate much)
 * and peak RSS (MB), through /usr/bin/time (CPU and RSS are null without it).
 */
async function measured(cmd, args) {
  if (!existsSync(TIME)) return { ms: await timed(cmd, args), cpuMs: null, rssMb: null };
  const file = path.join(os.tmpdir(), `shardctl-bench-time-${process.pid}`);
  const ms = await timed(TIME, ['-f', '%U %S %M', '-o', file, cmd, ...args]);
  const [user, sys, rssKb] = readFileSync(file, 'utf8').trim().split(/\s+/).slice(-3).map(Number);
  rmSync(file, { force: true });
  return { ms, cpuMs: (user + sys) * 1000, rssMb: rssKb / 1024 };
}

const load = () => `load ${os.loadavg()[0].toFixed(1)}`;

/** The lines a command prints (a check that the alternatives return the same number of rows). */
function lineCount(cmd, args) {
  const r = spawnSync(cmd, args, { maxBuffer: 1 << 30, encoding: 'buffer' });
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  let n = 0;
  for (const b of r.stdout) if (b === 10) n++;
  return n;
}

const PG_DRAIN = `
const pg = require(${JSON.stringify(path.join(root, 'node_modules', 'pg'))});
const [url, sql] = process.argv.slice(1);
const c = new pg.Client({ connectionString: url });
c.connect().then(() => c.query({ text: sql, rowMode: 'array', types: { getTypeParser: () => (v) => v } })).then(() => c.end());`;

/** The bound: the shard SQL on every shard at once, each by its own psql (or pg) process. */
function bound(urls, shardSql, csv) {
  if (existsSync(PSQL))
    return Promise.all(urls.map((u) => timed(PSQL, [u, '-X', '-q', csv ? '--csv' : '-At', '-c', shardSql])));
  return Promise.all(urls.map((u) => timed(process.execPath, ['-e', PG_DRAIN, u, shardSql])));
}

async function loadEvents(urls, total) {
  console.log(`loading ${total.toLocaleString('en-US')} rows on ${urls.length} shards (PostgreSQL ${MAJOR})...`);
  await Promise.all(
    urls.map(async (u, i) => {
      const c = new pg.Client({ connectionString: u });
      await c.connect();
      await c.query(
        'CREATE TABLE events (tenant_id bigint NOT NULL, id bigint NOT NULL, kind text NOT NULL, amount numeric(12, 2) NOT NULL, PRIMARY KEY (tenant_id, id))',
      );
      await c.query(
        `INSERT INTO events SELECT (g % 1000) * $3 + $1, g, 'k' || (g % 17), (g % 100000) / 100.0 FROM generate_series(1, $2::int) g`,
        [i, Math.floor(total / urls.length), urls.length],
      );
      await c.query('CREATE TABLE tiny (tenant_id bigint PRIMARY KEY, note text)');
      await c.query('INSERT INTO tiny VALUES ($1, $2)', [i, `t${i}`]);
      await c.query('VACUUM ANALYZE');
      await c.end();
    }),
  );
}

/** The coordinator database of postgres_fdw on shard-0's server: `events`, hash-partitioned into foreign tables. */
async function setUpFdw(urls) {
  const admin = new URL(urls[0]);
  admin.pathname = '/postgres';
  const a = new pg.Client({ connectionString: admin.href });
  await a.connect();
  await a.query('CREATE DATABASE coord');
  await a.end();
  const coordUrl = new URL(urls[0]);
  coordUrl.pathname = '/coord';
  const c = new pg.Client({ connectionString: coordUrl.href });
  await c.connect();
  await c.query('CREATE EXTENSION postgres_fdw');
  await c.query(
    'CREATE TABLE events (tenant_id bigint NOT NULL, id bigint NOT NULL, kind text NOT NULL, amount numeric(12, 2) NOT NULL) PARTITION BY HASH (tenant_id)',
  );
  for (const [i, u] of urls.entries()) {
    const s = new URL(u);
    await c.query(
      `CREATE SERVER s${i} FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '${s.hostname}', port '${s.port}', dbname 'bench', async_capable 'true', fetch_size '10000')`,
    );
    await c.query(
      `CREATE USER MAPPING FOR CURRENT_USER SERVER s${i} OPTIONS (user '${decodeURIComponent(s.username)}', password '${decodeURIComponent(s.password)}')`,
    );
    // The remainders do not follow shardctl's placement: these queries never prune by tenant_id.
    await c.query(
      `CREATE FOREIGN TABLE events_${i} PARTITION OF events FOR VALUES WITH (MODULUS ${urls.length}, REMAINDER ${i}) SERVER s${i} OPTIONS (table_name 'events', use_remote_estimate 'true')`,
    );
  }
  await c.query('ANALYZE events');
  await c.query('ALTER DATABASE coord SET enable_partitionwise_aggregate = on');
  await c.end();
  return coordUrl.href;
}

const QUERIES = [
  {
    label: 'per-tenant GROUP BY HAVING',
    sql: 'SELECT tenant_id, count(*) AS n, sum(amount) AS total FROM events GROUP BY tenant_id HAVING count(*) > 10',
    format: 'ndjson',
  },
  { label: 'count(*)', sql: 'SELECT count(*) FROM events', format: 'ndjson' },
  {
    label: 'ORDER BY ... LIMIT 100',
    sql: 'SELECT tenant_id, id, amount FROM events ORDER BY amount DESC, tenant_id, id LIMIT 100',
    format: 'ndjson',
  },
  { label: 'unordered csv export', sql: 'SELECT tenant_id, id, kind, amount FROM events', format: 'csv', export: true },
  { label: 'ndjson export', sql: 'SELECT tenant_id, id, kind, amount FROM events', format: 'ndjson', export: true },
];

function ours(mapFile, sql, format) {
  return measured(process.execPath, [BIN, 'query', '-c', mapFile, '--format', format, sql]);
}

async function shardSqlOf(mapFile, sql) {
  const r = spawnSync(process.execPath, [BIN, 'query', '-c', mapFile, '--json', '--explain', sql], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`explain failed: ${r.stderr}`);
  return JSON.parse(r.stdout).shardSql;
}

const ms = (x) => `${x.toFixed(0)} ms`;

async function queries(cluster, coordUrl) {
  console.log(
    `\nqueries (median of 3, interleaved; bound = ${existsSync(PSQL) ? 'psql' : 'plain pg (no psql here)'} on every shard in parallel):`,
  );
  for (const q of QUERIES) {
    const shardSql = await shardSqlOf(cluster.mapFile, q.sql);
    const csv = q.format === 'csv';
    const fdwArgs = [coordUrl, '-X', '-q', csv ? '--csv' : '-At', '-c', q.sql];
    if (q.export) {
      // Not timed: the alternatives print the same rows (csv: plus its header line).
      const a = lineCount(process.execPath, [BIN, 'query', '-c', cluster.mapFile, '--format', q.format, q.sql]);
      const b = lineCount(PSQL, [coordUrl, '-X', '-q', '-At', '-c', q.sql]);
      if (a - (csv ? 1 : 0) !== b) throw new Error(`${q.label}: shardctl printed ${a} lines, postgres_fdw ${b}`);
    }
    const t = { ours: [], cpu: [], bound: [], fdw: [] };
    for (let r = 0; r < 3; r++) {
      const m = await ours(cluster.mapFile, q.sql, q.format);
      t.ours.push(m.ms);
      t.cpu.push(m.cpuMs ?? NaN);
      const s = performance.now();
      await bound(cluster.urls, shardSql, csv);
      t.bound.push(performance.now() - s);
      t.fdw.push(await timed(PSQL, fdwArgs));
    }
    const [o, b, f] = [median(t.ours), median(t.bound), median(t.fdw)];
    const target = q.export ? 'speed >= 0.8x the bound' : '<= 1.3x the bound, faster than fdw';
    console.log(
      `${q.label.padEnd(28)} shardctl ${ms(o)}, bound ${ms(b)}, postgres_fdw ${ms(f)} -> ${(o / b).toFixed(2)}x the bound` +
        `${q.export ? ` (speed ${(b / o).toFixed(2)}x)` : ''}, ${(o / f).toFixed(2)}x fdw (target ${target}); ` +
        `shardctl CPU ${ms(median(t.cpu))} (${load()})`,
    );
  }
}

/** The fixed cost of a process: a trivial cross-shard query against node alone and node making one round trip. */
async function trivial(cluster) {
  const rt = `const pg = require(${JSON.stringify(path.join(root, 'node_modules', 'pg'))}); const c = new pg.Client({ connectionString: process.argv[1] }); c.connect().then(() => c.query('SELECT 1')).then(() => c.end());`;
  const t = { ours: [], cpu: [], node: [], rt: [] };
  for (let r = 0; r < 3; r++) {
    const m = await ours(cluster.mapFile, 'SELECT count(*) FROM tiny', 'ndjson');
    t.ours.push(m.ms);
    t.cpu.push(m.cpuMs ?? NaN);
    t.node.push(await timed(process.execPath, ['-e', '0']));
    t.rt.push(await timed(process.execPath, ['-e', rt, cluster.urls[0]]));
  }
  return { ours: median(t.ours), cpu: median(t.cpu), node: median(t.node), rt: median(t.rt) };
}

/** Peak RSS of the CLI's ndjson and csv exports of a quarter, half and all of the rows: flat if memory is bounded. */
async function exportRss(cluster, total) {
  console.log('\nexport peak RSS by row count (whole process, stdout to /dev/null):');
  for (const share of [4, 2, 1]) {
    const perShard = Math.floor(total / cluster.urls.length / share);
    const sql = `SELECT tenant_id, id, kind, amount FROM events WHERE id <= ${perShard}`;
    for (const format of ['ndjson', 'csv']) {
      const m = await ours(cluster.mapFile, sql, format);
      const rows = (perShard * cluster.urls.length).toLocaleString('en-US');
      console.log(
        `${format.padEnd(6)} ${rows.padStart(10)} rows: ${ms(m.ms)}, CPU ${m.cpuMs === null ? '?' : ms(m.cpuMs)}, peak RSS ${m.rssMb === null ? '?' : `${m.rssMb.toFixed(0)} MB`} (${load()}; target < 150 MB whatever the row count)`,
      );
    }
  }
}

function printTrivial(n, x) {
  console.log(
    `trivial count(*) on ${String(n).padStart(2)} shards: shardctl ${ms(x.ours)} (CPU ${ms(x.cpu)}); node -e 0 ${ms(x.node)}; node + one round trip ${ms(x.rt)} -> ${(x.ours / x.rt).toFixed(2)}x (target <= 2.5x; ${load()})`,
  );
}

export default async function bench(args) {
  const total = Number(args.find((a) => /^\d+$/.test(a)) ?? 1_000_000);
  if (!existsSync(path.join(root, 'dist', 'bundle', 'shardctl.mjs'))) throw new Error('npm run build first');
  if (!existsSync(PSQL))
    console.log('note: /usr/bin/psql is missing: the bound is plain pg, one node process per shard');
  const cluster = await startBenchCluster({ shards: 4, major: MAJOR });
  let small;
  try {
    await loadEvents(cluster.urls, total);
    const coordUrl = await setUpFdw(cluster.urls);
    await queries(cluster, coordUrl);
    await exportRss(cluster, total);
    console.log('\nfixed cost (median of 3, interleaved):');
    small = await trivial(cluster);
    printTrivial(4, small);
  } finally {
    await cluster.stop();
  }
  if (args.includes('--no-16')) return;
  const big = await startBenchCluster({ shards: 16, major: MAJOR });
  try {
    await loadEvents(big.urls, 16_000);
    const x = await trivial(big);
    printTrivial(16, x);
    // Net of the node-plus-round-trip process measured beside each (the two clusters run minutes apart).
    const added = (x.ours - x.rt - (small.ours - small.rt)) / 12;
    console.log(
      `added latency per added shard: ${added.toFixed(1)} ms (target <= 3 ms); added CPU per added shard: ${((x.cpu - small.cpu) / 12).toFixed(1)} ms`,
    );
  } finally {
    await big.stop();
  }
}
