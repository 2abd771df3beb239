import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { abortMove, createRouter, moveTenant, movesOf, resumeMove, verifyCluster } from '../../src/index.js';
import {
  createTestCluster,
  noLogicalReplication,
  noPreparedTransactions,
  type TestCluster,
} from '../harness/cluster.js';
import { crashPointsOfRun } from '../harness/crash-sample.js';
import { applyMoveSchema, loadMoveTenant, MOVE_TABLES, tenantRows } from '../harness/move-fixture.js';
import { writerMismatches } from '../harness/online.js';
import { runCli } from '../harness/run-cli.js';
import { startWriter, type WriterReport } from '../harness/writer.js';

// A parallel copy: several streams, each its own target transaction, prepared and committed together.
// 3,500 users make 21,000 invoice lines: enough for the largest table to be split into key ranges.
const BIG = 3;
const SIZE = 3500;
// The crash matrix's tenant: 1,000 users make 11,001 rows, over the 10,000 of a parallel copy (move-copy.ts)
// and in six tables, so three streams each prepare their own transaction without splitting a table.
const CRASHED = 4;
const CRASHED_SIZE = 1000;

// External-server mode only (the suite's own servers allow both): a server with PostgreSQL's default
// max_prepared_transactions = 0 copies in one stream, saying why; one without wal_level = logical moves
// with the trigger capture only.
const NO_2PC = await noPreparedTransactions();
const NO_LOGICAL = await noLogicalReplication();
if (NO_2PC)
  console.warn(`${import.meta.filename}: the copy is expected in one stream, commit crash points skipped: ${NO_2PC}`);
if (NO_LOGICAL) console.warn(`${import.meta.filename}: the logical capture skipped: ${NO_LOGICAL}`);
const CAPTURES = NO_LOGICAL ? (['trigger'] as const) : (['logical', 'trigger'] as const);
/** Why the target refuses a parallel copy before looking at triggers: PostgreSQL's default allows no PREPARE. */
const NO_2PC_REASON =
  /the target allows 0 prepared transactions \(0 in use\) and a parallel copy prepares one per stream/;

let c: TestCluster;
beforeAll(async () => {
  // Every router here (the writer's too) reads the map's TTL: the cleanup's grace is 0.6 s, not 2.5 s.
  c = await createTestCluster({ shards: 2, reference: ['plans'], directoryTtl: '100ms' });
  await applyMoveSchema(c);
  await loadMoveTenant(c, 1, BIG, SIZE);
  await loadMoveTenant(c, 0, CRASHED, CRASHED_SIZE);
  // The fixture's attachments grow with their number (123 MB at this size): kept small, the rows are what counts.
  await c.sql(1, 'UPDATE attachments SET data = substr(data, 1, 64) WHERE tenant_id = $1', [BIG]);
  await c.sql(0, 'UPDATE attachments SET data = substr(data, 1, 64) WHERE tenant_id = $1', [CRASHED]);
  await loadMoveTenant(c, 1, 1, 5);
  await loadMoveTenant(c, 0, 2, 5);
});
afterAll(() => c.drop());

/** Prepared transactions on a shard's database (a parallel copy's, or anyone's). */
async function prepared(shard: number): Promise<string[]> {
  const r = await c.sql<{ gid: string }>(
    shard,
    'SELECT gid FROM pg_prepared_xacts WHERE database = current_database()',
  );
  return r.map((x) => x.gid);
}

/** The tenant's rows of every table but `users` (the one the writer writes). */
function unwritten(rows: Record<string, string[]>): Record<string, string[]> {
  return Object.fromEntries(Object.entries(rows).filter(([t]) => t !== 'users'));
}

/** Where the tenant lives now: the shard holding its rows after a move that ended done or aborted. */
async function where(tenant: number): Promise<number> {
  const router = await createRouter(c.map);
  try {
    return Number(router.locate(tenant).shard.replace('shard-', ''));
  } finally {
    await router.close();
  }
}

