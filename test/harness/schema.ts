import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { TestCluster } from './cluster.js';

/** The example schema's folder (`migrations/`). */
export const EXAMPLE_MIGRATIONS = path.resolve(import.meta.dirname, '..', '..', 'migrations');

/**
 * Applies the example schema's files to every shard with a plain loop, without a ledger: the state of a
 * cluster migrated by other tools.
 */
export async function applyExampleSchema(cluster: TestCluster): Promise<void> {
  const files = readdirSync(EXAMPLE_MIGRATIONS)
    .filter((f) => f.endsWith('.sql'))
    .sort();
  await Promise.all(
    cluster.urls.map(async (_, i) => {
      for (const f of files) await cluster.sql(i, readFileSync(path.join(EXAMPLE_MIGRATIONS, f), 'utf8'));
    }),
  );
}

/** Inserts a small tenant (tenant row, 2 users, 1 project, 2 invoices with lines) on shard i. */
export async function insertTenant(cluster: TestCluster, shard: number, tenant: number): Promise<void> {
  await cluster.sql(
    shard,
    `WITH t AS (INSERT INTO tenants (tenant_id, name, plan_id) VALUES ($1::bigint, 'tenant ' || $1::bigint, 'team') RETURNING tenant_id),
          u AS (INSERT INTO users (tenant_id, id, email) SELECT tenant_id, g, 'u' || g || '@x' FROM t, generate_series(1, 2) g RETURNING tenant_id, id),
          p AS (INSERT INTO projects (tenant_id, id, owner_id, name) SELECT tenant_id, 1, 1, 'p' FROM t RETURNING tenant_id, id)
     SELECT 1`,
    [tenant],
  );
  await cluster.sql(
    shard,
    `INSERT INTO invoices (tenant_id, id, project_id, number, status, issued_at, total) SELECT $1::bigint, g, 1, 'N' || g, 'open', now(), 10 FROM generate_series(1, 2) g`,
    [tenant],
  );
  await cluster.sql(
    shard,
    `INSERT INTO invoice_lines (tenant_id, invoice_id, line_no, description, quantity, unit_price) SELECT $1::bigint, i, 1, 'x', 1, 10 FROM generate_series(1, 2) i`,
    [tenant],
  );
}
