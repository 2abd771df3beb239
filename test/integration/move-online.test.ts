import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import {
  abortMove,
  createRouter,
  isFenceError,
  loadShardMap,
  moveTenant,
  movesOf,
  planMove,
  resumeMove,
  verifyCluster,
  ShardctlError,
  type MoveEvent,
} from '../../src/index.js';
import { createTestCluster, serverAdminUrls, type TestCluster, noLogicalReplication } from '../harness/cluster.js';
import { applyMoveSchema, loadMoveTenant, tenantRowCount, tenantRows } from '../harness/move-fixture.js';
import { replicationObjects, writerMismatches } from '../harness/online.js';
import { refusal } from '../harness/refusal.js';
import { runCli } from '../harness/run-cli.js';
import { startWriter, type WriterReport } from '../harness/writer.js';
import { pollUntil, sleep } from '../../src/db/poll.js';

/** External-server mode only: a server without wal_level = logical cannot move by logical replication. */
const NO_LOGICAL = await noLogicalReplication();
if (NO_LOGICAL) console.warn(`${import.meta.filename}: logical-replication moves skipped: ${NO_LOGICAL}`);

let cluster: TestCluster;
// modulo over 2 shards: tenant t on shard t % 2
beforeAll(async () => {
  cluster = await createTestCluster({ shards: 2, reference: ['plans'] });
  await applyMoveSchema(cluster);
  for (const t of [1, 2, 3, 4, 5]) await loadMoveTenant(cluster, t % 2, t, t === 3 ? 400 : 5);
});
afterAll(() => cluster.drop());

/** Rows of a tenant in every table but `users` (the writer's table). */
async function fixedRows(shard: number, tenant: number) {
  const { users: _users, ...rest } = await tenantRows(cluster, shard, tenant);
  return rest;
}

