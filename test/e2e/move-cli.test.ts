import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRouter, moveTenant, movesOf, type MoveEvent, type MoveReport } from '../../src/index.js';
import {
  createScratchDatabase,
  createTestCluster,
  noLogicalReplication,
  type TestCluster,
} from '../harness/cluster.js';
import { applyMoveSchema, loadMoveTenant, MOVE_TABLES } from '../harness/move-fixture.js';
import { runCli, spawnCli } from '../harness/run-cli.js';
import { startWriter } from '../harness/writer.js';

/** External-server mode only: a server without wal_level = logical has no slots or subscriptions. */
const NO_LOGICAL = await noLogicalReplication();
if (NO_LOGICAL)
  console.warn(
    `${import.meta.filename}: the slot-creation test skipped, the report test moves by triggers: ${NO_LOGICAL}`,
  );
/** The capture an online move picks: logical replication where the servers allow it. */
const CAPTURE = NO_LOGICAL ? 'change-log triggers' : 'logical replication';

let cluster: TestCluster;
// modulo over 2 shards: tenant t on shard t % 2; shard-0 is on the server of the scratch database.
beforeAll(async () => {
  cluster = await createTestCluster({ shards: 2, reference: ['plans'] });
  await applyMoveSchema(cluster);
  for (const t of [2, 4, 6]) await loadMoveTenant(cluster, 0, t, t === 6 ? 40 : 5);
});
afterAll(() => cluster.drop());

/** Rows of a tenant per table on a shard. */
async function rowsPerTable(shard: number, tenant: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of MOVE_TABLES)
    out[`public.${t}`] = Number(
      (
        await cluster.sql<{ n: string }>(shard, `SELECT count(*)::text AS n FROM ${t} WHERE tenant_id = $1`, [tenant])
      )[0]!.n,
    );
  return out;
}

