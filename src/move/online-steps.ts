import type { PoolClient } from 'pg';
import { ensureCatalogSchema } from '../catalog/catalog-schema.js';
import { crashPoint } from '../crash-points.js';
import { sleep } from '../db/poll.js';
import { fromDriverError, ShardctlError } from '../errors.js';
import {
  compareKeys,
  installChangeTracking,
  newChangeLogCursor,
  readChangedKeys,
  type ChangedKeys,
  type ChangeLogCursor,
} from './change-tracking.js';
import { copyErrorShard, tenantChecksums, type CopyProgress, type CopyStats } from './copy-tenant.js';
import { ensureFenceTriggers, raiseFence, removeFence, waitForOlderWriters } from './fence.js';
import type { Capture, MoveRun, Next, StepTable } from './move-run.js';
import {
  checkSchemaUnchanged,
  ensureReplicationName,
  fail,
  PauseExceeded,
  syncSequences,
  teardownOnline,
  waitConfirmed,
} from './online-move.js';
import {
  createSlotWithSnapshot,
  createTenantPublication,
  createTenantSubscription,
  readSlot,
  readSubscription,
  writeMark,
  type SlotSnapshot,
} from './replication.js';
import type { TenantTable } from './tenant-tables.js';
import { copyForMove } from './move-copy.js';
import type { PauseAttempt } from './move-report.js';
import { tenantsOf } from './move-journal.js';
import { olderSessions, whileWaiting, xidHolders } from './waits.js';
import { checksumMismatch, type TableChecksums } from './verify-copy.js';

/**
 * Installs on the source, from nothing (a repeated attempt drops what an earlier one left), what must be
 * in place before the slot's snapshot: the fence triggers (so that the pause takes no table lock), the
 * change log (every later write is then logged) and the publication.
 */
async function prepareSource(r: MoveRun, tables: TenantTable[], name: string): Promise<void> {
  const m = r.move;
  const waitMs = r.options.waitMs ?? 30_000;
  await teardownOnline(r.pools, m);
  // The log starts again from nothing: so does what this run has read of it.
  cutoverOf(r).log = newChangeLogCursor();
  await r.pools.withShard(m.target, (c) => ensureCatalogSchema(c));
  await r.pools.withShard(m.source, async (c) => {
    await ensureFenceTriggers(c, tables, waitMs);
    await installChangeTracking(c, m.id, tables, r.key, m.tenant, waitMs);
    await createTenantPublication(c, name, m.id, tables, r.key, m.tenant);
  });
}

/** Copies in the slot's snapshot with the source's checksum beside it, in the same snapshot. */
async function copyInSnapshot(
  r: MoveRun,
  tables: TenantTable[],
  slot: SlotSnapshot,
): Promise<{ stats: CopyStats; sourceSums: TableChecksums }> {
  const m = r.move;
  const totalRows = m.plan.tables.reduce((a, t) => a + t.rows, 0);
  const totalBytes = m.plan.tables.reduce((a, t) => a + t.bytes, 0);
  const onProgress = (p: CopyProgress) =>
    r.emit({
      phase: 'syncing',
      table: p.table,
      ...(p.rows >= 0 ? { rows: p.rows } : {}),
      bytes: p.bytes,
      totalRows,
      totalBytes,
    });
  const throttle = r.options.maxBytesPerSecond ? { maxBytesPerSecond: r.options.maxBytesPerSecond } : {};
  try {
    const [stats, sourceSums] = await Promise.all([
      copyForMove(r, tables, { snapshot: slot.snapshot, onProgress, ...throttle }),
      r.pools.withShard(m.source, (summer) =>
        tenantChecksums(summer, tables, m.tenant, r.key, { snapshot: slot.snapshot }),
      ),
    ]);
    return { stats, sourceSums };
  } catch (e) {
    throw fromDriverError(e, { shard: copyErrorShard(e, m) });
  } finally {
    await slot.release();
  }
}

/**
 * Creates the slot and, while PostgreSQL holds it back (a logical slot waits for every transaction
 * with a transaction id on the whole server, other databases included), reports each second which
 * sessions it waits for, from a second connection.
 */
async function createSlotExplained(r: MoveRun, name: string): Promise<SlotSnapshot> {
  const m = r.move;
  const action = `creating the replication slot on ${m.source}`;
  const cause =
    'a logical replication slot is created only once every transaction that holds a transaction id on the server has ended, in any database';
  return r.pools.withShard(m.source, (watcher) =>
    whileWaiting(
      () => createSlotWithSnapshot(r.pools.shard(m.source), name),
      () => xidHolders(watcher, [], 0),
      (sessions, elapsedMs) =>
        r.emit({ phase: 'syncing', message: action, wait: { action, cause, elapsedMs, sessions } }),
    ),
  );
}

