// The differential fixture: the same data in 4 shards (by the map) and in one database. A query's answer
// through shardctl must equal the single database's: in order where ORDER BY makes the order total, as a
// multiset otherwise. A test file calls `useDifferentialFixture()` once at its top level; `cluster` and
// `db` are live bindings filled in by its beforeAll.
import pg from 'pg';
import { mkdirSync } from 'node:fs';
import { afterAll, beforeAll, expect } from 'vitest';
import { migrateShards, runQuery } from '../../src/index.js';
import { createScratchDatabase, createTestCluster, type TestCluster } from './cluster.js';

export let cluster: TestCluster;
export let db: pg.Client;
let single: { url: string; drop(): Promise<void> };

const SCHEMA = [
  'CREATE TABLE plans (plan text PRIMARY KEY, rank int NOT NULL)',
  "INSERT INTO plans VALUES ('free', 0), ('team', 1), ('business', 2), ('enterprise', 3)",
  'CREATE TABLE tenants (tenant_id bigint PRIMARY KEY, name text NOT NULL, plan text REFERENCES plans, region text)',
  `CREATE TABLE orders (
     tenant_id bigint NOT NULL REFERENCES tenants, id bigint NOT NULL, customer text, amount numeric(30, 6), qty int,
     big bigint, score float8, created timestamptz, paid boolean, note text, PRIMARY KEY (tenant_id, id))`,
  'CREATE TABLE solo (tenant_id bigint NOT NULL, n int NOT NULL, v numeric, PRIMARY KEY (tenant_id, n))',
  // a column under a linguistic (ICU) collation: its order is not byte order
  'ALTER TABLE tenants ADD COLUMN label text COLLATE "en-x-icu"',
  'UPDATE tenants SET label = name',
];
const NAMES = [
  'Ärger GmbH',
  'zeta',
  'Zeta',
  'alpha',
  'Åsa',
  'ümlaut',
  '日本語',
  'emoji 🚀',
  '',
  'beta',
  'Beta',
  'a b',
  'a-b',
  'ab',
];
const CUSTOMERS = ['anna', 'Bob', 'bob', 'Émile', 'zoë', null, 'Zed', '李', 'ann', 'anna '];

export function rows(): { tenants: unknown[][]; orders: unknown[][]; solo: unknown[][] } {
  const tenants: unknown[][] = [];
  const orders: unknown[][] = [];
  const solo: unknown[][] = [];
  // tenant ids never 3 mod 4: shard-3 stays empty
  const ids = [1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 20, 21, 22, 24, 25];
  const plans = ['free', 'team', 'business', 'enterprise'];
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (const [k, t] of ids.entries()) {
    tenants.push([t, NAMES[k % NAMES.length], plans[k % 4], k % 3 === 0 ? null : ['eu', 'us', 'asia'][k % 3]]);
    const n = t === 4 ? 60 : 5 + (k % 7) * 3;
    for (let i = 1; i <= n; i++) {
      const r = rnd();
      orders.push([
        t,
        i,
        CUSTOMERS[Math.floor(r * CUSTOMERS.length)],
        r < 0.1 ? null : r < 0.15 ? '99999999999999999999.999999' : (Math.floor(r * 1e8) / 1000).toFixed(3),
        r < 0.05 ? null : Math.floor(r * 10),
        r < 0.2 ? '9223372036854775000' : r < 0.25 ? '-9223372036854775000' : String(Math.floor(r * 1e6)),
        r < 0.1 ? null : Math.round(r * 1e4) / 100,
        r < 0.1
          ? null
          : new Date(Date.UTC(2026, Math.floor(r * 12), 1 + Math.floor(r * 27), Math.floor(r * 24))).toISOString(),
        r < 0.1 ? null : r < 0.6,
        r < 0.3 ? null : NAMES[Math.floor(r * NAMES.length)],
      ]);
    }
  }
  for (const t of [1, 5, 9]) for (let i = 1; i <= 4; i++) solo.push([t, i, (i * 1.5).toString()]);
  return { tenants, orders, solo };
}

async function load(client: pg.Client, data: ReturnType<typeof rows>, keep: (t: number) => boolean): Promise<void> {
  for (const s of SCHEMA) await client.query(s);
  for (const r of data.tenants)
    if (keep(r[0] as number)) await client.query('INSERT INTO tenants VALUES ($1, $2, $3, $4)', r);
  for (const r of data.orders)
    if (keep(r[0] as number))
      await client.query('INSERT INTO orders VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)', r);
  for (const r of data.solo) if (keep(r[0] as number)) await client.query('INSERT INTO solo VALUES ($1, $2, $3)', r);
}

/**
 * Starts the 4-shard cluster and the single database, loads both, records the rule; drops them after.
 * With `icu`, every database (shards and the single one) has ICU as its default collation provider.
 */
export function useDifferentialFixture(options: { icu?: boolean } = {}): void {
  beforeAll(async () => {
    cluster = await createTestCluster({ shards: 4, reference: ['plans'], icu: options.icu ?? false });
    single = await createScratchDatabase({ icu: options.icu ?? false });
    const data = rows();
    db = new pg.Client({ connectionString: single.url });
    await db.connect();
    await load(db, data, () => true);
    await db.query("SET TimeZone = 'UTC'");
    await Promise.all(
      cluster.urls.map(async (url, i) => {
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        await load(c, data, (t) => t % 4 === i);
        await c.end();
      }),
    );
    // The placement rule recorded in the catalog (as migrate does): routing may pin a query to one shard.
    mkdirSync(cluster.map.migrations, { recursive: true });
    await migrateShards(cluster.map);
  });
  afterAll(async () => {
    await db.end();
    await single.drop();
    await cluster.drop();
  });
}

export const RAW = { getTypeParser: () => (v: string) => v } as never;

export async function expected(sql: string, params: unknown[] = []): Promise<(string | null)[][]> {
  const r = await db.query({ text: sql, values: params, rowMode: 'array', types: RAW } as never);
  return (r as unknown as { rows: (string | null)[][] }).rows;
}

export function multiset(rs: (string | null)[][]): string[] {
  return rs.map((r) => JSON.stringify(r)).sort();
}

export async function same(sql: string, ordered: boolean, params: unknown[] = []): Promise<void> {
  const want = await expected(sql, params);
  const got = await runQuery(cluster.map, sql, params);
  if (ordered) expect(got.rows, sql).toEqual(want);
  else expect(multiset(got.rows), sql).toEqual(multiset(want));
  expect(got.fields.length, sql).toBe(want[0]?.length ?? got.fields.length);
}

// [sql, order is total]
export async function sameWithNames(sql: string): Promise<void> {
  const want = (await db.query({ text: sql, rowMode: 'array', types: RAW } as never)) as unknown as pg.QueryArrayResult;
  const got = await runQuery(cluster.map, sql, []);
  expect(got.rows, sql).toEqual(want.rows);
  expect(
    got.fields.map((f) => f.name),
    sql,
  ).toEqual(want.fields.map((f) => f.name));
}

/**
 * A corpus failure as one report entry: the query, then the first `lines` lines of its error.
 *
 * @example
 * failures.push(failureLine(sql, e));
 */
export function failureLine(sql: string, e: unknown, lines = 6): string {
  return `${sql}\n    ${String((e as Error).message)
    .split('\n')
    .slice(0, lines)
    .join('\n    ')}`;
}
