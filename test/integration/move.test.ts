import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createRouter,
  moveTenant,
  movesOf,
  planMove,
  resumeMove,
  abortMove,
  verifyCluster,
  fencesOf,
} from '../../src/index.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';
import { applyMoveSchema, loadMoveTenant, tenantRowCount, tenantRows } from '../harness/move-fixture.js';
import { refusal } from '../harness/refusal.js';
import { runCli } from '../harness/run-cli.js';

let cluster: TestCluster;
// modulo over 3 shards: tenant t on shard t % 3
beforeAll(async () => {
  cluster = await createTestCluster({ shards: 3, reference: ['plans'], directoryTtl: '100ms' });
  await applyMoveSchema(cluster);
  for (const t of [1, 2, 3, 4, 5, 6, 7]) await loadMoveTenant(cluster, t % 3, t, t === 4 ? 40 : 3);
});
afterAll(() => cluster.drop());

describe('moving a tenant', () => {
  it('copies every row exactly, removes the source rows, switches the directory, and leaves other tenants alone', async () => {
    const before = await tenantRows(cluster, 1, 4);
    const others = { s1: await tenantRows(cluster, 1, 1), s2: await tenantRows(cluster, 2, 2) };
    expect(before.attachments!.length).toBe(40);
    const { move } = await moveTenant(cluster.map, 4, 'shard-2');
    expect(move.state).toBe('done');
    // The copy analyzed every table it filled: foreign-key checks and the app's first queries are
    // planned on real statistics, not on "empty" ones a previous move's cleanup left.
    const analyzed = await cluster.sql<{ relname: string }>(
      2,
      'SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL ORDER BY 1',
    );
    expect(analyzed.map((r) => r.relname)).toEqual(
      expect.arrayContaining(['attachments', 'invoice_lines', 'invoices', 'projects', 'tenants', 'users']),
    );
    expect(await tenantRows(cluster, 2, 4)).toEqual(before);
    expect(await tenantRowCount(cluster, 1, 4)).toBe(0);
    expect(await tenantRows(cluster, 1, 1)).toEqual(others.s1);
    expect(await tenantRows(cluster, 2, 2)).toEqual(others.s2);
    const router = await createRouter(cluster.map);
    try {
      expect(router.locate(4)).toMatchObject({ shard: 'shard-2', ruleShard: 'shard-1', override: true });
      const rows = await router
        .db<{ attachments: { id: string } }>(4)
        .selectFrom('attachments')
        .select('id')
        .where('tenant_id' as never, '=', 4 as never)
        .execute();
      expect(rows).toHaveLength(40);
    } finally {
      await router.close();
    }
    // the identity sequence on the target was advanced past every copied id
    const [seq] = await cluster.sql<{ next: string }>(
      2,
      "SELECT nextval(pg_get_serial_sequence('attachments', 'id'))::text AS next",
    );
    expect(Number(seq!.next)).toBeGreaterThan(40);
    // an app with a stale map writing to the old shard gets an error naming the move
    await expect(cluster.sql(1, "INSERT INTO users (tenant_id, id, email) VALUES (4, 999, 'stale@x')")).rejects.toThrow(
      /tenant 4 is fenced on this shard: tenant 4 moved to shard-2 by move \d+/,
    );
    await cluster.sql(1, "INSERT INTO users (tenant_id, id, email) VALUES (1, 999, 'fine@x')");
    expect((await verifyCluster(cluster.map)).findings).toEqual([]);
  });

  it('refuses bad moves before changing anything', async () => {
    expect((await refusal(planMove(cluster.map, 5, 'shard-9'))).message).toMatch(/unknown target shard "shard-9"/);
    expect((await refusal(planMove(cluster.map, 5, 'shard-9'))).exitCode).toBe(2);
    expect((await refusal(planMove(cluster.map, 5, 'shard-2'))).message).toMatch(/tenant 5 already lives on shard-2/);
    expect((await refusal(planMove(cluster.map, 99, 'shard-1'))).message).toMatch(/tenant 99 has no rows on shard-0/);
    expect((await refusal(planMove(cluster.map, 'x', 'shard-1'))).message).toMatch(/not an integer/);
    // primary keys already on the target: listed, nothing copied
    await cluster.sql(0, "INSERT INTO tenants (tenant_id, name, plan_id) VALUES (5, 'stray', 'free')");
    const conflict = await refusal(planMove(cluster.map, 5, 'shard-0'));
    expect(conflict.message).toMatch(
      /tenant 5 already has rows on shard-0: public\.tenants \(\(5\)\); nothing was copied/,
    );
    await cluster.sql(0, 'DELETE FROM tenants WHERE tenant_id = 5');
    // different columns
    await cluster.sql(0, 'ALTER TABLE users ADD COLUMN extra int');
    expect((await refusal(planMove(cluster.map, 5, 'shard-0'))).message).toMatch(
      /tenant tables differ between shard-2 and shard-0: public\.users/,
    );
    await cluster.sql(0, 'ALTER TABLE users DROP COLUMN extra');
    // different migration ledgers
    await cluster.sql(0, 'CREATE SCHEMA IF NOT EXISTS shardctl');
    const { ShardPools, ensureCatalogSchema } = await import('../../src/index.js');
    const pools = await ShardPools.open(cluster.map);
    await pools.withShard('shard-0', (c) => ensureCatalogSchema(c));
    await pools.close();
    await cluster.sql(
      0,
      "INSERT INTO shardctl.migrations (id, name, checksum, duration_ms, shardctl_version) VALUES ('0001', 'x', 'abc', 1, 't')",
    );
    expect((await refusal(planMove(cluster.map, 5, 'shard-0'))).message).toMatch(
      /shard-2 is at no migrations but shard-0 is at 0001 \(1 applied\)/,
    );
    await cluster.sql(0, 'DELETE FROM shardctl.migrations');
    // a tenant table without a primary key
    for (const i of [0, 1, 2]) await cluster.sql(i, 'CREATE TABLE notes (tenant_id bigint, body text)');
    expect((await refusal(planMove(cluster.map, 5, 'shard-0'))).message).toMatch(
      /tenant table\(s\) without a primary key: public\.notes/,
    );
    for (const i of [0, 1, 2]) await cluster.sql(i, 'DROP TABLE notes');
    // the CLI without a terminal and without --yes refuses, exit 2
    const cli = await runCli(['-c', cluster.mapFile, 'rebalance', '--tenant', '5', '--to', 'shard-0']);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toMatch(/pass --yes/);
    expect(await tenantRowCount(cluster, 0, 5)).toBe(0);
  });

  it('fenced (--offline): fences the tenant during the whole move, refuses a second move, and resumes after a crash', async () => {
    const before = await tenantRows(cluster, 2, 5);
    const crashed = await runCli(
      ['-c', cluster.mapFile, 'rebalance', '--tenant', '5', '--to', 'shard-0', '--yes', '--offline'],
      { env: { SHARDCTL_TEST_CRASH_AT: 'after-fence' } },
    );
    expect(crashed.code).not.toBe(0);
    // fenced: the tenant's writes are rejected by the database, other tenants write on
    await expect(cluster.sql(2, "UPDATE users SET name = 'x' WHERE tenant_id = 5")).rejects.toThrow(
      /tenant 5 is fenced on this shard: move \d+ of tenant 5 to shard-0 in progress/,
    );
    await expect(cluster.sql(2, 'TRUNCATE attachments')).rejects.toThrow(/TRUNCATE of attachments refused/);
    await cluster.sql(2, "UPDATE users SET name = 'y' WHERE tenant_id = 2");
    const second = await refusal(planMove(cluster.map, 5, 'shard-1'));
    expect(second.message).toMatch(
      /a move of tenant 5 is already in flight: move \d+ \(shard-2 -> shard-0\) is fenced/,
    );
    const report = await verifyCluster(cluster.map, { tenant: 5 });
    expect(report.findings.map((f) => f.kind)).toEqual(['unfinished-move']);
    const [m] = await movesOf(cluster.map, { tenant: '5' });
    const { move } = await resumeMove(cluster.map, m!.id);
    expect(move.state).toBe('done');
    expect(await tenantRows(cluster, 0, 5)).toEqual(before);
    expect(await tenantRowCount(cluster, 2, 5)).toBe(0);
  });

  it('aborts a move that has not switched: target rows removed, fence lifted, directory unchanged', async () => {
    const before = await tenantRows(cluster, 1, 7);
    const crashed = await runCli(['-c', cluster.mapFile, 'rebalance', '--tenant', '7', '--to', 'shard-2', '--yes'], {
      env: { SHARDCTL_TEST_CRASH_AT: 'after-state:verified' },
    });
    expect(crashed.code).not.toBe(0);
    expect(await tenantRowCount(cluster, 2, 7)).toBeGreaterThan(0);
    const [m] = await movesOf(cluster.map, { tenant: '7' });
    const { move } = await abortMove(cluster.map, m!.id);
    expect(move.state).toBe('aborted');
    expect(await tenantRowCount(cluster, 2, 7)).toBe(0);
    expect(await tenantRows(cluster, 1, 7)).toEqual(before);
    await cluster.sql(1, "UPDATE users SET name = 'writable again' WHERE tenant_id = 7");
    const fences = (await fencesOf(cluster.map)).flatMap((r) => (r.status === 'ok' ? r.value : []));
    expect(fences.find((f) => f.tenant === '7')).toBeUndefined();
    const router = await createRouter(cluster.map);
    expect(router.locate(7).shard).toBe('shard-1');
    await router.close();
    // a switched move cannot be aborted
    const done = (await movesOf(cluster.map, { tenant: '4' }))[0]!;
    expect((await refusal(abortMove(cluster.map, done.id))).message).toMatch(
      /already switched tenant 4 to shard-2: it cannot be aborted/,
    );
  });

  it('refuses a second process on the same move, and verify flags a fence no move explains', async () => {
    const crashed = await runCli(
      ['-c', cluster.mapFile, 'rebalance', '--tenant', '6', '--to', 'shard-1', '--yes', '--offline'],
      { env: { SHARDCTL_TEST_CRASH_AT: 'after-state:copying' } },
    );
    expect(crashed.code).not.toBe(0);
    const [m] = await movesOf(cluster.map, { tenant: '6' });
    // hold the move's lock as a running process would
    const { ShardPools, ADVISORY_NAMESPACE } = await import('../../src/index.js');
    const pools = await ShardPools.open(cluster.map);
    const holder = await pools.pool('shard-0').connect();
    await holder.query('SELECT pg_advisory_lock($1::int4, $2::int4)', [ADVISORY_NAMESPACE, 100_000 + m!.id]);
    try {
      const second = await runCli(['-c', cluster.mapFile, 'rebalance', '--resume', String(m!.id)]);
      expect(second.code).toBe(6);
      expect(second.stderr).toMatch(new RegExp(`move ${m!.id} is locked: held by pid \\d+`));
    } finally {
      holder.release(true);
      await pools.close();
    }
    expect((await resumeMove(cluster.map, m!.id)).move.state).toBe('done');
    // a fence row without a move: writes of tenant 2 rejected on shard-2 for no reason anyone knows
    await cluster.sql(
      2,
      "INSERT INTO shardctl.fences (tenant, move_id, target, reason) VALUES ('2', NULL, NULL, 'left by hand')",
    );
    const report = await verifyCluster(cluster.map);
    expect(report.findings).toEqual([expect.objectContaining({ kind: 'orphan-fence', shard: 'shard-2', tenant: '2' })]);
    const removed = await runCli([
      '-c',
      cluster.mapFile,
      'fences',
      'remove',
      '--tenant',
      '2',
      '--shard',
      'shard-2',
      '--yes',
    ]);
    expect(removed.stdout).toMatch(/fence of tenant 2 on shard-2 removed/);
    expect((await verifyCluster(cluster.map)).findings).toEqual([]);
  });

  it('keeps the source with --keep-source until moves cleanup', async () => {
    const r = await runCli([
      '-c',
      cluster.mapFile,
      'rebalance',
      '--tenant',
      '1',
      '--to',
      'shard-0',
      '--yes',
      '--keep-source',
      '--json',
    ]);
    expect(r.code).toBe(0);
    const move = JSON.parse(r.stdout).move;
    expect(move.state).toBe('switched');
    expect(await tenantRowCount(cluster, 1, 1)).toBeGreaterThan(0);
    const c = await runCli(['-c', cluster.mapFile, 'moves', 'cleanup', String(move.id)]);
    expect(c.stdout).toMatch(/: done/);
    expect(await tenantRowCount(cluster, 1, 1)).toBe(0);
    const list = await runCli(['-c', cluster.mapFile, 'moves', '--json']);
    expect(JSON.parse(list.stdout).moves.find((m: { id: number }) => m.id === move.id).state).toBe('done');
  });
});