describe.skipIf(Boolean(NO_LOGICAL))('online tenant moves', () => {
  it('keeps every acknowledged write of a concurrent writer; its only errors are fence rejections during the pause', async () => {
    const { attachments: _a, ...before } = await fixedRows(1, 3);
    const router = await createRouter(cluster.map, { directoryTtlMs: 60_000 });
    const writer = startWriter(router, [3, 1, 2], { concurrency: 3 });
    const events: MoveEvent[] = [];
    // Identity values taken on the source during the move: the target's sequence must end up past them.
    let inserting = true;
    let identityInserts = 0;
    const identities = (async () => {
      while (inserting) {
        try {
          await router.pools
            .pool(router.locate(3).shard)
            .query("INSERT INTO attachments (tenant_id, data) VALUES (3, '\\x01')");
          identityInserts++;
        } catch (e) {
          if (!isFenceError(e)) throw e;
          await router.refresh();
        }
        // Pacing, not a wait for something: a steady trickle of identity values during the move.
        await sleep(5);
      }
    })();
    let report: WriterReport;
    try {
      await writer.waitForWrites(30);
      const { move } = await moveTenant(cluster.map, 3, 'shard-0', { onProgress: (e) => events.push(e) });
      expect(move).toMatchObject({ state: 'done', mode: 'online' });
      // Writes of the moved tenant go on after the switch, through the router, on the new shard.
      await writer.waitForWrites(30, { tenant: 3 });
    } finally {
      inserting = false;
      await identities;
      report = await writer.stop();
      await router.close();
    }
    expect(identityInserts).toBeGreaterThan(10);
    for (let i = 0; i < 5; i++) await cluster.sql(0, 'INSERT INTO attachments (tenant_id) VALUES (3)');
    expect(report.otherErrors).toEqual([]);
    expect(report.writes).toBeGreaterThan(100);
    // Writes of the moving tenant went on after the switch, on the new shard.
    const where = (t: number) => (t === 3 ? 0 : t % 2);
    expect(await writerMismatches(cluster, report, where)).toEqual([]);
    const { attachments: _b, ...after } = await fixedRows(0, 3);
    expect(after).toEqual(before);
    expect(await tenantRowCount(cluster, 1, 3)).toBe(0);
    expect([...report.model.keys()].filter((k) => k.startsWith('3:')).length).toBeGreaterThan(5);
    expect(await replicationObjects(cluster, 0)).toEqual([]);
    expect(await replicationObjects(cluster, 1)).toEqual([]);
    // Phases reported in order, with the lag while replicating.
    const phases = [...new Set(events.map((e) => e.phase))];
    expect(phases.slice(0, 2)).toEqual(['syncing', 'replicating']);
    expect(events.some((e) => e.phase === 'replicating' && typeof e.lagBytes === 'number')).toBe(true);
    const [m] = await movesOf(cluster.map, { tenant: '3' });
    expect((m!.stats as { online?: { pauses: unknown[] } }).online?.pauses.length).toBeGreaterThanOrEqual(1);
    expect((await verifyCluster(cluster.map)).findings).toEqual([]);
  });

  it('lifts the fence when the drain does not fit the pause budget, loses no write, and switches on resume', async () => {
    const router = await createRouter(cluster.map, { directoryTtlMs: 60_000 });
    const writer = startWriter(router, [5, 4], { concurrency: 2 });
    let failure: ShardctlError | undefined;
    let report: WriterReport;
    try {
      await writer.waitForWrites(20);
      failure = await refusal(
        moveTenant(cluster.map, 5, 'shard-0', { maxPauseMs: 1, switchAttempts: 2, retryDelayMs: 50 }),
      );
      // The tenant stays on its shard, unfenced: the writer keeps writing there.
      const writesAtFailure = (
        await cluster.sql<{ n: string }>(1, 'SELECT count(*)::text AS n FROM users WHERE tenant_id = 5')
      ).map((r) => r.n)[0];
      const usersOf5 = async () =>
        (await cluster.sql<{ n: string }>(1, 'SELECT count(*)::text AS n FROM users WHERE tenant_id = 5')).map(
          (r) => r.n,
        )[0];
      await pollUntil(async () => (await usersOf5()) !== writesAtFailure, {
        timeoutMs: 20_000,
        intervalMs: 20,
        reason: 'a write of tenant 5 on shard-1 after the failure',
      });
      const later = await usersOf5();
      expect(later).not.toBe(writesAtFailure);
      expect(failure.code).toBe('PAUSE_BUDGET');
      expect(failure.message).toMatch(/pause budget of 1 ms/);
      const [m] = await movesOf(cluster.map, { tenant: '5' });
      expect(m).toMatchObject({ state: 'failed', failedIn: 'replicating', mode: 'online' });
      // replication keeps running while the move waits for its resume
      expect((await replicationObjects(cluster, 1)).some((o) => o.startsWith('slot '))).toBe(true);
      // the operator sees the slot, the WAL it keeps and its move
      const listed = await runCli(['-c', cluster.mapFile, 'moves']);
      expect(listed.code).toBe(0);
      expect(listed.stdout).toMatch(
        new RegExp(
          `replication slot shard-1: shardctl_move_${m!.id}_[0-9a-f]{8} retains [0-9.]+ [kMG]?B of WAL \\(streaming\\) \\(move ${m!.id}, failed\\)`,
        ),
      );
      const checked = await runCli(['-c', cluster.mapFile, 'shards', '--check']);
      expect(checked.stdout).toMatch(
        new RegExp(`replication slot shard-1: shardctl_move_${m!.id}_[0-9a-f]{8} retains`),
      );
      const { move } = await resumeMove(cluster.map, m!.id);
      expect(move.state).toBe('done');
      await writer.waitForWrites(20, { tenant: 5 });
    } finally {
      report = await writer.stop();
      await router.close();
    }
    expect(report.otherErrors).toEqual([]);
    expect(await writerMismatches(cluster, report, (t) => (t === 5 ? 0 : t % 2))).toEqual([]);
    expect(await tenantRowCount(cluster, 1, 5)).toBe(0);
    expect(await replicationObjects(cluster, 0)).toEqual([]);
    expect(await replicationObjects(cluster, 1)).toEqual([]);
  });
});

