import type { PoolClient } from 'pg';
import { ensureCatalogSchema } from '../catalog/catalog-schema.js';
import { crashPoint } from '../crash-points.js';
import type { ShardPools } from '../db/shard-pools.js';
import { withTransaction } from '../db/transaction.js';
import { fromDriverError } from '../errors.js';
import {
  installChangeTracking,
  newChangeLogCursor,
  readChangedKeys,
  removeChangeTracking,
  type TenantKey,
} from './change-tracking.js';
import { copyErrorShard, tenantChecksums, type CopyProgress, type CopyStats } from './copy-tenant.js';
import { appliedId, copyDelta, pendingKeys, type AppliedKeys } from './delta-copy.js';
import { ensureFenceTriggers, raiseFence, waitForOlderWriters } from './fence.js';
import { tenantsLabel, tenantsOf, type MoveRecord } from './move-journal.js';
import type { Capture, MoveRun, Next, StepTable } from './move-run.js';
import { checkSchemaUnchanged, fail, PauseExceeded, syncSequences } from './online-move.js';
import {
  assertNotTruncated,
  budget,
  checkChanged,
  cutoverOf,
  nextAttempt,
  pauseWith,
  resumeInterruptedPause,
  waitForOlderExplained,
} from './online-steps.js';
import type { TenantTable } from './tenant-tables.js';
import { copyForMove } from './move-copy.js';
import { checksumMismatch, type TableChecksums } from './verify-copy.js';
import type { ShardctlError } from '../errors.js';

/**
 * Keys the target holds as of a change-log id, per run. A run that starts after the copy (a resume)
 * knows nothing yet: its first pass re-copies every logged key, which is always right, since every
 * change since the copy's snapshot is in the log.
 */
const appliedByRun = new WeakMap<MoveRun, AppliedKeys>();

function appliedOf(r: MoveRun): AppliedKeys {
  let a = appliedByRun.get(r);
  if (!a) appliedByRun.set(r, (a = new Map()));
  return a;
}

function who(r: MoveRun): TenantKey {
  return { tenant: tenantsOf(r.move), type: r.key.type };
}

/**
 * Installs, from nothing, what must be in place before the copy's snapshot: the fence triggers (so that
 * the pause takes no table lock) and the change log. Each table's triggers commit before the snapshot
 * is taken, so every write the snapshot does not see fires them.
 */
async function prepareSource(r: MoveRun, tables: TenantTable[]): Promise<void> {
  const m = r.move;
  const waitMs = r.options.waitMs ?? 30_000;
  // The log starts again from nothing: so does what this run has read of it.
  cutoverOf(r).log = newChangeLogCursor();
  await r.pools.withShard(m.target, (c) => ensureCatalogSchema(c));
  await r.pools.withShard(m.source, async (c) => {
    await removeChangeTracking(c, m.id, waitMs);
    await ensureFenceTriggers(c, tables, waitMs);
    await installChangeTracking(c, m.id, tables, r.key, tenantsOf(m), waitMs);
  });
}

/** The change log as the copy's snapshot sees it: each key with its latest id (the copy holds those changes). */
async function logInSnapshot(c: PoolClient, moveId: number): Promise<AppliedKeys> {
  const rows = await c.query<{ tbl: string; pk: string; last: string }>(
    'SELECT tbl, pk::text AS pk, max(id)::text AS last FROM shardctl.move_changes WHERE move_id = $1 AND pk IS NOT NULL GROUP BY tbl, pk',
    [moveId],
  );
  return new Map(rows.rows.map((x) => [appliedId(x.tbl, x.pk), Number(x.last)]));
}

/**
 * Copies the tenant in one exported snapshot of the source, with the source's checksums and the change
 * log's state in that same snapshot: a logged change either is visible there (its rows are in the copy,
 * and the log id read here says so) or is not (its log row is not visible either, so the first delta pass
 * finds its key not applied).
 */
