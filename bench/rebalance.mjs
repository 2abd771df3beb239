// npm run bench -- rebalance
// 4 loaded shards with 200 tenants of skewed sizes plus one new empty shard. Reports: planning time
// (sizes query on the real fleet, and the planner alone on 10,000 synthetic tenants: target < 2 s), the
// plan's bytes moved against the ideal lower bound (the surplus above the mean), and the apply
// throughput against a single move measured in the same run. Then 50 small tenants: 25 moved by a plan
// applied ungrouped (one move each), 25 by the same kind of plan applied grouped (small tenants between
// the same pair of shards in one move). Targets: grouped at least 2x the ungrouped throughput and at
// least 1x a single move's MB/s.
import pg from 'pg';
import { applyFleetPlan, computeFleetPlan, moveTenant, planRebalance } from '../dist/index.js';
import { startBenchCluster } from './_cluster.mjs';

/** Applies a plan of 25 small tenants ungrouped, then another grouped, and compares their throughput. */
async function smallTenants(map, clients, router, template, singleRate) {
  const small = Array.from({ length: 50 }, (_, i) => 1001 + i);
  for (const t of small) {
    const shard = Number(router.locate(t).shard.slice(6));
    await clients[shard].query(
      "INSERT INTO events SELECT $1::bigint, g, repeat('x', 100) FROM generate_series(1, 2000) g",
      [t],
    );
  }
  for (const c of clients) await c.query('VACUUM ANALYZE events');
  const { createRouter } = await import('../dist/index.js');
  const now = await createRouter(map);
  const planOf = async (tenants) => {
    const moves = [];
    for (const t of tenants) {
      const from = now.locate(t).shard;
      const to = from === 'shard-4' ? 'shard-3' : 'shard-4';
      const r = await clients[Number(from.slice(6))].query(
        'SELECT count(*)::int AS n, sum(pg_column_size(e.*))::bigint AS b FROM events e WHERE tenant_id = $1',
        [t],
      );
      moves.push({ tenant: String(t), from, to, bytes: Number(r.rows[0].b), rows: r.rows[0].n, reason: 'bench' });
    }
    return { ...template, moves, bytesMoved: moves.reduce((a, m) => a + m.bytes, 0) };
  };
  const run = async (tenants, group) => {
    const plan = await planOf(tenants);
    const t0 = performance.now();
    const report = await applyFleetPlan(map, plan, { group });
    const s = (performance.now() - t0) / 1000;
    if (report.state !== 'done') throw new Error(`small-tenant apply ended ${report.state}`);
    return { s, bytes: report.bytesMoved, moves: new Set(report.moves.map((m) => m.moveId)).size };
  };
  const ungrouped = await run(small.slice(0, 25), false);
  const grouped = await run(small.slice(25), {});
  await now.close();
  const rate = (r) => r.bytes / r.s;
  console.log(
    `25 small tenants ungrouped: ${ungrouped.moves} moves, ${ungrouped.bytes} bytes in ${ungrouped.s.toFixed(1)} s -> ${(rate(ungrouped) / 1e6).toFixed(2)} MB/s`,
  );
  console.log(
    `25 small tenants grouped: ${grouped.moves} moves, ${grouped.bytes} bytes in ${grouped.s.toFixed(1)} s -> ${(rate(grouped) / 1e6).toFixed(2)} MB/s; ${(rate(grouped) / rate(ungrouped)).toFixed(2)}x ungrouped (target >= 2x), ${(rate(grouped) / singleRate).toFixed(2)}x a single move's MB/s (target >= 1x)`,
  );
}