describe.skipIf(Boolean(NO_LOGICAL))('online moves and TRUNCATE', () => {
  it('a TRUNCATE of a tenant table during the move (not replicated) stops the switch; the resume copies again', async () => {
    const crashed = await runCli(['-c', cluster.mapFile, 'rebalance', '--tenant', '1', '--to', 'shard-0', '--yes'], {
      env: { SHARDCTL_TEST_CRASH_AT: 'after-state:replicating' },
    });
    expect(crashed.code).not.toBe(0);
    // Tombstones on shard-1 make the fence's TRUNCATE guard refuse; an operator bypassing it is still seen.
    await cluster.sql(1, "BEGIN; SET LOCAL shardctl.fence_bypass = 'on'; TRUNCATE attachments; COMMIT");
    const [m] = await movesOf(cluster.map, { tenant: '1' });
    const e = await refusal(resumeMove(cluster.map, m!.id));
    expect(e.code).toBe('TRUNCATED');
    expect(e.message).toMatch(/public\.attachments was truncated on shard-1 during the move/);
    expect((await movesOf(cluster.map, { tenant: '1' }))[0]).toMatchObject({ state: 'failed', failedIn: 'syncing' });
    const before = await tenantRows(cluster, 1, 1);
    const { move } = await resumeMove(cluster.map, m!.id);
    expect(move.state).toBe('done');
    expect(await tenantRows(cluster, 0, 1)).toEqual(before);
    expect(before.attachments).toEqual([]);
    expect(await replicationObjects(cluster, 0)).toEqual([]);
    expect(await replicationObjects(cluster, 1)).toEqual([]);
  });
});

describe.skipIf(Boolean(NO_LOGICAL))('online moves: a failed switch', () => {
  it('lifts the fence when the directory cannot be written, and the resume switches', async () => {
    // Fault injection on the catalog: the directory refuses the switch once.
    await cluster.sql(
      0,
      `CREATE FUNCTION public.refuse_switch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'directory unavailable'; END $$`,
    );
    await cluster.sql(
      0,
      'CREATE TRIGGER refuse_switch BEFORE INSERT OR UPDATE ON shardctl.placements FOR EACH ROW EXECUTE FUNCTION public.refuse_switch()',
    );
    const before = await fixedRows(0, 2);
    const e = await refusal(moveTenant(cluster.map, 2, 'shard-1'));
    expect(e.message).toMatch(/directory unavailable/);
    const [m] = await movesOf(cluster.map, { tenant: '2' });
    expect(m).toMatchObject({ state: 'failed', failedIn: 'replicating', mode: 'online' });
    // not fenced: the tenant's writes are accepted where it lives
    await cluster.sql(0, "UPDATE users SET name = 'after failed switch' WHERE tenant_id = 2 AND id = 1");
    await cluster.sql(0, 'DROP TRIGGER refuse_switch ON shardctl.placements');
    const { move } = await resumeMove(cluster.map, m!.id);
    expect(move.state).toBe('done');
    expect(await fixedRows(1, 2)).toEqual(before);
    expect(await cluster.sql(1, 'SELECT name FROM users WHERE tenant_id = 2 AND id = 1')).toEqual([
      { name: 'after failed switch' },
    ]);
    expect(await replicationObjects(cluster, 0)).toEqual([]);
    expect(await replicationObjects(cluster, 1)).toEqual([]);
  });
});

