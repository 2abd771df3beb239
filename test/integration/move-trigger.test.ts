import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import {
  abortMove,
  cleanupMove,
  createRouter,
  isFenceError,
  loadShardMap,
  moveReport,
  moveTenant,
  movesOf,
  planMove,
  verifyCluster,
  type ShardMap,
} from '../../src/index.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';
import { applyMoveSchema, loadMoveTenant, tenantRowCount, tenantRows } from '../harness/move-fixture.js';
import { replicationObjects, writerMismatches } from '../harness/online.js';
import { refusal } from '../harness/refusal.js';
import { runCli } from '../harness/run-cli.js';
import { startWriter, type WriterReport } from '../harness/writer.js';

// The blog post's schema: `users.id` bigserial primary key, tenant_id indexed. Its replica identity
// lacks the shard key, so logical replication cannot filter its updates: the trigger capture moves it.
const BLOG = [
  `CREATE TABLE users (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL, email text NOT NULL, name text)`,
  'CREATE INDEX users_tenant ON users (tenant_id)',
  `CREATE TABLE posts (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL, user_id bigint REFERENCES users (id) ON DELETE CASCADE, body text, at timestamptz DEFAULT now())`,
  'CREATE INDEX posts_tenant ON posts (tenant_id)',
];

async function loadBlogTenant(c: TestCluster, shard: number, tenant: number, n: number): Promise<void> {
  await c.sql(
    shard,
    `INSERT INTO users (id, tenant_id, email, name) SELECT $1::bigint * 10000 + g, $1, 'u' || g || '@t' || $1, 'User ' || g FROM generate_series(1, $2::int) g`,
    [tenant, n],
  );
  await c.sql(
    shard,
    `INSERT INTO posts (id, tenant_id, user_id, body) SELECT $1::bigint * 100000 + g, $1, $1::bigint * 10000 + 1 + g % $2::int, 'post ' || g FROM generate_series(1, $2::int * 2) g`,
    [tenant, n],
  );
}

async function rowsOf(c: TestCluster, shard: number, tenant: number, table: string): Promise<string[]> {
  return (
    await c.sql<{ r: string }>(shard, `SELECT x::text AS r FROM ${table} x WHERE tenant_id = $1 ORDER BY x::text`, [
      tenant,
    ])
  ).map((x) => x.r);
}

