// npm run bench -- adopt [tenants] [rowsPerTenant]
// What a fleet nobody adopted costs the router, and what adopt costs, on 3 real shards loaded with plain
// SQL (tenants placed by tenant_id % 3). Every figure is a ratio against a baseline of the same run:
// 1. Opening a router: `check-data` (scans every shard once) against the same router once the rule is
//    recorded (reads the catalog only).
// 2. `locateVerified` without a recorded rule (asks every shard) against sync `locate` from memory.
// 3. `adopt --dry-run` against `verify --only misplaced-rows schema` (adopt is verify's checks plus the
//    ledger read).
import pg from 'pg';
import { adoptFleet, createRouter, verifyCluster } from '../dist/index.js';
import { median, startBenchCluster } from './_cluster.mjs';

async function sql(url, text, params) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text, params)).rows;
  } finally {
    await c.end();
  }
}

async function timed(fn, runs) {
  const out = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(out);
}

export default async function bench(args) {
  const tenants = Number(args[0] ?? 20_000);
  const per = Number(args[1] ?? 10);
  const cluster = await startBenchCluster({ shards: 3 });
  try {
    const map = cluster.map;
    await Promise.all(
      cluster.urls.map(async (url, i) => {
        await sql(url, 'CREATE TABLE tenants (tenant_id bigint PRIMARY KEY, name text)');
        await sql(
          url,
          'CREATE TABLE events (tenant_id bigint NOT NULL, id int NOT NULL, body text, PRIMARY KEY (tenant_id, id))',
        );
        await sql(url, `INSERT INTO tenants SELECT t, 'n' FROM generate_series(0, $1::int - 1) t WHERE t % 3 = $2`, [
          tenants,
          i,
        ]);
        await sql(
          url,
          `INSERT INTO events SELECT t, g, 'x' FROM generate_series(0, $1::int - 1) t, generate_series(1, $3::int) g WHERE t % 3 = $2`,
          [tenants, i, per],
        );
        await sql(url, 'ANALYZE');
      }),
    );
    console.log(`3 shards, ${tenants} tenants, ${tenants * (per + 1)} rows, loaded with plain SQL`);
    const openClose = (options) => async () => (await createRouter(map, options)).close();
    const scan = await timed(openClose({}), 5);
    const router = await createRouter(map, { unrecordedRule: 'refuse' });
    const ids = Array.from({ length: 200 }, (_, i) => (i * 97) % tenants);
    const verified = await timed(async () => {
      for (const t of ids) await router.locateVerified(t);
    }, 3);
    await router.close();
    const dry = await timed(() => adoptFleet(map, { dryRun: true }), 3);
    const verify = await timed(() => verifyCluster(map, { only: ['misplaced-rows', 'schema'] }), 3);
    const adopted = await adoptFleet(map);
    if (!adopted.ruleRecorded) throw new Error('adopt did not record the rule');
    const recorded = await timed(openClose({}), 5);
    const fast = await createRouter(map);
    let sink = 0;
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < 1000; k++) for (const t of ids) sink += fast.locate(t).shard.length;
    const syncMs = Number(process.hrtime.bigint() - t0) / 1e6 / 1000;
    await fast.close();
    console.log(
      `open a router, no rule recorded (check-data scan): ${scan.toFixed(1)} ms; rule recorded: ${recorded.toFixed(1)} ms; ratio ${(scan / recorded).toFixed(1)}x`,
    );
    console.log(
      `200 x locateVerified, no rule recorded: ${verified.toFixed(1)} ms; 200 x locate from memory: ${syncMs.toFixed(3)} ms; ratio ${(verified / syncMs).toFixed(0)}x  [${sink > 0 ? 'ok' : ''}]`,
    );
    console.log(
      `adopt --dry-run: ${dry.toFixed(1)} ms; verify (misplaced-rows, schema): ${verify.toFixed(1)} ms; ratio ${(dry / verify).toFixed(2)}x`,
    );
  } finally {
    await cluster.stop();
  }
}
