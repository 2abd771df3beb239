import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRouter, moveTenant, runQuery, verifyCluster, type ShardMap } from '../../src/index.js';
import { initServer, serverUrl, startServer, stopServer } from '../../src/dev/embedded-server.js';
import {
  createScratchDatabase,
  createTestCluster,
  noLogicalReplication,
  serverAdminUrls,
  testTempDir,
  type TestCluster,
} from '../harness/cluster.js';
import { applyMoveSchema, loadMoveTenant, tenantRowCount, tenantRows } from '../harness/move-fixture.js';
import { replicationObjects, writerMismatches } from '../harness/online.js';
import { startWriter, type WriterReport } from '../harness/writer.js';

// A fleet mid-upgrade: shard-0 on one of the suite's servers, shard-1 on a server of another major
// that this file starts (15 beside an 18 suite, 18 beside a 15 one), so that every run of the matrix,
// whatever its major, moves tenants between the oldest and the newest supported major.
let cluster: TestCluster;
let extraDir: string;
/** Major of shard i. */
const majors: number[] = [];
/** Where each tenant lives now (shard index); modulo 2 to begin with. */
const home = new Map<number, number>();
const TENANTS = [1, 2, 3, 4, 5, 6];
/**
 * External-server mode only: an external server without wal_level = logical cannot be the source of a
 * move by logical replication (this file's own server of the other major can), so an online move from
 * it is expected to pick the change-log triggers instead.
 */
const NO_LOGICAL = await noLogicalReplication();
if (NO_LOGICAL) console.warn(`${import.meta.filename}: online moves from it use the trigger capture: ${NO_LOGICAL}`);

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

async function serverMajor(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
    return Math.floor(Number(r.rows[0]!.v) / 10000);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  const base = serverAdminUrls()[0]!;
  const baseMajor = await serverMajor(base);
  const otherMajor = baseMajor === 15 ? 18 : 15;
  extraDir = path.join(await testTempDir('shardctl-pg-other-'), 'server');
  const info = await initServer(extraDir, { port: await freePort(), fast: true, major: otherMajor });
  await startServer(extraDir);
  cluster = await createTestCluster({ shards: 2, reference: ['plans'], servers: [base, serverUrl(info)] });
  majors.push(baseMajor, await serverMajor(cluster.urls[1]!));
  await applyMoveSchema(cluster);
  for (const t of TENANTS) {
    await loadMoveTenant(cluster, t % 2, t, 6);
    home.set(t, t % 2);
  }
});
afterAll(async () => {
  await cluster?.drop();
  if (extraDir) await stopServer(extraDir);
});

/** The shard index on the given major. */
const onMajor = (m: 'oldest' | 'newest') => (majors[0]! < majors[1]! === (m === 'oldest') ? 0 : 1);

/** Every row of a tenant but `users` (the writer's table). */
async function fixedRows(shard: number, tenant: number) {
  const { users: _users, ...rest } = await tenantRows(cluster, shard, tenant);
  return rest;
}

/** The mode an online move from a shard ends up in: logical replication where its server has wal_level = logical. */
async function onlineMode(from: number): Promise<'online' | 'trigger'> {
  if (!NO_LOGICAL) return 'online';
  const [row] = await cluster.sql<{ wal_level: string }>(from, 'SHOW wal_level');
  return row!.wal_level === 'logical' ? 'online' : 'trigger';
}

/**
 * Moves a tenant to the other shard while a writer writes it and a neighbour through a router, and
 * checks that every row and every acknowledged write is where it belongs afterwards.
 */
async function moveUnderWrites(tenant: number, mode: 'online' | 'fenced'): Promise<void> {
  const from = home.get(tenant)!;
  const expectedMode = mode === 'online' ? await onlineMode(from) : mode;
  const to = 1 - from;
  const neighbour = TENANTS.find((t) => t !== tenant && home.get(t) === from)!;
  const before = await fixedRows(from, tenant);
  // Each writer numbers its rows from 100000: an earlier writer's rows of these tenants go first.
  for (const s of [0, 1])
    await cluster.sql(s, 'DELETE FROM users WHERE tenant_id = ANY($1::bigint[]) AND id >= 100000', [
      [tenant, neighbour],
    ]);
  const router = await createRouter(cluster.map, { directoryTtlMs: 60_000 });
  const writer = startWriter(router, [tenant, neighbour], { concurrency: 2, seed: tenant * 31 + to });
  let report: WriterReport;
  try {
    await writer.waitForWrites(20, { tenant });
    const { move } = await moveTenant(cluster.map, tenant, `shard-${to}`, { mode });
    expect(move).toMatchObject({ state: 'done', mode: expectedMode });
    home.set(tenant, to);
    // The writer follows the tenant to its new shard and is acknowledged there.
    await writer.waitForWrites(20, { tenant });
  } finally {
    report = await writer.stop();
    await router.close();
  }
  expect(report.otherErrors).toEqual([]);
  expect(report.writesByTenant.get(tenant)).toBeGreaterThan(40);
  expect(await writerMismatches(cluster, report, (t) => home.get(t)!)).toEqual([]);
  expect(await fixedRows(to, tenant)).toEqual(before);
  expect(await tenantRowCount(cluster, from, tenant)).toBe(0);
  expect(await replicationObjects(cluster, 0)).toEqual([]);
  expect(await replicationObjects(cluster, 1)).toEqual([]);
}