describe('what an operator sees during and after a move', () => {
  it.skipIf(Boolean(NO_LOGICAL))(
    'names the transaction of another database that holds back the slot creation, and goes on once it ends',
    async () => {
      const scratch = await createScratchDatabase();
      const holder = new pg.Client({ connectionString: scratch.url, application_name: 'long report' });
      await holder.connect();
      try {
        await holder.query('BEGIN');
        // A transaction id: what logical slot creation waits for, in any database of the server.
        await holder.query('SELECT pg_current_xact_id()');
        const pid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        const db = new URL(scratch.url).pathname.slice(1);
        const run = spawnCli(['-c', cluster.mapFile, 'rebalance', '--tenant', '2', '--to', 'shard-1', '--yes'], {
          timeoutMs: 90_000,
        });
        const seen = await run.waitForStderr(new RegExp(`pid ${pid} \\(database ${db}, application long report`), {
          timeoutMs: 30_000,
        });
        const line = seen.split('\n').find((l) => l.includes(`pid ${pid}`))!;
        // Other test files share the server: a session of theirs may be listed beside the holder.
        expect(line).toMatch(/creating the replication slot on shard-0: waiting [\d.]+ m?s for \d+ session\(s\)/);
        expect(line).toMatch(/idle in transaction, transaction open [\d.]+ s/);
        expect(line).toContain(`SELECT pg_terminate_backend(${pid})`);
        expect(line).toContain('commit or roll them back');
        await holder.query('COMMIT');
        const done = await run.done;
        expect(done.stderr).not.toMatch(/Error/);
        expect(done.code).toBe(0);
        expect(done.stdout).toMatch(/move \d+: tenant 2 shard-0 -> shard-1: done, writes paused \d+ ms/);
      } finally {
        await holder.end().catch(() => undefined);
        await scratch.drop();
      }
    },
  );

  // Without logical replication (external servers only) the move picks the change-log triggers, which
  // measure no replication lag: the same report, without the lag.
  it('reports rows per table, the pause a writer saw, the lag and the capture, in text and in JSON', async () => {
    const expected = await rowsPerTable(0, 4);
    const router = await createRouter(cluster.map, { directoryTtlMs: 60_000 });
    const writer = startWriter(router, [4], { concurrency: 2 });
    let text: Awaited<ReturnType<typeof runCli>>;
    try {
      await writer.waitForWrites(20);
      text = await runCli(['-c', cluster.mapFile, 'rebalance', '--tenant', '4', '--to', 'shard-1', '--yes'], {
        timeoutMs: 90_000,
      });
      await writer.waitForWrites(10, { tenant: 4 });
    } finally {
      await writer.stop();
      await router.close();
    }
    expect(text.code).toBe(0);
    const pause = /: done, writes paused (\d+) ms/.exec(text.stdout);
    expect(pause, text.stdout).not.toBeNull();
    expect(Number(pause![1])).toBeGreaterThan(0);
    expect(Number(pause![1])).toBeLessThan(1000);
    expect(text.stdout).toMatch(new RegExp(`capture: ${CAPTURE}; copied [\\d,]+ rows`));
    // A first pause over the budget (an old transaction outliving it on a busy machine) is lifted and
    // retried: the report lists every attempt, the last one switched.
    expect(text.stdout).toMatch(
      NO_LOGICAL
        ? /pause attempt \d+: writes paused \d+ ms: switched/
        : /pause attempt \d+: writes paused \d+ ms \(replication lag before it \d+ ms\): switched/,
    );
    expect(text.stdout).toMatch(/public\.invoice_lines\s*│\s*30\s*│/);
    const listed = JSON.parse((await runCli(['-c', cluster.mapFile, 'moves', '--json', '--tenant', '4'])).stdout) as {
      moves: { report: MoveReport }[];
    };
    const report = listed.moves[0]!.report;
    expect(report.capture).toBe(CAPTURE);
    expect(report.state).toBe('done');
    // The writer writes users during the copy: every other table copied exactly the tenant's rows.
    for (const t of report.tables.filter((x) => x.table !== 'public.users'))
      expect([t.table, t.rows]).toEqual([t.table, expected[t.table]]);
    expect(report.tables.map((t) => t.table).sort()).toEqual(Object.keys(expected).sort());
    expect(report.switchPauseMs).toBeGreaterThan(0);
    expect(report.switchPauseMs).toBeLessThan(1000);
    expect(report.switchPauseMs).toBe(Number(pause![1]));
    if (NO_LOGICAL) expect(report.lagAtPauseSeconds).toBeUndefined();
    else expect(report.lagAtPauseSeconds).toBeGreaterThan(0);
    expect(report.pauses.at(-1)).toMatchObject({ outcome: 'switched' });
    expect(report.totalMs).toBeGreaterThan(report.copyMs);
    expect(report.bytesPerSecond).toBeGreaterThan(0);
  });

  it('counts every row the cleanup deletes, across batches', async () => {
    const before = await rowsPerTable(0, 6);
    const events: MoveEvent[] = [];
    const { move } = await moveTenant(cluster.map, 6, 'shard-1', { batch: 7, onProgress: (e) => events.push(e) });
    expect(move.state).toBe('done');
    const [m] = await movesOf(cluster.map, { tenant: '6' });
    const deleted = (m!.stats as { cleanup: { tables: Record<string, number>; rows: number } }).cleanup;
    expect(deleted.tables).toEqual(before);
    expect(deleted.rows).toBe(Object.values(before).reduce((a, n) => a + n, 0));
    // invoice_lines: 240 rows in batches of 7; the last event of the table says all of them.
    const lines = events.filter((e) => e.phase === 'cleanup' && e.table === 'public.invoice_lines');
    expect(lines.length).toBeGreaterThan(2);
    expect(lines.at(-1)!.deletedRows).toBe(before['public.invoice_lines']);
    expect(Object.values(await rowsPerTable(0, 6)).every((n) => n === 0)).toBe(true);
  });
});
