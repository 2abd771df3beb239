// Shared by the move benchmarks: the example schema on every shard, and one big tenant.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

/** Tenant tables of the example schema that hold the big tenant's rows. */
export const TABLES = ['tenants', 'users', 'projects', 'invoices', 'invoice_lines'];

/** The project's migrations folder (the example SaaS schema). */
export const MIGRATIONS = path.join(root, 'migrations');

/** A connected pg client. */
export async function client(url) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

/** Applies the example schema to every shard of a bench cluster. */
export async function applySchema(cluster) {
  const files = readdirSync(MIGRATIONS)
    .filter((f) => f.endsWith('.sql'))
    .sort();
  for (const url of cluster.urls) {
    const c = await client(url);
    for (const f of files) await c.query(readFileSync(path.join(MIGRATIONS, f), 'utf8'));
    await c.end();
  }
}

/**
 * Loads tenant `tenant` with about `rows` rows on the shard at `url` (about 1/4 invoices, 3/4 invoice
 * lines, 1,000 users, 100 projects) and returns the exact row count.
 */
export async function loadBigTenant(url, rows, tenant = 1) {
  const invoices = Math.round(rows / 4);
  const src = await client(url);
  try {
    console.log(`loading tenant ${tenant} with about ${rows.toLocaleString('en-US')} rows...`);
    await src.query("INSERT INTO tenants (tenant_id, name, plan_id) VALUES ($1, 'Big Corp', 'enterprise')", [tenant]);
    await src.query(
      "INSERT INTO users (tenant_id, email) SELECT $1, 'u' || g || '@big' FROM generate_series(1, 1000) g",
      [tenant],
    );
    await src.query(
      "INSERT INTO projects (tenant_id, owner_id, name) SELECT $1, 1, 'p' || g FROM generate_series(1, 100) g",
      [tenant],
    );
    await src.query(
      `INSERT INTO invoices (tenant_id, project_id, number, status, issued_at, total, metadata)
                     SELECT $2, 1 + g % 100, 'N' || g, 'paid', now() - g * interval '1 minute', g * 1.25, jsonb_build_object('g', g) FROM generate_series(1, $1::int) g`,
      [invoices, tenant],
    );
    await src.query(
      `INSERT INTO invoice_lines (tenant_id, invoice_id, line_no, description, quantity, unit_price)
                     SELECT $2, i, l, 'item ' || l, l, 9.99 FROM generate_series(1, $1::int) i, generate_series(1, 3) l`,
      [invoices, tenant],
    );
    await src.query('VACUUM ANALYZE');
    const r = await src.query(
      `SELECT sum(n)::int AS n FROM (${TABLES.map((t) => `SELECT count(*) AS n FROM ${t} WHERE tenant_id = $1`).join(' UNION ALL ')}) x`,
      [tenant],
    );
    return r.rows[0].n;
  } finally {
    await src.end();
  }
}