describe('a fleet of two majors', () => {
  it('runs two majors: the suite major, and the oldest supported (the newest beside a 15 suite)', () => {
    expect(majors[1]).toBe(majors[0] === 15 ? 18 : 15);
  });

  it('moves a tenant online from the oldest major to the newest and back, keeping every acknowledged write', async () => {
    const tenant = TENANTS.find((t) => home.get(t) === onMajor('oldest'))!;
    await moveUnderWrites(tenant, 'online');
    expect(home.get(tenant)).toBe(onMajor('newest'));
    await moveUnderWrites(tenant, 'online');
    expect(home.get(tenant)).toBe(onMajor('oldest'));
  });

  it('moves a tenant fenced from the newest major to the oldest and back, keeping every acknowledged write', async () => {
    const tenant = TENANTS.find((t) => home.get(t) === onMajor('newest'))!;
    await moveUnderWrites(tenant, 'fenced');
    expect(home.get(tenant)).toBe(onMajor('oldest'));
    await moveUnderWrites(tenant, 'fenced');
    expect(home.get(tenant)).toBe(onMajor('newest'));
  });

  it('answers cross-shard queries exactly as one database holding every row', async () => {
    const single = await createScratchDatabase();
    const db = new pg.Client({ connectionString: single.url });
    await db.connect();
    const RAW = { getTypeParser: () => (v: string) => v } as never;
    try {
      await db.query(
        'CREATE TABLE users (tenant_id bigint, id bigint, email text, name text, PRIMARY KEY (tenant_id, id))',
      );
      for (const s of [0, 1]) {
        const rows = await cluster.sql<{ tenant_id: string; id: string; email: string; name: string | null }>(
          s,
          'SELECT tenant_id::text, id::text, email, name FROM users',
        );
        for (const r of rows)
          await db.query('INSERT INTO users VALUES ($1, $2, $3, $4)', [r.tenant_id, r.id, r.email, r.name]);
      }
      const queries: [string, boolean][] = [
        // unbounded ORDER BY: the streaming merge, which asks each shard how its database collates
        ['SELECT tenant_id, id, email FROM users ORDER BY email, tenant_id, id', true],
        ['SELECT tenant_id, id, name FROM users ORDER BY name DESC NULLS LAST, tenant_id, id LIMIT 7 OFFSET 3', true],
        ['SELECT tenant_id, count(*), count(name), min(email), max(id) FROM users GROUP BY tenant_id', false],
        ['SELECT count(*), count(DISTINCT tenant_id), sum(id), avg(id) FROM users', true],
        ['SELECT DISTINCT name FROM users ORDER BY name NULLS FIRST', true],
      ];
      for (const [sql, ordered] of queries) {
        const want = (await db.query({ text: sql, rowMode: 'array', types: RAW } as never)) as unknown as {
          rows: (string | null)[][];
        };
        const got = await runQuery(cluster.map, sql, []);
        const norm = (rs: (string | null)[][]) => (ordered ? rs : rs.map((r) => JSON.stringify(r)).sort());
        expect(norm(got.rows), sql).toEqual(norm(want.rows));
        expect(want.rows.length, sql).toBeGreaterThan(0);
      }
    } finally {
      await db.end();
      await single.drop();
    }
  });

  it('verify sees no schema drift from the majors catalogs, yet finds real drift on either major', async () => {
    const clean = await verifyCluster(cluster.map);
    expect(clean.findings).toEqual([]);
    const map: ShardMap = cluster.map;
    for (const shard of [0, 1]) {
      await cluster.sql(shard, 'ALTER TABLE projects ALTER COLUMN name DROP NOT NULL');
      await cluster.sql(shard, 'ALTER TABLE invoices ADD CONSTRAINT invoices_number_len CHECK (length(number) < 99)');
      try {
        const report = await verifyCluster(map);
        const drift = report.findings.filter((f) => f.kind === 'schema-drift');
        // Two shards, one of each major: either may be named against the other, but both tables are.
        expect([...new Set(drift.map((f) => f.table))].sort()).toEqual(['public.invoices', 'public.projects']);
        expect(drift.map((f) => f.message).join('\n')).toMatch(/column name/);
        expect(drift.map((f) => f.message).join('\n')).toMatch(/constraint invoices_number_len/);
      } finally {
        await cluster.sql(shard, 'ALTER TABLE projects ALTER COLUMN name SET NOT NULL');
        await cluster.sql(shard, 'ALTER TABLE invoices DROP CONSTRAINT invoices_number_len');
      }
    }
    expect((await verifyCluster(cluster.map)).findings).toEqual([]);
  });
});
