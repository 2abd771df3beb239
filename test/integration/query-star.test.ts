import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runQuery } from '../../src/index.js';
import { createScratchDatabase, createTestCluster, type TestCluster } from '../harness/cluster.js';
import { runCli } from '../harness/run-cli.js';

// SELECT * sorted or grouped across shards, over the catalog's harder cases: schema-qualified and quoted
// names, a dropped and a later-added column, a view, a partitioned table, and a name that search_path
// resolves to another schema. Each answer (rows, order, output names) must equal one database's.
let cluster: TestCluster;
let single: { url: string; drop(): Promise<void> };
let db: pg.Client;

const SCHEMA = [
  'CREATE SCHEMA app',
  `CREATE TABLE app."Accounts" (tenant_id bigint NOT NULL, "Id" int NOT NULL, "order" text, dropped_soon int,
     "Mixed Case" numeric, PRIMARY KEY (tenant_id, "Id"))`,
  'ALTER TABLE app."Accounts" DROP COLUMN dropped_soon',
  'ALTER TABLE app."Accounts" ADD COLUMN added_later text',
  'CREATE VIEW app.account_view AS SELECT "Id", tenant_id, upper("order") AS shout FROM app."Accounts"',
  'CREATE TABLE events (tenant_id bigint NOT NULL, at date NOT NULL, kind text) PARTITION BY RANGE (at)',
  "CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
  "CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
  // `notes` resolves to other.notes by the database's search_path, not to public.notes
  'CREATE TABLE public.notes (tenant_id bigint, unrelated text)',
  'CREATE SCHEMA other',
  'CREATE TABLE other.notes (tenant_id bigint NOT NULL, n int NOT NULL, body text)',
  "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = other, public', current_database()); END $$",
];
const TENANTS = [1, 2, 3, 5, 6, 7, 9, 10, 11];

async function load(url: string, keep: (t: number) => boolean): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    for (const s of SCHEMA) await c.query(s);
    for (const t of TENANTS.filter(keep)) {
      for (let i = 1; i <= 4; i++) {
        await c.query('INSERT INTO app."Accounts" VALUES ($1, $2, $3, $4, $5)', [
          t,
          i,
          i % 3 === 0 ? null : `o${(t * 7 + i) % 5}`,
          i === 2 ? null : ((t * 13 + i * 7) % 17) / 4,
          i % 2 ? `late ${t}` : null,
        ]);
        await c.query('INSERT INTO events VALUES ($1, $2, $3)', [t, `${2025 + (i % 2)}-0${i}-1${t % 9}`, `k${i % 3}`]);
        await c.query('INSERT INTO other.notes VALUES ($1, $2, $3)', [t, i, i === 4 ? null : `note ${t}.${i}`]);
      }
    }
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  cluster = await createTestCluster({ shards: 3 });
  single = await createScratchDatabase();
  await load(single.url, () => true);
  await Promise.all(cluster.urls.map((url, i) => load(url, (t) => t % 3 === i)));
  // Connected after ALTER DATABASE: the session has the database's search_path, as the shards' sessions do.
  db = new pg.Client({ connectionString: single.url });
  await db.connect();
});
afterAll(async () => {
  await db?.end();
  await single?.drop();
  await cluster?.drop();
});

const RAW = { getTypeParser: () => (v: string) => v } as never;

const QUERIES = [
  'SELECT * FROM app."Accounts" ORDER BY tenant_id, "Id"',
  'SELECT a.* FROM app."Accounts" AS a ORDER BY "Mixed Case" DESC NULLS LAST, tenant_id, "Id" LIMIT 7',
  'SELECT app."Accounts".* FROM app."Accounts" ORDER BY 1, 2 OFFSET 3',
  'SELECT * FROM app.account_view ORDER BY tenant_id, "Id"',
  'SELECT * FROM events ORDER BY at, tenant_id, kind',
  'SELECT DISTINCT * FROM events ORDER BY 1, 2, 3',
  'SELECT * FROM notes ORDER BY tenant_id, n LIMIT 10',
  'SELECT * FROM app."Accounts" a JOIN notes n ON n.tenant_id = a.tenant_id ORDER BY a.tenant_id, a."Id", n.n LIMIT 30',
  'SELECT n.*, a."order" FROM app."Accounts" a JOIN notes n ON n.tenant_id = a.tenant_id AND n.n = a."Id" ORDER BY 1, 2',
  'SELECT * FROM app."Accounts" a JOIN notes n USING (tenant_id) ORDER BY tenant_id, "Id", n LIMIT 25',
  'SELECT * FROM events e LEFT JOIN other.notes USING (tenant_id) ORDER BY 1, 2, 3, n',
];

describe('SELECT * across shards equals one PostgreSQL', () => {
  for (const sql of QUERIES) {
    it(sql, async () => {
      const want = (await db.query({
        text: sql,
        rowMode: 'array',
        types: RAW,
      } as never)) as unknown as pg.QueryArrayResult;
      const got = await runQuery(cluster.map, sql, []);
      // `n` there is notes' column n, which PostgreSQL prefers over the alias n; the planner takes it as
      // notes' whole row, whose per-shard type it does not read back from text: pulled up (exact, slower).
      expect(got.plan.kind).toBe(sql.endsWith('"Id", n LIMIT 25') ? 'pullup' : 'final');
      expect(got.plan.shards).toHaveLength(3);
      expect(got.fields.map((f) => f.name)).toEqual(want.fields.map((f) => f.name));
      expect(got.rows).toEqual(want.rows);
    });
  }

  it('the CLI answers SELECT * with ORDER BY, with the columns PostgreSQL names', async () => {
    const sql = 'SELECT * FROM app."Accounts" ORDER BY tenant_id DESC, "Id" LIMIT 3';
    const r = await runCli(['-c', cluster.mapFile, 'query', sql, '--format', 'csv']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('tenant_id,Id,order,Mixed Case,added_later');
    expect(lines.slice(1).map((l) => l.split(',').slice(0, 2).join(','))).toEqual(['11,1', '11,2', '11,3']);
  });

  it('answers SELECT * over an aliased join by pull-up, and names a relation the catalog does not have', async () => {
    // no merge expands it; PostgreSQL does, over the pulled-up rows (test/integration/query-pullup.test.ts)
    const using = await runCli([
      '-c',
      cluster.mapFile,
      'query',
      'SELECT * FROM (app."Accounts" JOIN notes USING (tenant_id)) AS j ORDER BY 1',
      '--explain',
    ]);
    expect(using.code).toBe(0);
    expect(using.stdout).toMatch(/SELECT \* over an aliased JOIN needs every shard's rows together/);
    const missing = await runCli(['-c', cluster.mapFile, 'query', 'SELECT * FROM nope ORDER BY 1']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/shard shard-0: relation "nope" does not exist/);
  });
});