async function copyInSnapshot(
  r: MoveRun,
  tables: TenantTable[],
): Promise<{ stats: CopyStats; sourceSums: TableChecksums; applied: AppliedKeys }> {
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
    return await r.pools.withClients([m.source, m.source], ([exporter, summer]) =>
      withTransaction(
        exporter!,
        async () => {
          const snapshot = (await exporter!.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0]!.s;
          const applied = await logInSnapshot(exporter!, m.id);
          const [stats, sourceSums] = await Promise.all([
            copyForMove(r, tables, { snapshot, onProgress, ...throttle }),
            tenantChecksums(summer!, tables, tenantsOf(m), r.key, { snapshot }),
          ]);
          return { stats, sourceSums, applied };
        },
        { isolation: 'repeatable read', readOnly: true },
      ),
    );
  } catch (e) {
    throw fromDriverError(e, { shard: copyErrorShard(e, m) });
  }
}

/** syncing: fence triggers and change log, then the snapshot copy, checked whole against the same snapshot. */
async function sync(r: MoveRun): Promise<Next> {
  const m = r.move;
  r.emit({ phase: 'syncing', message: `installing the change log on ${m.source}` });
  const tables = await r.tables();
  await prepareSource(r, tables);
  crashPoint('trigger:after-tracking');
  const { stats, sourceSums, applied } = await copyInSnapshot(r, tables);
  crashPoint('trigger:after-copy');
  r.emit({ phase: 'syncing', message: 'verifying the copy' });
  const targetSums = await r.pools.withShard(m.target, (c) => tenantChecksums(c, tables, tenantsOf(m), r.key));
  const detail = checksumMismatch(tables, sourceSums, targetSums);
  if (detail !== undefined)
    throw fail(
      `the copy does not match the source's snapshot: ${detail}`,
      'VERIFY_FAILED',
      'resume copies again',
      'syncing',
    );
  appliedByRun.set(r, applied);
  return {
    state: 'replicating',
    entry: {
      stats: { copy: stats },
      message: `copied ${stats.rows} rows, ${stats.bytes} bytes in ${stats.ms} ms; copying the changes`,
    },
  };
}