/** syncing: change log, publication, slot, snapshot copy checked whole, subscription. */
async function sync(r: MoveRun): Promise<Next> {
  const m = r.move;
  const name = await ensureReplicationName(r);
  r.emit({ phase: 'syncing', message: `creating the publication and slot on ${m.source}` });
  const tables = await r.tables();
  await prepareSource(r, tables, name);
  crashPoint('online:after-publication');
  const slot = await createSlotExplained(r, name);
  crashPoint('online:after-slot');
  const { stats, sourceSums } = await copyInSnapshot(r, tables, slot);
  crashPoint('online:after-copy');
  r.emit({ phase: 'syncing', message: 'verifying the copy' });
  const targetSums = await r.pools.withShard(m.target, (c) => tenantChecksums(c, tables, m.tenant, r.key));
  const detail = checksumMismatch(tables, sourceSums, targetSums);
  if (detail !== undefined)
    throw fail(
      `the copy does not match the source's snapshot: ${detail}`,
      'VERIFY_FAILED',
      'resume copies again',
      'syncing',
    );
  const source = r.pools.shard(m.source);
  await r.pools.withShard(m.target, (c) => createTenantSubscription(c, name, source.replicationUrl ?? source.url));
  crashPoint('online:after-subscription');
  return {
    state: 'replicating',
    entry: {
      stats: { copy: stats },
      message: `copied ${stats.rows} rows, ${stats.bytes} bytes in ${stats.ms} ms; replicating`,
    },
  };
}

/** What the switch attempts of one run share: the keys already found equal, the pauses so far. */
export interface Cutover {
  attempt: number;
  delayMs: number;
  /** Keys found equal on both sides, with the log id they had then: a later change gives a new id. */
  verified: Map<string, number>;
  pauses: PauseAttempt[];
  /** The last catch-up's mark round trip, seconds: the lag the next pause starts from. */
  lagSeconds?: number;
  /** The change log read so far: each read takes only what committed since (reset when the log is). */
  log: ChangeLogCursor;
}

const cutovers = new WeakMap<MoveRun, Cutover>();

/** The switch attempts of a run (created on first use). */
export function cutoverOf(r: MoveRun): Cutover {
  let c = cutovers.get(r);
  if (!c)
    cutovers.set(
      r,
      (c = {
        attempt: 0,
        delayMs: r.options.retryDelayMs ?? 1000,
        verified: new Map(),
        pauses: [],
        log: newChangeLogCursor(),
      }),
    );
  return c;
}

/** The pause budget (`--max-pause`) and the number of switch attempts. */
export function budget(r: MoveRun): { maxPause: number; attempts: number } {
  return { maxPause: r.options.maxPauseMs ?? 1000, attempts: r.options.switchAttempts ?? 5 };
}

/**
 * Compares the logged rows not yet found equal at their current log id; returns the keys that differ.
 *
 * @example
 * const bad = await checkChanged(r, cutoverOf(r), src, dst, tables, (await readChangedKeys(src, r.move.id)).keys);
 */
export async function checkChanged(
  r: MoveRun,
  cut: Cutover,
  src: PoolClient,
  dst: PoolClient,
  tables: TenantTable[],
  log: ChangedKeys['keys'],
): Promise<Map<string, string[]>> {
  const id = (t: string, k: string) => `${t}\u0000${k}`;
  const todo = new Map(
    [...log].map(([t, ks]) => [t, [...ks].filter(([k, n]) => cut.verified.get(id(t, k)) !== n).map(([k]) => k)]),
  );
  const bad = await compareKeys(src, dst, tables, todo, { tenant: tenantsOf(r.move), type: r.key.type });
  for (const [t, ks] of todo) {
    const wrong = new Set(bad.get(t) ?? []);
    for (const k of ks) if (!wrong.has(k)) cut.verified.set(id(t, k), log.get(t)!.get(k)!);
  }
  return bad;
}

/** Fails the move (the copy is void) when the change log recorded a TRUNCATE of a tenant table. */
export function assertNotTruncated(r: MoveRun, changed: ChangedKeys, consequence: string): void {
  if (changed.truncated.length > 0)
    throw fail(
      `${changed.truncated.join(', ')} was truncated on ${r.move.source} during the move${consequence}`,
      'TRUNCATED',
      'resume copies again',
      'syncing',
    );
}