describe('parallel copy of a move', () => {
  it('copies in several streams with a writer running, for both captures: every row once, nothing left prepared', async () => {
    for (const capture of CAPTURES) {
      const from = await where(BIG);
      const to = 1 - from;
      // Each writer counts its ids from the same start: the previous writer's rows go first.
      await c.sql(from, 'DELETE FROM users WHERE tenant_id = $1 AND id >= 100000', [BIG]);
      const before = unwritten(await tenantRows(c, from, BIG));
      const router = await createRouter(c.map);
      const writer = startWriter(router, [BIG], { concurrency: 2, seed: capture === 'logical' ? 1 : 2 });
      let report: WriterReport;
      try {
        await writer.waitForWrites(20);
        const { move } = await moveTenant(c.map, BIG, `shard-${to}`, { capture, copyStreams: 3 });
        expect(move.state, capture).toBe('done');
        const copy = move.stats.copy as { streams: number; rows: number; singleStreamReason?: string };
        if (NO_2PC) {
          expect(copy.singleStreamReason, capture).toMatch(NO_2PC_REASON);
          expect(copy.streams, capture).toBe(1);
        } else {
          expect(copy.singleStreamReason, capture).toBeUndefined();
          expect(copy.streams, capture).toBe(3);
        }
        await writer.waitForWrites(20, { tenant: BIG });
      } finally {
        report = await writer.stop();
        await router.close();
      }
      expect(report.otherErrors, capture).toEqual([]);
      expect(await writerMismatches(c, report, () => to), capture).toEqual([]);
      expect(unwritten(await tenantRows(c, to, BIG)), capture).toEqual(before);
      expect(Object.values(await tenantRows(c, from, BIG)).flat(), capture).toEqual([]);
      expect([...(await prepared(0)), ...(await prepared(1))], capture).toEqual([]);
      expect((await verifyCluster(c.map)).findings, capture).toEqual([]);
    }
  }, 240_000);

  // Between the streams' end and their commit: before PREPARE, all prepared (no decision), the decision
  // journaled (nothing committed), one stream committed. Resume and abort in turn at each.
  const POINTS = ['before-copy-commit', 'copy:after-prepares', 'copy:after-decision', 'copy:after-first-commit'];
  const STILL_PREPARED: Record<string, number> = {
    'before-copy-commit': 0,
    'copy:after-prepares': 3,
    'copy:after-decision': 3,
    'copy:after-first-commit': 2,
  };
  // Each point resumed and aborted, the fenced and the trigger capture in turn. The SIGKILLed run is the
  // CLI's; the resume or abort after it runs the same library call in this process (one process start less).
  const RUNS = [...POINTS, ...POINTS].map((point, i) => ({
    point,
    abort: i >= POINTS.length,
    mode: i % 2 === 0 ? ['--offline'] : ['--capture', 'trigger'],
  }));
  // Without prepared transactions there is no parallel commit to interrupt (the copy is one stream).
  it.skipIf(Boolean(NO_2PC))(
    `resumes and aborts cleanly after a SIGKILL at ${POINTS.length} points of the commit`,
    async () => {
      for (const { point, abort, mode } of crashPointsOfRun(RUNS)) {
        const from = await where(CRASHED);
        const to = 1 - from;
        const expected = await tenantRows(c, from, CRASHED);
        const args = ['-c', c.mapFile, 'rebalance', '--tenant', String(CRASHED), '--to', `shard-${to}`, '--yes'];
        const run = await runCli([...args, ...mode, '--copy-streams', '3'], { env: { SHARDCTL_TEST_CRASH_AT: point } });
        expect(run.code, `${point}: killed (${run.stderr})`).not.toBe(0);
        expect((await prepared(to)).length, `${point}: prepared on the target`).toBe(STILL_PREPARED[point]);
        const [m] = await movesOf(c.map, { tenant: String(CRASHED) });
        const { move } = await (abort ? abortMove : resumeMove)(c.map, m!.id);
        expect(move.state, `${point}: ${abort ? 'abort' : 'resume'}`).toBe(abort ? 'aborted' : 'done');
        const now = abort ? from : to;
        expect(await where(CRASHED), point).toBe(now);
        expect(await tenantRows(c, now, CRASHED), `${point}: every row once on shard-${now}`).toEqual(expected);
        expect(
          Object.values(await tenantRows(c, 1 - now, CRASHED)).flat(),
          `${point}: none on shard-${1 - now}`,
        ).toEqual([]);
        expect([...(await prepared(0)), ...(await prepared(1))], `${point}: nothing left prepared`).toEqual([]);
        expect((await verifyCluster(c.map)).findings, point).toEqual([]);
      }
    },
    600_000,
  );

  it('falls back to one stream, saying why, where a parallel copy would skip a trigger of the application', async () => {
    const from = await where(BIG);
    const to = 1 - from;
    await c.sql(to, 'CREATE TABLE invoice_audit (tenant_id bigint, id bigint)');
    await c.sql(
      to,
      `CREATE FUNCTION audit_invoice() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO invoice_audit VALUES (NEW.tenant_id, NEW.id); RETURN NEW; END $$`,
    );
    await c.sql(to, 'CREATE TRIGGER audit AFTER INSERT ON invoices FOR EACH ROW EXECUTE FUNCTION audit_invoice()');
    try {
      const { move } = await moveTenant(c.map, BIG, `shard-${to}`, { mode: 'fenced', copyStreams: 4 });
      expect(move.state).toBe('done');
      expect(move.stats.copy).toMatchObject({ streams: 1 });
      // A target that prepares nothing refuses before the triggers are looked at.
      expect((move.stats.copy as { singleStreamReason: string }).singleStreamReason).toMatch(
        NO_2PC ? NO_2PC_REASON : /trigger audit on public\.invoices would not fire/,
      );
      // The one-stream copy fired the trigger for every copied invoice.
      const audited = await c.sql<{ n: number }>(
        to,
        'SELECT count(*)::int AS n FROM invoice_audit WHERE tenant_id = $1',
        [BIG],
      );
      expect(audited[0]!.n).toBe((await tenantRows(c, to, BIG)).invoices!.length);
      expect(audited[0]!.n).toBeGreaterThan(0);
    } finally {
      // The audit table has the shard key but no primary key: left behind, it would stop the next move
      // of a tenant from that shard.
      await c.sql(to, 'DROP TRIGGER audit ON invoices');
      await c.sql(to, 'DROP TABLE invoice_audit');
      await c.sql(to, 'DROP FUNCTION audit_invoice()');
    }
    // A small tenant copies in one stream whatever is asked.
    const small = await moveTenant(c.map, 1, `shard-${1 - (await where(1))}`, { mode: 'fenced', copyStreams: 4 });
    expect(small.move.stats.copy).toMatchObject({
      streams: 1,
      singleStreamReason: expect.stringMatching(/a small copy \(\d+ rows\)/),
    });
    expect(MOVE_TABLES).toContain('invoices');
  }, 120_000);
});