/** Whether every change-log trigger of the move is still in place (else writes may have gone unlogged). */
async function trackingIntact(r: MoveRun, tables: TenantTable[]): Promise<boolean> {
  const n = await r.pools.withShard(r.move.source, (c) =>
    c.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_trigger WHERE tgname LIKE $1 AND tgparentid = 0 AND tgenabled = 'A'`,
      [`shardctl\\_track\\_${r.move.id}\\_%`],
    ),
  );
  return n.rows[0]!.n === tables.length * 4;
}

/** Delta passes, writes flowing, until one is short enough to fit the pause (or `maxPasses` ran). */
async function catchUpPasses(r: MoveRun, src: PoolClient, dst: PoolClient, tables: TenantTable[]): Promise<void> {
  const m = r.move;
  const { maxPause } = budget(r);
  const applied = appliedOf(r);
  for (let pass = 1; pass <= 50; pass++) {
    const log = await readChangedKeys(src, m.id, cutoverOf(r).log);
    assertNotTruncated(r, log, ': the copy no longer stands');
    const t0 = performance.now();
    const keys = await copyDelta(src, dst, tables, who(r), log.keys, applied, m);
    const ms = performance.now() - t0;
    const left = [...pendingKeys(tables, log.keys, applied).values()].reduce((a, k) => a + k.length, 0);
    r.emit({
      phase: 'replicating',
      message: `delta pass ${pass}: ${keys} changed row(s) copied in ${Math.round(ms)} ms`,
    });
    // Short enough: the pause's own pass then copies what arrives in about as long.
    if (left === 0 && (keys < 200 || ms < maxPause / 4)) return;
  }
}

/**
 * replicating: re-copies the logged changes, writes flowing, until the rest fits the pause; then lets
 * older sessions end before the pause. The first attempt of a run goes on only while the change log's
 * triggers are all in place (else the move copies again).
 */
async function catchUp(r: MoveRun): Promise<Next> {
  const m = r.move;
  const cut = cutoverOf(r);
  const tables = await r.tables();
  if (cut.attempt === 0 && !(await trackingIntact(r, tables)))
    return { state: 'syncing', entry: { message: 'the change log of the move is gone or disabled: copying again' } };
  await nextAttempt(r, cut);
  const { maxPause, attempts } = budget(r);
  await r.pools.withClients([m.source, m.target], async ([src, dst]) => {
    await catchUpPasses(r, src!, dst!, tables);
    // Compare the rows changed so far while writes flow: the pause then compares only what changes
    // in the next moments (a row that differs now, being written, is compared again there).
    await checkChanged(r, cut, src!, dst!, tables, (await readChangedKeys(src!, m.id, cut.log)).keys);
    r.emit({
      phase: 'replicating',
      message: `caught up; pausing writes (attempt ${cut.attempt} of ${attempts}, budget ${maxPause} ms)`,
    });
    const now = (await src!.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x;
    await waitForOlderExplained(r, now, () => waitForOlderWriters(src!, now, r.options.waitMs ?? 30_000, m.source));
    // What was written while the checks and the wait ran: copied now, so the pause's own pass is short.
    await copyDelta(src!, dst!, tables, who(r), (await readChangedKeys(src!, m.id, cut.log)).keys, appliedOf(r), m);
  });
  return { state: 'fenced', entry: { message: `write pause, attempt ${cut.attempt}` } };
}

/** Inside the pause: fence, copy the last changes, check every changed row, re-read columns, move sequences. */
async function drainAndCheck(r: MoveRun, src: PoolClient, dst: PoolClient, deadline: number): Promise<void> {
  const m = r.move;
  const tables = await r.tables();
  const left = () => deadline - Date.now();
  await raiseFence(src, {
    tenant: tenantsOf(m),
    moveId: m.id,
    target: m.target,
    waitMs: Math.max(1, left()),
    shard: m.source,
  }).catch((e: unknown) => {
    if ((e as ShardctlError).code === 'OLD_TRANSACTIONS')
      throw new PauseExceeded('transactions older than the fence outlived the budget');
    throw e;
  });
  crashPoint('trigger:in-pause');
  // With the fence up and older writers gone, the log is complete: one pass copies the rest.
  const last = await readChangedKeys(src, m.id, cutoverOf(r).log);
  assertNotTruncated(r, last, '');
  const applied = appliedOf(r);
  while ((await copyDelta(src, dst, tables, who(r), last.keys, applied, m)) > 0)
    if (left() < 0) throw new PauseExceeded('the last changes did not fit');
  const bad = await checkChanged(r, cutoverOf(r), src, dst, tables, last.keys);
  if (bad.size > 0) {
    const detail = [...bad].map(([t, ks]) => `${t}: ${ks.length} row(s), e.g. key ${ks[0]}`).join('; ');
    throw fail(
      `after the last delta, rows of ${tenantsLabel(m)} differ between ${m.source} and ${m.target}: ${detail}`,
      'VERIFY_FAILED',
      'not switched; resume copies again, abort undoes the move',
      'syncing',
    );
  }
  await checkSchemaUnchanged(r, src, dst, tables);
  await syncSequences(src, dst, tables);
  if (left() < 0) throw new PauseExceeded('the checks did not finish');
}

/**
 * The trigger capture's steps up to `verified`: the change-log triggers record every written key of the
 * tenant, shardctl copies the snapshot and then the logged rows itself, over ordinary connections.
 *
 * @example
 * const next = await TRIGGER_STEPS.replicating.run(r); // { state: 'fenced', ... } once the delta is small
 */
export const TRIGGER_STEPS: StepTable<'planned' | 'syncing' | 'replicating' | 'fenced'> = {
  planned: {
    run: async () => ({ state: 'syncing', entry: { message: 'installing the change log and copying' } }),
  },
  syncing: { run: sync },
  replicating: { run: catchUp },
  fenced: { run: (r) => pauseWith(r, drainAndCheck), resume: resumeInterruptedPause },
};

async function teardownTrigger(pools: ShardPools, m: MoveRecord): Promise<void> {
  await pools.withShard(m.source, (c) => removeChangeTracking(c, m.id));
}

/**
 * Trigger capture: no logical replication, no subscription, the target never connects to the source;
 * needs the rights to create triggers on the tenant tables and to write the `shardctl` schema.
 */
export const TRIGGER_CAPTURE: Capture = {
  steps: TRIGGER_STEPS,
  fencedThroughCopy: false,
  teardown: { message: 'removing the change log', run: teardownTrigger },
};