/** Before a retry: the budget's last attempt fails the move, others wait (doubling) and go on. */
export async function nextAttempt(r: MoveRun, cut: Cutover): Promise<void> {
  const { maxPause, attempts } = budget(r);
  if (cut.attempt >= attempts)
    throw new ShardctlError(
      `the final drain did not fit the pause budget of ${maxPause} ms in ${attempts} attempts; writes continued throughout`,
      {
        code: 'PAUSE_BUDGET',
        hint: `the tenant stays on ${r.move.source} and replication keeps running: resume later (\`shardctl rebalance --resume ${r.move.id}\`, maybe with a larger --max-pause) or abort`,
        details: { pauses: cut.pauses },
      },
    );
  if (cut.attempt > 0) {
    await sleep(cut.delayMs);
    cut.delayMs *= 2;
  }
  cut.attempt++;
}

/** Runs the wait for older sessions before a pause, naming them each second while it lasts. */
export async function waitForOlderExplained(r: MoveRun, xid: string, wait: () => Promise<void>): Promise<void> {
  const m = r.move;
  const action = `waiting before the pause for older sessions on ${m.source}`;
  const cause =
    'their transaction or snapshot started before the pause would begin: the pause would have to wait for them with writes stopped';
  await r.pools.withShard(m.source, (watcher) =>
    whileWaiting(
      wait,
      () => olderSessions(watcher, xid),
      (sessions, elapsedMs) =>
        r.emit({ phase: 'replicating', message: action, wait: { action, cause, elapsedMs, sessions } }),
    ),
  );
}

/**
 * replicating: catch up and check the rows changed so far, writes flowing; then the pause. The first
 * attempt of a run goes on only while the replication is in place (else the move copies again).
 */
