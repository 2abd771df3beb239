import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import net from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import pg from 'pg';
import {
  createRouter,
  loadShardMap,
  moveReport,
  moveTenant,
  movesOf,
  planMove,
  type ShardMap,
} from '../../src/index.js';
import { initServer, serverUrl, startServer, stopServer } from '../../src/dev/embedded-server.js';
import { serverAdminUrls, testTempDir } from '../harness/cluster.js';
import { refusal } from '../harness/refusal.js';
import { startWriter, type WriterReport } from '../harness/writer.js';

// The trigger capture where logical replication has nothing to work with: the source runs with
// wal_level = replica, the map's role is no superuser (no REPLICATION, no subscription right), and
// the target cannot reach the source (its replicationUrl points nowhere): only shardctl reaches both.

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

async function sql(url: string, text: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text, params)).rows;
  } finally {
    await c.end();
  }
}

function withCredentials(url: string, db: string, user: string, password: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  u.username = user;
  u.password = password;
  return u.toString();
}

/** The major of the suite's first server: the own server runs the same one (in external mode, ask it). */
async function suiteMajor(admin: string): Promise<number> {
  const known = inject('pgMajors')[0];
  if (known !== undefined) return known;
  const [row] = await sql(admin, "SELECT current_setting('server_version_num')::int / 10000 AS major");
  return Number(row!.major);
}

const ROLE = `mover_${randomBytes(3).toString('hex')}`;
const PASSWORD = randomBytes(9).toString('hex');
const DB = `trg_${randomBytes(3).toString('hex')}`;

// The wal_level = replica server is this file's own, also beside external servers (which it leaves running).
describe('trigger capture without logical replication (own server)', () => {
  let serverDir: string;
  let replicaAdmin: string;
  let suiteAdmin: string;
  let map: ShardMap;
  let urls: string[];
  beforeAll(async () => {
    const root = await testTempDir('shardctl-replica-');
    serverDir = path.join(root, 'server');
    suiteAdmin = serverAdminUrls()[0]!;
    const info = await initServer(serverDir, {
      port: await freePort(),
      fast: true,
      walLevel: 'replica',
      major: await suiteMajor(suiteAdmin),
    });
    await startServer(serverDir);
    replicaAdmin = serverUrl(info, 'postgres');
    for (const admin of [suiteAdmin, replicaAdmin]) {
      await sql(admin, `CREATE ROLE ${ROLE} LOGIN PASSWORD '${PASSWORD}' NOSUPERUSER NOREPLICATION`);
      await sql(admin, `CREATE DATABASE ${DB} OWNER ${ROLE}`);
    }
    // shard-0 (target) on a suite server, shard-1 (source) on the wal_level = replica server.
    urls = [withCredentials(suiteAdmin, DB, ROLE, PASSWORD), withCredentials(replicaAdmin, DB, ROLE, PASSWORD)];
    for (const u of urls) {
      await sql(u, 'CREATE TABLE users (id bigint PRIMARY KEY, tenant_id bigint NOT NULL, email text, name text)');
      await sql(u, 'CREATE INDEX ON users (tenant_id)');
    }
    await sql(urls[1]!, "INSERT INTO users SELECT 1000 + g, 3, 'u' || g, 'n' || g FROM generate_series(1, 500) g");
    const nowhere = new URL(urls[1]!);
    nowhere.port = '1';
    const file = path.join(root, 'shards.yaml');
    await writeFile(
      file,
      [
        'version: 1',
        'shardKey: { column: tenant_id, type: bigint }',
        'placement:',
        '  strategy: modulo',
        'shards:',
        `  - name: shard-0`,
        `    url: ${urls[0]}`,
        `  - name: shard-1`,
        `    url: ${urls[1]}`,
        `    replicationUrl: ${nowhere.toString()}`,
        `migrations: ${JSON.stringify(path.join(root, 'migrations'))}`,
        '',
      ].join('\n'),
    );
    map = await loadShardMap(file);
  }, 120_000);
  afterAll(async () => {
    await stopServer(serverDir).catch(() => undefined);
    await sql(suiteAdmin, `DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`).catch(() => undefined);
    await sql(suiteAdmin, `DROP ROLE IF EXISTS ${ROLE}`).catch(() => undefined);
  });

  it('refuses logical replication naming wal_level and the missing rights', async () => {
    const e = await refusal(planMove(map, 3, 'shard-0', { capture: 'logical' }));
    expect(e.message).toMatch(/wal_level = replica/);
    expect(e.message).toMatch(/may not create replication slots/);
    expect(e.message).toMatch(/may not create subscriptions/);
  });

  it('moves online with a concurrent writer, every acknowledged write kept', async () => {
    const router = await createRouter(map, { directoryTtlMs: 60_000 });
    const writer = startWriter(router, [3], { globalIds: true });
    let report: WriterReport;
    try {
      await writer.waitForWrites(20);
      const { move, preview } = await moveTenant(map, 3, 'shard-0');
      expect(preview?.captureReason).toMatch(/wal_level = replica/);
      expect(move).toMatchObject({ state: 'done', mode: 'trigger' });
      await writer.waitForWrites(20);
    } finally {
      report = await writer.stop();
      await router.close();
    }
    expect(report.otherErrors).toEqual([]);
    const model = [...report.model]
      .filter(([, v]) => v !== null)
      .map(([k, v]): [number, string | null] => [Number(k.split(':')[1]), v]);
    const rows = await sql(urls[0]!, 'SELECT id::int AS id, name FROM users WHERE tenant_id = 3 AND id >= 100000');
    expect(new Map(rows.map((r) => [r.id, r.name]))).toEqual(new Map(model));
    expect(await sql(urls[0]!, 'SELECT count(*)::int AS n FROM users WHERE tenant_id = 3 AND id < 100000')).toEqual([
      { n: 500 },
    ]);
    expect(await sql(urls[1]!, 'SELECT count(*)::int AS n FROM users WHERE tenant_id = 3')).toEqual([{ n: 0 }]);
    const [m] = await movesOf(map, { tenant: '3' });
    expect(moveReport(m!).capture).toBe('change-log triggers');
  });
});