export default async function bench() {
  const cluster = await startBenchCluster({ shards: 5, strategy: 'hash' });
  try {
    // shard-4 joins empty: give its buckets to shard-3 in the map so the rule never names it
    const { readFileSync, writeFileSync } = await import('node:fs');
    const { loadShardMap, createRouter } = await import('../dist/index.js');
    let text = readFileSync(cluster.mapFile, 'utf8');
    text = text
      .replace(/(name: shard-3\n\s+url: [^\n]+\n\s+buckets: )(\d+)-\d+/, '$1$2-4095')
      .replace(/(name: shard-4\n\s+url: [^\n]+\n)\s+buckets: [^\n]+\n/, '$1');
    writeFileSync(cluster.mapFile, text);
    const map = await loadShardMap(cluster.mapFile);
    const clients = await Promise.all(
      cluster.urls.map(async (u) => {
        const c = new pg.Client({ connectionString: u });
        await c.connect();
        return c;
      }),
    );
    for (const c of clients)
      await c.query(
        'CREATE TABLE events (tenant_id bigint NOT NULL, n int NOT NULL, body text NOT NULL, PRIMARY KEY (tenant_id, n))',
      );
    const router = await createRouter(map, { offline: true });
    console.log('loading 200 tenants of skewed sizes...');
    for (let t = 1; t <= 200; t++) {
      const shard = Number(router.locate(t).shard.slice(6));
      const rows = Math.round(20000 / t) + (shard === 0 ? 3000 : 50); // Zipf-like, shard-0 heavier
      await clients[shard].query(
        "INSERT INTO events SELECT $1::bigint, g, repeat('x', 100) FROM generate_series(1, $2::int) g",
        [t, rows],
      );
    }
    for (const c of clients) await c.query('VACUUM ANALYZE');
    let t0 = performance.now();
    const plan = await computeFleetPlan(map, { threshold: 0.1 });
    const planMs = performance.now() - t0;
    const synthetic = Array.from({ length: 10_000 }, (_, i) => ({
      tenant: String(i),
      shard: `s${i % 4}`,
      bytes: Math.round(1e9 / (i + 1)) + ((i * 7919) % 100000) + (i % 4 === 0 ? 500000 : 0),
    }));
    t0 = performance.now();
    const big = planRebalance({ shards: ['s0', 's1', 's2', 's3', 's4'], tenants: synthetic, threshold: 0.1 });
    const planner10k = performance.now() - t0;
    console.log(
      `planning: sizes + plan on the fleet ${planMs.toFixed(0)} ms; planner alone on 10,000 tenants ${planner10k.toFixed(0)} ms (target < 2000 ms), ${big.moves.length} moves, balanced ${big.balanced}`,
    );
    console.log(
      `plan: ${plan.moves.length} moves, ${plan.bytesMoved} bytes; lower bound (surplus above the mean) ${plan.lowerBound.surplus} bytes -> ${(plan.bytesMoved / plan.lowerBound.surplus).toFixed(2)}x; above the band ${plan.lowerBound.band}; balanced ${plan.balanced}`,
    );
    console.log(
      `10k synthetic: moved ${(big.bytesMoved / big.lowerBound.surplus).toFixed(2)}x the surplus above the mean`,
    );
    // single move of the largest tenant not in the plan, for comparison
    const single = plan.moves.length > 0 ? undefined : 1;
    t0 = performance.now();
    const report = await applyFleetPlan(map, plan);
    const applyS = (performance.now() - t0) / 1000;
    console.log(
      `apply: ${report.state}, ${report.moves.length} moves, ${report.bytesMoved} bytes in ${applyS.toFixed(1)} s -> ${(report.bytesMoved / applyS / 1e6).toFixed(2)} MB/s`,
    );
    const probe = 2; // tenant 2 is large; move it and back
    const from = (await createRouter(map)).locate(probe).shard;
    const to = map.shards.find((s) => s.name !== from).name;
    t0 = performance.now();
    const { move } = await moveTenant(map, probe, to);
    const oneS = (performance.now() - t0) / 1000;
    const bytes = move.plan.tables.reduce((a, t) => a + t.bytes, 0);
    console.log(
      `single move of tenant ${probe}: ${bytes} bytes in ${oneS.toFixed(2)} s -> ${(bytes / oneS / 1e6).toFixed(2)} MB/s; apply/single throughput ${(report.bytesMoved / applyS / (bytes / oneS)).toFixed(2)}x`,
    );
    void single;
    const singleRate = bytes / oneS;
    await smallTenants(map, clients, router, plan, singleRate);
    for (const c of clients) await c.end();
  } finally {
    await cluster.stop();
  }
}
