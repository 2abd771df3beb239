import type { TestCluster } from './cluster.js';
import { applyExampleSchema } from './schema.js';

/** Tenant tables of the move fixture, parents first. */
export const MOVE_TABLES = ['tenants', 'users', 'projects', 'invoices', 'invoice_lines', 'attachments'];

/**
 * The example schema plus `attachments`: bytea, a GENERATED ALWAYS identity, a stored generated
 * column, jsonb, text[], numeric and NULLs, so that a move meets every awkward type.
 */
export async function applyMoveSchema(cluster: TestCluster): Promise<void> {
  await applyExampleSchema(cluster);
  await Promise.all(
    cluster.urls.map((_, i) =>
      cluster.sql(
        i,
        `CREATE TABLE attachments (
           tenant_id  bigint NOT NULL,
           id         bigint GENERATED ALWAYS AS IDENTITY,
           invoice_id bigint,
           data       bytea,
           digest     text GENERATED ALWAYS AS (md5(coalesce(data, ''::bytea))) STORED,
           meta       jsonb,
           labels     text[],
           amount     numeric(30, 10),
           PRIMARY KEY (tenant_id, id),
           FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id)
         )`,
      ),
    ),
  );
}

/** Loads a tenant with rows in every table, on shard `shard`. */
export async function loadMoveTenant(cluster: TestCluster, shard: number, tenant: number, size = 3): Promise<void> {
  await cluster.sql(
    shard,
    `INSERT INTO tenants (tenant_id, name, plan_id, settings) VALUES ($1::bigint, 'Tenant ' || $1::bigint || ' ünïcødé', 'team', '{"a": [1, 2, {"b": null}]}')`,
    [tenant],
  );
  await cluster.sql(
    shard,
    `INSERT INTO users (tenant_id, id, email, name) SELECT $1::bigint, g, 'u' || g || '@t' || $1::bigint, CASE WHEN g % 2 = 0 THEN NULL ELSE 'User ' || g END FROM generate_series(1, $2::int) g`,
    [tenant, size],
  );
  await cluster.sql(
    shard,
    `INSERT INTO projects (tenant_id, id, owner_id, name, tags) SELECT $1::bigint, g, 1, 'P' || g, ARRAY['x', 'y' || g] FROM generate_series(1, $2::int) g`,
    [tenant, size],
  );
  await cluster.sql(
    shard,
    `INSERT INTO invoices (tenant_id, id, project_id, number, status, issued_at, due_at, total, metadata)
     SELECT $1::bigint, g, 1 + g % $2::int, 'N' || g, 'open', timestamptz '2026-03-01 12:00:00.123456+02' + g * interval '1 hour', NULL, 123456789012.34 + g, CASE WHEN g % 3 = 0 THEN NULL ELSE jsonb_build_object('g', g) END
       FROM generate_series(1, $2::int * 2) g`,
    [tenant, size],
  );
  await cluster.sql(
    shard,
    `INSERT INTO invoice_lines (tenant_id, invoice_id, line_no, description, quantity, unit_price)
     SELECT $1::bigint, i, l, 'line ' || l, l * 1.5, 99999999.9999 FROM generate_series(1, $2::int * 2) i, generate_series(1, 3) l`,
    [tenant, size],
  );
  await cluster.sql(
    shard,
    `INSERT INTO attachments (tenant_id, invoice_id, data, meta, labels, amount)
     SELECT $1::bigint, CASE WHEN g % 2 = 0 THEN NULL ELSE 1 END, CASE WHEN g = 1 THEN NULL ELSE decode(repeat('00ff', g * 10), 'hex') END,
            jsonb_build_object('k', g, 'nested', jsonb_build_array(g, 'x')), ARRAY['l1', NULL, 'l3'], -12345678901234567890.0123456789 / g
       FROM generate_series(1, $2::int) g`,
    [tenant, size],
  );
}

/** Every row of a tenant on a shard, table by table, in primary-key order, as text (exact contents). */
export async function tenantRows(
  cluster: TestCluster,
  shard: number,
  tenant: number,
): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const t of MOVE_TABLES) {
    const rows = await cluster.sql<{ r: string }>(
      shard,
      `SELECT x::text AS r FROM ${t} x WHERE tenant_id = $1 ORDER BY x::text`,
      [tenant],
    );
    out[t] = rows.map((r) => r.r);
  }
  return out;
}

/** Number of rows of a tenant on a shard, all tables together. */
export async function tenantRowCount(cluster: TestCluster, shard: number, tenant: number): Promise<number> {
  let n = 0;
  for (const t of MOVE_TABLES)
    n += Number(
      (
        await cluster.sql<{ n: string }>(shard, `SELECT count(*)::text AS n FROM ${t} WHERE tenant_id = $1`, [tenant])
      )[0]!.n,
    );
  return n;
}