async function catchUp(r: MoveRun): Promise<Next> {
  const m = r.move;
  const cut = cutoverOf(r);
  const gone = cut.attempt === 0 ? await replicationGone(r) : undefined;
  if (gone)
    return {
      state: 'syncing',
      entry: { message: `replication ${gone} of the move is gone or stopped: copying again` },
    };
  await nextAttempt(r, cut);
  const { maxPause, attempts } = budget(r);
  const tables = await r.tables();
  await r.pools.withClients([m.source, m.target], async ([src, dst]) => {
    const changed = await readChangedKeys(src!, m.id, cut.log);
    assertNotTruncated(r, changed, ': the copy no longer stands');
    const slot = await readSlot(src!, m.plan.replication!);
    const markedAt = performance.now();
    await waitConfirmed(r, src!, dst!, await writeMark(src!, m.id), Number.POSITIVE_INFINITY, 5);
    // The lag as a write sees it: how long a mark took to be applied on the target.
    const lagSeconds = (performance.now() - markedAt) / 1000;
    cut.lagSeconds = lagSeconds;
    // Rows still in flight differ now and are compared again in the pause.
    await checkChanged(r, cut, src!, dst!, tables, changed.keys);
    r.emit({
      phase: 'replicating',
      message: `caught up: a mark written on ${m.source} was applied on ${m.target} in ${Math.round(lagSeconds * 1000)} ms; pausing writes (attempt ${cut.attempt} of ${attempts}, budget ${maxPause} ms)`,
      lagBytes: slot.lagBytes,
      lagSeconds,
    });
    // Sessions already running with an older snapshot would hold the pause open: let them end first,
    // writes flowing, so that the pause only waits for what starts in the next milliseconds.
    const now = (await src!.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x;
    await waitForOlderExplained(r, now, () => waitForOlderWriters(src!, now, r.options.waitMs ?? 30_000, m.source));
  });
  return { state: 'fenced', entry: { message: `write pause, attempt ${cut.attempt}` } };
}

/** Inside the pause: fence, drain, check what changed, re-read columns, move sequences, within `deadline`. */
async function drainAndCheck(r: MoveRun, src: PoolClient, dst: PoolClient, deadline: number): Promise<void> {
  const m = r.move;
  const tables = await r.tables();
  const left = () => deadline - Date.now();
  await raiseFence(src, {
    tenant: m.tenant,
    moveId: m.id,
    target: m.target,
    waitMs: Math.max(1, left()),
    shard: m.source,
  }).catch((e: unknown) => {
    if ((e as ShardctlError).code === 'OLD_TRANSACTIONS')
      throw new PauseExceeded('transactions older than the fence outlived the budget');
    throw e;
  });
  crashPoint('online:in-pause');
  if (!(await waitConfirmed(r, src, dst, await writeMark(src, m.id), deadline, 2)))
    throw new PauseExceeded('the drain did not finish');
  const last = await readChangedKeys(src, m.id, cutoverOf(r).log);
  assertNotTruncated(r, last, '');
  const bad = await checkChanged(r, cutoverOf(r), src, dst, tables, last.keys);
  if (bad.size > 0) {
    const detail = [...bad].map(([t, ks]) => `${t}: ${ks.length} row(s), e.g. key ${ks[0]}`).join('; ');
    throw fail(
      `after the drain, rows of tenant ${m.tenant} differ between ${m.source} and ${m.target}: ${detail}`,
      'VERIFY_FAILED',
      'not switched; resume copies again, abort undoes the move',
      'syncing',
    );
  }
  await checkSchemaUnchanged(r, src, dst, tables);
  await syncSequences(src, dst, tables);
  if (left() < 0) throw new PauseExceeded('the checks did not finish');
}

function lagOf(cut: Cutover): { lagSeconds?: number } {
  return cut.lagSeconds === undefined ? {} : { lagSeconds: Math.round(cut.lagSeconds * 1000) / 1000 };
}

/**
 * fenced: the write pause, `drain` inside it (fence, last changes, checks); past its budget the fence is
 * lifted and the move goes back to replicating. Shared by the captures that pause only for the switch.
 *
 * @example
 * FENCED: { run: (r) => pauseWith(r, drainAndCheck) }
 */
export async function pauseWith(
  r: MoveRun,
  drain: (r: MoveRun, src: PoolClient, dst: PoolClient, deadline: number) => Promise<void>,
): Promise<Next> {
  const m = r.move;
  const cut = cutoverOf(r);
  const { maxPause, attempts } = budget(r);
  const t0 = performance.now();
  const deadline = Date.now() + maxPause;
  try {
    await r.pools.withClients([m.source, m.target], ([src, dst]) => drain(r, src!, dst!, deadline));
    const ms = Math.round(performance.now() - t0);
    cut.pauses.push({ attempt: cut.attempt, ms, outcome: 'switched', ...lagOf(cut) });
    return {
      state: 'verified',
      entry: {
        stats: { online: { pauses: cut.pauses, keysChecked: cut.verified.size } },
        message: `drained and verified in ${ms} ms; switching`,
      },
    };
  } catch (e) {
    const ms = Math.round(performance.now() - t0);
    // Writes resume whatever went wrong: the fence is only ever held inside a pause.
    await r.pools.withShard(m.source, (c) => removeFence(c, tenantsOf(m), m.id));
    if (!(e instanceof PauseExceeded)) throw e;
    cut.pauses.push({ attempt: cut.attempt, ms, outcome: e.message, ...lagOf(cut) });
    r.emit({
      phase: 'replicating',
      message: `pause budget exceeded (${e.message}); fence lifted after ${ms} ms`,
      pauseMs: ms,
    });
    const more = cut.attempt < attempts ? `, retrying in ${cut.delayMs} ms` : '';
    return {
      state: 'replicating',
      entry: {
        stats: { online: { pauses: cut.pauses } },
        message: `pause budget of ${maxPause} ms exceeded (${e.message}): fence lifted after ${ms} ms${more}`,
      },
    };
  }
}

/**
 * Names what of the move's replication is gone or stopped (the slot, the subscription), or undefined
 * when both are in place: a run that starts in replicating checks this before it catches up.
 */
async function replicationGone(r: MoveRun): Promise<string | undefined> {
  const m = r.move;
  const name = await ensureReplicationName(r);
  const [slot, sub] = await Promise.all([
    r.pools.withShard(m.source, (c) => readSlot(c, name)),
    r.pools.withShard(m.target, (c) => readSubscription(c, name)),
  ]);
  if (!slot.slot) return 'slot';
  return sub.exists && sub.enabled ? undefined : 'subscription';
}

/**
 * The online move's steps up to `verified`: logical replication, writes paused only to drain and check.
 *
 * @example
 * const next = await ONLINE_STEPS.fenced.run(r); // verified, or replicating when over the pause budget
 */
export const ONLINE_STEPS: StepTable<'planned' | 'syncing' | 'replicating' | 'fenced'> = {
  planned: {
    run: async (r) => {
      await ensureReplicationName(r);
      return { state: 'syncing', entry: { message: 'setting up replication and copying' } };
    },
  },
  syncing: { run: sync },
  replicating: { run: catchUp },
  fenced: { run: (r) => pauseWith(r, drainAndCheck), resume: resumeInterruptedPause },
};

/**
 * A run that starts inside a pause (interrupted there): writes resume first, the switch is tried again
 * within the budget.
 */
export async function resumeInterruptedPause(r: MoveRun): Promise<Next> {
  await r.pools.withShard(r.move.source, (c) => removeFence(c, tenantsOf(r.move), r.move.id));
  return {
    state: 'replicating',
    entry: { message: 'resumed after an interrupted pause: fence lifted, writes continue' },
  };
}

/** Online capture: logical replication of the tenant's rows plus a change log for the final checks. */
export const ONLINE_CAPTURE: Capture = {
  steps: ONLINE_STEPS,
  fencedThroughCopy: false,
  teardown: { message: 'removing the subscription, slot, publication and change log', run: teardownOnline },
};
