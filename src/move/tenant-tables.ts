import type { PoolClient } from 'pg';
import type { ShardMap } from '../config/shard-map.js';
import { TENANT_TABLES_SQL, tenantTablesParams } from '../catalog/user-tables.js';

/** What a move needs to know about one tenant table. */
export interface TenantTable {
  /** `schema.table`, unquoted. */
  table: string;
  /**
   * The column holding the tenant in this table (`shardKey.column` unless `shardKey.columns` names
   * another). Every statement that selects a tenant's rows of this table filters on it.
   */
  keyColumn: string;
  /** Columns COPY writes, in table order: generated columns are left out (the target computes them). */
  columns: string[];
  /** Every column with its type, for comparing source and target. */
  allColumns: { name: string; type: string; generated: boolean }[];
  /** Primary-key columns; empty when the table has none (a move refuses such a table). */
  primaryKey: string[];
  /** Columns fed by a sequence (identity or serial), with the sequence. */
  sequences: { column: string; sequence: string }[];
  /** Tenant tables this one references by foreign key (copied before it). */
  parents: string[];
  /** Estimated rows of the whole table (planner statistics). */
  estimatedRows: number;
}

/**
 * Reads the tenant tables of a shard with what a move needs, in foreign-key order (parents first).
 * Tables in a reference cycle keep their relative catalog order; the copy defers constraints for them.
 *
 * @example
 * const tables = await readTenantTables(client, map); tables.map((t) => t.table) // ['public.tenants', 'public.users', ...]
 */
export async function readTenantTables(client: PoolClient, map: ShardMap): Promise<TenantTable[]> {
  type Listed = { table_name: string; reltuples: number; key_column: string };
  const list = (await client.query<Listed>(TENANT_TABLES_SQL, tenantTablesParams(map))).rows;
  if (list.length === 0) return [];
  const names = list.map((t) => t.table_name);
  const cols = await client.query<{ t: string; name: string; type: string; generated: string; seq: string | null }>(
    `SELECT n.nspname || '.' || c.relname AS t, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attgenerated AS generated,
            pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) AS seq
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE (n.nspname || '.' || c.relname) = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY 1, a.attnum`,
    [names],
  );
  const pks = await client.query<{ t: string; cols: string[] }>(
    `SELECT n.nspname || '.' || c.relname AS t, array_agg(a.attname::text ORDER BY k.ord) AS cols
       FROM pg_constraint x
       JOIN pg_class c ON c.oid = x.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       CROSS JOIN LATERAL unnest(x.conkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
      WHERE x.contype = 'p' AND (n.nspname || '.' || c.relname) = ANY($1)
      GROUP BY 1`,
    [names],
  );
  const fks = await client.query<{ child: string; parent: string }>(
    `SELECT cn.nspname || '.' || c.relname AS child, pn.nspname || '.' || p.relname AS parent
       FROM pg_constraint x
       JOIN pg_class c ON c.oid = x.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
       JOIN pg_class p ON p.oid = x.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
      WHERE x.contype = 'f' AND (cn.nspname || '.' || c.relname) = ANY($1) AND (pn.nspname || '.' || p.relname) = ANY($1)`,
    [names],
  );
  const tables = new Map<string, TenantTable>();
  for (const t of list) {
    tables.set(t.table_name, {
      table: t.table_name,
      keyColumn: t.key_column,
      columns: [],
      allColumns: [],
      primaryKey: [],
      sequences: [],
      parents: [],
      estimatedRows: Math.max(0, t.reltuples),
    });
  }
  for (const c of cols.rows) {
    const t = tables.get(c.t)!;
    const generated = c.generated !== '';
    t.allColumns.push({ name: c.name, type: c.type, generated });
    if (!generated) t.columns.push(c.name);
    if (c.seq) t.sequences.push({ column: c.name, sequence: c.seq });
  }
  for (const p of pks.rows) tables.get(p.t)!.primaryKey = p.cols;
  for (const f of fks.rows)
    if (f.child !== f.parent && !tables.get(f.child)!.parents.includes(f.parent))
      tables.get(f.child)!.parents.push(f.parent);
  return topoSort([...tables.values()]);
}

/**
 * The columns of each named table as `name type, ...` in column order (the form of `allColumns`), in
 * one catalog query: what a move compares to find a table changed under it.
 *
 * @example
 * (await columnSignatures(c, ['public.users'])).get('public.users') // 'id bigint, tenant_id bigint, email text'
 */
export async function columnSignatures(client: PoolClient, tables: string[]): Promise<Map<string, string>> {
  const r = await client.query<{ t: string; sig: string }>(
    `SELECT n.nspname || '.' || c.relname AS t,
            string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) AS sig
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE (n.nspname || '.' || c.relname) = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
      GROUP BY 1`,
    [tables],
  );
  return new Map(r.rows.map((x) => [x.t, x.sig]));
}

/**
 * Orders tables parents first (Kahn's algorithm, ties in name order); tables left in a cycle are
 * appended in name order.
 */
export function topoSort(tables: TenantTable[]): TenantTable[] {
  const byName = new Map(tables.map((t) => [t.table, t]));
  const pending = new Map(tables.map((t) => [t.table, new Set(t.parents.filter((p) => byName.has(p)))]));
  const out: TenantTable[] = [];
  for (;;) {
    const ready = [...pending]
      .filter(([, deps]) => deps.size === 0)
      .map(([n]) => n)
      .sort();
    if (ready.length === 0) break;
    for (const n of ready) {
      out.push(byName.get(n)!);
      pending.delete(n);
      for (const deps of pending.values()) deps.delete(n);
    }
  }
  for (const n of [...pending.keys()].sort()) out.push(byName.get(n)!);
  return out;
}