describe('the blog schema (primary key id only) moves online by default', () => {
  let c: TestCluster;
  beforeAll(async () => {
    c = await createTestCluster({ shards: 2 });
    for (const i of [0, 1]) for (const s of BLOG) await c.sql(i, s);
    await loadBlogTenant(c, 1, 3, 300);
    await loadBlogTenant(c, 1, 5, 20);
    await loadBlogTenant(c, 0, 4, 20);
  });
  afterAll(() => c.drop());

  it('dry run names the trigger capture and why; the move keeps every acknowledged write and rejects a stale one', async () => {
    const dry = await runCli(['-c', c.mapFile, 'rebalance', '--tenant', '3', '--to', 'shard-0', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/online: writes pause only for the switch/);
    expect(dry.stdout).toMatch(/capture: change-log triggers .*because logical replication is not available/);
    expect(dry.stdout).toMatch(/replica identity of public\.users does not contain tenant_id/);
    const posts = await rowsOf(c, 1, 3, 'posts');
    const router = await createRouter(c.map, { directoryTtlMs: 60_000 });
    const writer = startWriter(router, [3, 5], { concurrency: 2, globalIds: true });
    let report: WriterReport;
    try {
      await writer.waitForWrites(30);
      const { move, preview } = await moveTenant(c.map, 3, 'shard-0');
      expect(preview).toMatchObject({ mode: 'trigger', capture: 'trigger' });
      expect(move).toMatchObject({ state: 'done', mode: 'trigger' });
      await writer.waitForWrites(30, { tenant: 3 });
    } finally {
      report = await writer.stop();
      await router.close();
    }
    expect(report.otherErrors).toEqual([]);
    expect(report.writes).toBeGreaterThan(60);
    expect(await writerMismatches(c, report, (t) => (t === 3 ? 0 : 1))).toEqual([]);
    expect(await rowsOf(c, 0, 3, 'posts')).toEqual(posts);
    expect(await rowsOf(c, 1, 3, 'users')).toEqual([]);
    expect(await rowsOf(c, 1, 3, 'posts')).toEqual([]);
    // A writer with a stale map still aims at the old shard: the tombstone rejects it.
    const stale = await c
      .sql(1, "INSERT INTO users (id, tenant_id, email) VALUES (99999999, 3, 'stale')")
      .then(() => undefined)
      .catch((e: unknown) => e);
    expect(isFenceError(stale)).toBe(true);
    const [m] = await movesOf(c.map, { tenant: '3' });
    const r = moveReport(m!);
    expect(r.capture).toBe('change-log triggers');
    expect(r.captureReason).toMatch(/logical replication is not available/);
    expect(r.switchPauseMs).toBeGreaterThanOrEqual(0);
    expect([...(await replicationObjects(c, 0)), ...(await replicationObjects(c, 1))]).toEqual([]);
    expect((await verifyCluster(c.map)).findings).toEqual([]);
    // The sequence of the target went past every id the move brought (the writer's own ids, above a
    // million, were given explicitly and never came from a sequence).
    const [next] = await c.sql<{ ok: boolean }>(
      0,
      "SELECT nextval('users_id_seq') > (SELECT max(id) FROM users WHERE id < 1000000) AS ok",
    );
    expect(next!.ok).toBe(true);
  });

  it('--capture logical refuses by name where logical replication cannot carry the tables', async () => {
    const e = await refusal(planMove(c.map, 5, 'shard-0', { capture: 'logical' }));
    expect(e.code).toBe('ONLINE_UNSUPPORTED');
    expect(e.message).toMatch(/public\.users does not contain tenant_id/);
    const cli = await runCli([
      '-c',
      c.mapFile,
      'rebalance',
      '--tenant',
      '5',
      '--to',
      'shard-0',
      '--capture',
      'logical',
      '--yes',
    ]);
    expect(cli.code).toBe(7);
    expect(cli.stderr).toMatch(/cannot move online by logical replication/);
    const bad = await runCli(['-c', c.mapFile, 'rebalance', '--tenant', '5', '--to', 'shard-0', '--capture', 'wal']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--capture takes logical or trigger/);
  });
});

describe('per-table shard-key columns: tenants keyed by id, children by tenant_id', () => {
  let c: TestCluster;
  let map: ShardMap;
  beforeAll(async () => {
    c = await createTestCluster({ shards: 2 });
    for (const i of [0, 1]) {
      await c.sql(i, 'CREATE TABLE tenants (id bigint PRIMARY KEY, name text NOT NULL)');
      await c.sql(
        i,
        'CREATE TABLE users (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL REFERENCES tenants (id), email text NOT NULL)',
      );
    }
    // Only the target refuses one of tenant 9's rows: the error must name it.
    await c.sql(0, "ALTER TABLE users ADD CONSTRAINT no_blocked CHECK (email <> 'blocked@t9')");
    for (const t of [7, 9]) {
      await c.sql(1, "INSERT INTO tenants VALUES ($1::bigint, 'T' || $1::text)", [t]);
      await c.sql(
        1,
        `INSERT INTO users (id, tenant_id, email) SELECT $1::bigint * 1000 + g, $1, 'u' || g || '@t' || $1 FROM generate_series(1, 50) g`,
        [t],
      );
    }
    await c.sql(1, "UPDATE users SET email = 'blocked@t9' WHERE id = 9001");
    const text = await readFile(c.mapFile, 'utf8');
    const file = c.mapFile.replace(/\.yaml$/, '-keys.yaml');
    await writeFile(
      file,
      text.replace(
        'shardKey: { column: tenant_id, type: bigint }',
        'shardKey: { column: tenant_id, type: bigint, columns: { tenants: id } }',
      ),
    );
    map = await loadShardMap(file);
  });
  afterAll(() => c.drop());

  for (const capture of ['trigger', undefined] as const) {
    it(`moves tenant 7, root row first (${capture ?? 'default'} capture)`, async () => {
      const from = capture ? 1 : 0;
      const to = 1 - from;
      const { move } = await moveTenant(map, 7, `shard-${to}`, capture ? { capture } : {});
      expect(move.state).toBe('done');
      expect(move.mode).toBe('trigger');
      expect(await c.sql(to, 'SELECT count(*)::int AS n FROM users WHERE tenant_id = 7')).toEqual([{ n: 50 }]);
      expect(await c.sql(to, 'SELECT name FROM tenants WHERE id = 7')).toEqual([{ name: 'T7' }]);
      expect(await c.sql(from, 'SELECT count(*)::int AS n FROM tenants WHERE id = 7')).toEqual([{ n: 0 }]);
      expect(await c.sql(from, 'SELECT count(*)::int AS n FROM users WHERE tenant_id = 7')).toEqual([{ n: 0 }]);
    });
  }

  it('a fenced move works too, and a row the target refuses fails the move naming the target', async () => {
    const e = await refusal(moveTenant(map, 9, 'shard-0', { mode: 'fenced' }));
    expect(e.message).toMatch(/shard shard-0: .*no_blocked/);
    const [m] = await movesOf(map, { tenant: '9' });
    expect(m!.state).toBe('failed');
    expect((await refusal(moveTenant(map, 9, 'shard-0'))).code).toBe('MOVE_IN_FLIGHT');
    expect((await abortMove(map, m!.id)).move.state).toBe('aborted');
    const e2 = await refusal(moveTenant(map, 9, 'shard-0', { capture: 'trigger' }));
    expect(e2.message).toMatch(/shard shard-0: .*no_blocked/);
    const [m2] = await movesOf(map, { tenant: '9' });
    expect((await abortMove(map, m2!.id)).move.state).toBe('aborted');
    expect(await c.sql(1, 'SELECT count(*)::int AS n FROM users WHERE tenant_id = 9')).toEqual([{ n: 50 }]);
    expect(await c.sql(0, 'SELECT count(*)::int AS n FROM users WHERE tenant_id = 9')).toEqual([{ n: 0 }]);
    expect(await replicationObjects(c, 1)).toEqual([]);
  });
});

describe('trigger capture: delta passes with every awkward type', () => {
  let c: TestCluster;
  beforeAll(async () => {
    c = await createTestCluster({ shards: 2, reference: ['plans'] });
    await applyMoveSchema(c);
    await loadMoveTenant(c, 1, 3, 60);
    await loadMoveTenant(c, 1, 5, 5);
  });
  afterAll(() => c.drop());

  it('identity, generated, bytea, jsonb, arrays and numeric rows written during the copy arrive exactly', async () => {
    let writing = true;
    let writes = 0;
    let fenced = false;
    const statements = [
      "INSERT INTO attachments (tenant_id, invoice_id, data, meta, labels, amount) VALUES (3, 1, '\\x00ff10', '{\"w\": [1, null]}', ARRAY['a', NULL], 1.0000000001)",
      "UPDATE attachments SET data = data || '\\x01'::bytea, amount = -amount WHERE tenant_id = 3 AND id = (SELECT min(id) + 1 FROM attachments WHERE tenant_id = 3)",
      "UPDATE invoices SET metadata = jsonb_build_object('n', random()), total = total + 0.01 WHERE tenant_id = 3 AND id = 1 + (floor(random() * 100))::int % 120",
      'DELETE FROM invoice_lines WHERE tenant_id = 3 AND ctid = (SELECT ctid FROM invoice_lines WHERE tenant_id = 3 LIMIT 1)',
      "UPDATE tenants SET settings = jsonb_build_object('t', clock_timestamp()::text) WHERE tenant_id = 3",
      "INSERT INTO users (tenant_id, id, email) SELECT 3, coalesce(max(id), 0) + 1, 'new' || (coalesce(max(id), 0) + 1) FROM users WHERE tenant_id = 3",
      // Another tenant's writes on the same tables must never reach the target.
      "UPDATE users SET name = 'other' WHERE tenant_id = 5",
    ];
    const load = (async () => {
      for (let i = 0; writing && !fenced; i++) {
        try {
          await c.sql(1, statements[i % statements.length]!);
          writes++;
        } catch (e) {
          if (isFenceError(e)) fenced = true;
          else throw e;
        }
      }
    })();
    const messages: string[] = [];
    const { move } = await moveTenant(c.map, 3, 'shard-0', {
      capture: 'trigger',
      keepSource: true,
      maxBytesPerSecond: 40_000,
      onProgress: (e) => messages.push(e.message ?? ''),
    });
    writing = false;
    await load;
    expect(move).toMatchObject({ state: 'switched', mode: 'trigger' });
    expect(writes).toBeGreaterThan(20);
    // The copy was slow enough for writes to land after its snapshot: a delta pass re-copied them.
    expect(messages.some((m) => /^delta pass \d+: [1-9]\d* changed row/.test(m))).toBe(true);
    // No write after the first fence: the kept source is the truth the target must equal row for row.
    expect(await tenantRows(c, 0, 3)).toEqual(await tenantRows(c, 1, 3));
    expect(await tenantRowCount(c, 0, 5)).toBe(0);
    const copied = moveReport(move).rows;
    expect(copied).toBeGreaterThan(0);
    expect((await cleanupMove(c.map, move.id)).move.state).toBe('done');
    expect(await tenantRowCount(c, 1, 3)).toBe(0);
    expect(await replicationObjects(c, 1)).toEqual([]);
    expect((await verifyCluster(c.map)).findings).toEqual([]);
  });
});