describe.skipIf(Boolean(NO_LOGICAL))('online moves and old snapshots', () => {
  it('waits for a REPEATABLE READ transaction older than the pause (it would not see the fence), names it, and resumes once it ends', async () => {
    const { default: pg } = await import('pg');
    const holder = new pg.Client({ connectionString: cluster.urls[0] });
    await holder.connect();
    try {
      await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await holder.query('SELECT count(*) FROM users');
      const pid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const e = await refusal(moveTenant(cluster.map, 4, 'shard-1', { waitMs: 800 }));
      expect(e.code).toBe('OLD_TRANSACTIONS');
      expect(e.message).toMatch(
        new RegExp(`older than the fence are still open on shard-0 after 800 ms \\(backend pids ${pid}\\)`),
      );
      // no pause was held: the tenant writes on
      await cluster.sql(0, "UPDATE users SET name = 'still writable' WHERE tenant_id = 4 AND id = 1");
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    const [m] = await movesOf(cluster.map, { tenant: '4' });
    expect(m).toMatchObject({ state: 'failed', failedIn: 'replicating' });
    expect((await resumeMove(cluster.map, m!.id)).move.state).toBe('done');
    expect(await cluster.sql(1, 'SELECT name FROM users WHERE tenant_id = 4 AND id = 1')).toEqual([
      { name: 'still writable' },
    ]);
  });
});

describe.skipIf(Boolean(NO_LOGICAL))('online moves and a dropped replication connection', () => {
  it('catches up after the walsender is killed while the move is away, and keeps writes made meanwhile', async () => {
    const crashed = await runCli(['-c', cluster.mapFile, 'rebalance', '--tenant', '4', '--to', 'shard-0', '--yes'], {
      env: { SHARDCTL_TEST_CRASH_AT: 'after-state:replicating' },
    });
    expect(crashed.code).not.toBe(0);
    // The subscription's worker connects on its own schedule: wait until it streams, then drop it.
    await pollUntil(
      async () =>
        (
          await cluster.sql(
            1,
            "SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE 'shardctl_move_%' AND active_pid IS NOT NULL AND database = current_database()",
          )
        ).length > 0,
      { timeoutMs: 10_000, intervalMs: 50, reason: 'the subscription to stream from the slot' },
    );
    // Fault: the replication connection drops; writes of the tenant go on meanwhile.
    const killed = await cluster.sql<{ ok: boolean }>(
      1,
      "SELECT pg_terminate_backend(active_pid) AS ok FROM pg_replication_slots WHERE slot_name LIKE 'shardctl_move_%' AND active_pid IS NOT NULL AND database = current_database()",
    );
    expect(killed.map((k) => k.ok)).toEqual([true]);
    await cluster.sql(
      1,
      "INSERT INTO users (tenant_id, id, email, name) VALUES (4, 990001, 'during@outage', 'written while disconnected')",
    );
    await cluster.sql(1, "UPDATE users SET name = 'updated while disconnected' WHERE tenant_id = 4 AND id = 1");
    const [m] = await movesOf(cluster.map, { tenant: '4' });
    const { move } = await resumeMove(cluster.map, m!.id);
    expect(move.state).toBe('done');
    expect(
      await cluster.sql(0, 'SELECT id::int, name FROM users WHERE tenant_id = 4 AND id IN (1, 990001) ORDER BY id'),
    ).toEqual([
      { id: 1, name: 'updated while disconnected' },
      { id: 990001, name: 'written while disconnected' },
    ]);
    expect(await tenantRowCount(cluster, 1, 4)).toBe(0);
    expect(await replicationObjects(cluster, 0)).toEqual([]);
    expect(await replicationObjects(cluster, 1)).toEqual([]);
  });
});

describe.skipIf(Boolean(NO_LOGICAL))('online moves refused', () => {
  let c2: TestCluster;
  beforeAll(async () => {
    c2 = await createTestCluster({ shards: 2 });
    for (const i of [0, 1]) {
      await c2.sql(i, 'CREATE TABLE notes (id bigint PRIMARY KEY, tenant_id bigint NOT NULL, body text)');
      await c2.sql(i, 'CREATE TABLE tags (tenant_id bigint NOT NULL, id bigint NOT NULL, PRIMARY KEY (tenant_id, id))');
    }
    await c2.sql(1, "INSERT INTO notes SELECT g, 1, 'n' || g FROM generate_series(1, 20) g");
    await c2.sql(1, 'INSERT INTO tags SELECT 1, g FROM generate_series(1, 5) g');
    await c2.sql(1, "INSERT INTO notes SELECT g, 3, 'n' || g FROM generate_series(21, 30) g");
    for (const i of [0, 1]) {
      await c2.sql(
        i,
        'CREATE TABLE events (tenant_id bigint NOT NULL, id bigint NOT NULL, body text, PRIMARY KEY (tenant_id, id)) PARTITION BY HASH (tenant_id)',
      );
      await c2.sql(i, 'CREATE TABLE events_0 PARTITION OF events FOR VALUES WITH (MODULUS 2, REMAINDER 0)');
      await c2.sql(i, 'CREATE TABLE events_1 PARTITION OF events FOR VALUES WITH (MODULUS 2, REMAINDER 1)');
    }
    await c2.sql(1, "INSERT INTO events SELECT t, g, 'e' FROM generate_series(1, 30) g, unnest(ARRAY[1, 3, 5]) t");
  });
  afterAll(() => c2.drop());

  it('names a table whose replica identity lacks the shard key: --capture logical refuses with the fix, --allow-offline moves fenced, the default takes the trigger capture', async () => {
    const e = await refusal(planMove(c2.map, 1, 'shard-0', { capture: 'logical' }));
    expect(e.code).toBe('ONLINE_UNSUPPORTED');
    expect(e.exitCode).toBe(7);
    expect(e.message).toMatch(/public\.notes does not contain tenant_id/);
    expect(e.message).toMatch(/REPLICA IDENTITY FULL/);
    expect(e.message).not.toMatch(/tags/);
    const preview = await planMove(c2.map, 1, 'shard-0');
    expect(preview).toMatchObject({ mode: 'trigger', capture: 'trigger' });
    expect(preview.captureReason).toMatch(/public\.notes does not contain tenant_id/);
    const cli = await runCli([
      '-c',
      c2.mapFile,
      'rebalance',
      '--tenant',
      '1',
      '--to',
      'shard-0',
      '--capture',
      'logical',
      '--yes',
    ]);
    expect(cli.code).toBe(7);
    expect(cli.stderr).toMatch(/cannot move online by logical replication/);
    expect(cli.stderr).toMatch(/--allow-offline/);
    expect(cli.stderr).not.toMatch(/\n\s+at /);
    expect(await replicationObjects(c2, 1)).toEqual([]);
    const dry = await runCli([
      '-c',
      c2.mapFile,
      'rebalance',
      '--tenant',
      '1',
      '--to',
      'shard-0',
      '--dry-run',
      '--capture',
      'logical',
      '--allow-offline',
    ]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/fenced: the tenant's writes are rejected until the switch/);
    expect(dry.stdout).toMatch(
      /not by logical replication because: shard-1: the replica identity of public\.notes does not contain tenant_id/,
    );
    const off = await runCli([
      '-c',
      c2.mapFile,
      'rebalance',
      '--tenant',
      '1',
      '--to',
      'shard-0',
      '--yes',
      '--capture',
      'logical',
      '--allow-offline',
      '--json',
    ]);
    expect(off.code, off.stderr).toBe(0);
    expect(JSON.parse(off.stdout).move).toMatchObject({ state: 'done', mode: 'fenced' });
    expect(await c2.sql(0, 'SELECT count(*)::int AS n FROM notes WHERE tenant_id = 1')).toEqual([{ n: 20 }]);
  });

  it('a target that cannot reach the source (bad replicationUrl) fails the move with the cause; abort leaves nothing', async () => {
    for (const i of [0, 1]) await c2.sql(i, 'ALTER TABLE notes REPLICA IDENTITY FULL');
    const text = await readFile(c2.mapFile, 'utf8');
    const bad = new URL(c2.urls[1]!);
    bad.port = '1';
    bad.password = 'secret-in-replication-url';
    const file = c2.mapFile.replace(/\.yaml$/, '-bad-repl.yaml');
    await writeFile(
      file,
      text.replace(`    url: ${c2.urls[1]}\n`, `    url: ${c2.urls[1]}\n    replicationUrl: ${bad.toString()}\n`),
    );
    const map = await loadShardMap(file);
    expect(map.shards[1]!.replicationUrl).toBeDefined();
    const e = await refusal(moveTenant(map, 3, 'shard-0', { connectWaitMs: 1500 }));
    expect(e.message).toMatch(/publisher|connect/);
    expect(e.message).not.toMatch(/secret-in-replication-url/);
    expect(e.hint ?? '').not.toMatch(/secret-in-replication-url/);
    const [m] = await movesOf(map, { tenant: '3' });
    expect(m).toMatchObject({ state: 'failed', mode: 'online' });
    expect((await abortMove(map, m!.id)).move.state).toBe('aborted');
    expect(await replicationObjects(c2, 0)).toEqual([]);
    expect(await replicationObjects(c2, 1)).toEqual([]);
    expect(await c2.sql(0, 'SELECT count(*)::int AS n FROM notes WHERE tenant_id = 3')).toEqual([{ n: 0 }]);
    expect(await c2.sql(1, 'SELECT count(*)::int AS n FROM notes WHERE tenant_id = 3')).toEqual([{ n: 10 }]);
  });

  it('moves online once the replica identity covers the key (REPLICA IDENTITY FULL)', async () => {
    for (const i of [0, 1]) await c2.sql(i, 'ALTER TABLE notes REPLICA IDENTITY FULL');
    // Other tenants of a partitioned table write during the move: none of it may reach the target.
    let writing = true;
    let n = 100;
    const others = (async () => {
      while (writing) {
        n++;
        await c2.sql(1, "INSERT INTO events VALUES (5, $1, 'other'), (3, $1, 'moving')", [n]).catch(() => undefined);
        await c2.sql(1, "UPDATE events SET body = 'changed' WHERE tenant_id = 5 AND id = $1", [(n % 30) + 1]);
      }
    })();
    const { move } = await moveTenant(c2.map, 3, 'shard-0');
    writing = false;
    await others;
    expect(move).toMatchObject({ state: 'done', mode: 'online' });
    expect(await c2.sql(0, 'SELECT count(*)::int AS n FROM events WHERE tenant_id = 5')).toEqual([{ n: 0 }]);
    expect(await c2.sql(1, 'SELECT count(*)::int AS n FROM events WHERE tenant_id = 3')).toEqual([{ n: 0 }]);
    const moving = await c2.sql<{ n: number }>(0, 'SELECT count(*)::int AS n FROM events WHERE tenant_id = 3');
    expect(moving[0]!.n).toBeGreaterThanOrEqual(30);
    // the bystander lost nothing: cleanups in a partitioned table delete only the moved tenant's rows
    expect(await c2.sql(1, 'SELECT count(*)::int AS n FROM events WHERE tenant_id = 5 AND id <= 30')).toEqual([
      { n: 30 },
    ]);
    expect(await c2.sql(0, 'SELECT count(*)::int AS n FROM notes WHERE tenant_id = 3')).toEqual([{ n: 10 }]);
    expect(await c2.sql(1, 'SELECT count(*)::int AS n FROM notes WHERE tenant_id = 3')).toEqual([{ n: 0 }]);
  });
});

describe.skipIf(Boolean(NO_LOGICAL))('online moves with a text shard key and awkward names', () => {
  let c3: TestCluster;
  beforeAll(async () => {
    c3 = await createTestCluster({ shards: 2, strategy: 'hash', keyType: 'text', buckets: 16 });
    for (const i of [0, 1]) {
      await c3.sql(
        i,
        'CREATE TABLE docs (tenant_id text NOT NULL, id int NOT NULL, body text, PRIMARY KEY (tenant_id, id))',
      );
      await c3.sql(i, 'CREATE SCHEMA "Odd Schema"');
      await c3.sql(
        i,
        'CREATE TABLE "Odd Schema"."Notes ""x""" ("Tenant Key" text, tenant_id text NOT NULL, "Id" uuid NOT NULL, at timestamptz NOT NULL, "Body" jsonb, PRIMARY KEY (tenant_id, "Id", at))',
      );
    }
  });
  afterAll(() => c3.drop());

  it("moves tenant o'hara with writes during the move, row for row", async () => {
    const tenant = "o'hara";
    const router = await createRouter(c3.map);
    const from = Number(router.locate(tenant).shard.slice(-1));
    // a bystander tenant on the same shard
    const other = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].find((t) => router.locate(t).shard === `shard-${from}`)!;
    await router.close();
    const to = 1 - from;
    await c3.sql(from, "INSERT INTO docs SELECT $1, g, 'b' || g FROM generate_series(1, 200) g", [tenant]);
    await c3.sql(from, "INSERT INTO docs SELECT $1, g, 'o' || g FROM generate_series(1, 20) g", [other]);
    await c3.sql(
      from,
      `INSERT INTO "Odd Schema"."Notes ""x""" SELECT 'k', $1, gen_random_uuid(), timestamptz '2026-01-01 10:00:00.123456+05' + g * interval '1 day', jsonb_build_object('g', g) FROM generate_series(1, 50) g`,
      [tenant],
    );
    let writing = true;
    let n = 0;
    // id -> body of every acknowledged update (writes rejected by the fence are not acknowledged)
    const acknowledged = new Map<number, string>();
    const writes = (async () => {
      while (writing) {
        n++;
        const id = 1 + (n % 200);
        // Acknowledged = a row was updated (after the cleanup, this old shard has no row to update).
        await c3
          .sql(from, 'UPDATE docs SET body = $2 WHERE tenant_id = $1 AND id = $3 RETURNING id', [tenant, `w${n}`, id])
          .then(
            (r) => r.length > 0 && acknowledged.set(id, `w${n}`),
            (e) => expect(isFenceError(e)).toBe(true),
          );
        await c3
          .sql(
            from,
            `UPDATE "Odd Schema"."Notes ""x""" SET "Body" = jsonb_build_object('n', $2::int) WHERE tenant_id = $1 AND at = (SELECT min(at) FROM "Odd Schema"."Notes ""x""" WHERE tenant_id = $1)`,
            [tenant, n],
          )
          .catch(() => undefined);
      }
    })();
    const { move } = await moveTenant(c3.map, tenant, `shard-${to}`);
    writing = false;
    await writes;
    expect(move).toMatchObject({ state: 'done', mode: 'online' });
    expect(n).toBeGreaterThan(0);
    const rows = async (i: number) => ({
      docs: (
        await c3.sql<{ r: string }>(i, 'SELECT x::text AS r FROM docs x WHERE tenant_id = $1 ORDER BY id', [tenant])
      ).map((r) => r.r),
      notes: (
        await c3.sql<{ r: string }>(
          i,
          `SELECT x::text AS r FROM "Odd Schema"."Notes ""x""" x WHERE tenant_id = $1 ORDER BY at`,
          [tenant],
        )
      ).map((r) => r.r),
    });
    const moved = await rows(to);
    expect(moved.docs).toHaveLength(200);
    expect(acknowledged.size).toBeGreaterThan(0);
    const bodies = new Map(
      (await c3.sql<{ id: number; body: string }>(to, 'SELECT id, body FROM docs WHERE tenant_id = $1', [tenant])).map(
        (r) => [r.id, r.body],
      ),
    );
    for (let id = 1; id <= 200; id++) expect(bodies.get(id), `doc ${id}`).toBe(acknowledged.get(id) ?? `b${id}`);
    expect(moved.notes).toHaveLength(50);
    expect(await rows(from)).toEqual({ docs: [], notes: [] });
    expect(await c3.sql(from, 'SELECT count(*)::int AS n FROM docs WHERE tenant_id = $1', [other])).toEqual([
      { n: 20 },
    ]);
    expect(await replicationObjects(c3, 0)).toEqual([]);
    expect(await replicationObjects(c3, 1)).toEqual([]);
    expect((await verifyCluster(c3.map)).findings).toEqual([]);
  });
});

describe.skipIf(Boolean(NO_LOGICAL))('online moves between two databases of one server', () => {
  let c4: TestCluster;
  // One shard more than servers: the last shard shares the first one's server (shard i on server i mod n).
  const n = serverAdminUrls().length + 1;
  const last = n - 1;
  beforeAll(async () => {
    c4 = await createTestCluster({ shards: n });
    for (let i = 0; i < n; i++)
      await c4.sql(
        i,
        'CREATE TABLE items (tenant_id bigint NOT NULL, id int NOT NULL, v text, PRIMARY KEY (tenant_id, id))',
      );
    await c4.sql(0, "INSERT INTO items SELECT $1::int8, g, 'v' || g FROM generate_series(1, 100) g", [n]);
    await c4.sql(0, "INSERT INTO items SELECT $1::int8, g, 'w' || g FROM generate_series(1, 10) g", [2 * n]);
  });
  afterAll(() => c4.drop());

  it('moves a tenant to another database of the same server', async () => {
    expect(new URL(c4.urls[0]!).port).toBe(new URL(c4.urls[last]!).port);
    const { move } = await moveTenant(c4.map, n, `shard-${last}`);
    expect(move).toMatchObject({ state: 'done', mode: 'online' });
    expect(await c4.sql(last, 'SELECT count(*)::int AS n FROM items WHERE tenant_id = $1', [n])).toEqual([{ n: 100 }]);
    expect(await c4.sql(0, 'SELECT tenant_id::int AS t, count(*)::int AS n FROM items GROUP BY 1')).toEqual([
      { t: 2 * n, n: 10 },
    ]);
    expect(await replicationObjects(c4, 0)).toEqual([]);
    expect(await replicationObjects(c4, last)).toEqual([]);
  });
});
