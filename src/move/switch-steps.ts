import type { PoolClient } from 'pg';
import { crashPoint } from '../crash-points.js';
import { setPlacement } from '../catalog/directory.js';
import { CLEANUP_MARGIN_MS } from '../config/shard-map.js';
import { sleep } from '../db/poll.js';
import { compileRule } from '../placement/placement.js';
import { parseTenant } from '../placement/tenant-key.js';
import { deleteTenantRows } from './copy-tenant.js';
import { addFence, removeFence } from './fence.js';
import { tenantsLabel, tenantsOf } from './move-journal.js';
import type { MoveRun, StepResult, StepTable } from './move-run.js';

/** The directory change, committed with the journal's `switched`. */
async function switchTenant(r: MoveRun): Promise<StepResult> {
  const m = r.move;
  r.emit({ phase: 'verified', message: `switching ${tenantsLabel(m)} to ${m.target}` });
  const rule = compileRule(r.map);
  return {
    state: 'switched',
    entry: { message: `${tenantsLabel(m)} now li${tenantsOf(m).length > 1 ? 've' : 'ves'} on ${m.target}` },
    // Every directory entry of a group in the one catalog transaction that journals `switched`.
    together: async (c) => {
      for (const tenant of tenantsOf(m))
        await setPlacement(c, tenant, m.target, {
          ruleShard: rule(parseTenant(tenant, r.map.shardKey.type)).shard.name,
          moveId: m.id,
        });
    },
  };
}

/**
 * Idempotent, so it also runs on resume: the fence on the source stays as a tombstone (a writer with a
 * stale map gets an error, not a lost row); a tombstone an earlier move left on the target goes, since
 * the tenant lives there again.
 */
async function tombstones(r: MoveRun): Promise<void> {
  const m = r.move;
  await r.pools.withShard(m.target, (c) => removeFence(c, tenantsOf(m)));
  await r.pools.withShard(m.source, async (c) => {
    for (const tenant of tenantsOf(m))
      await addFence(c, {
        tenant,
        moveId: m.id,
        target: m.target,
        reason: `tenant ${tenant} moved to ${m.target} by move ${m.id}`,
      });
  });
}

/** Waits until routers have had the time to re-read the directory since the switch. */
async function graceForRouters(r: MoveRun): Promise<void> {
  const switchedAt = await r.pools.withShard(r.map.catalog, (c) => switchTime(c, r.move.id));
  const grace = r.options.cleanupGraceMs ?? r.map.routers.directoryTtlMs + CLEANUP_MARGIN_MS;
  const wait = switchedAt + grace - Date.now();
  if (wait <= 0) return;
  r.emit({
    phase: 'cleanup',
    message: `waiting ${Math.ceil(wait / 100) / 10} s for routers to see the switch before deleting the source rows`,
  });
  // A fixed grace by design: routers re-read the directory on a timer, there is nothing to poll.
  await sleep(wait);
}

/**
 * Deletes the source rows in batches and returns the rows deleted per table. Each batch reports the
 * table's running total (a batch alone is not the table's count), and each table its final count.
 */
async function cleanupSource(r: MoveRun): Promise<Record<string, number>> {
  const m = r.move;
  const tables = await r.tables();
  r.emit({ phase: 'cleanup', message: `deleting the rows of ${tenantsLabel(m)} from ${m.source}` });
  let current = '';
  let sofar = 0;
  const finish = () => {
    if (current) r.emit({ phase: 'cleanup', table: current, deletedRows: sofar, message: 'table done' });
  };
  const batch = r.options.batch ?? 50_000;
  const deleted = await r.pools.withShard(m.source, (c) =>
    deleteTenantRows(c, tables, tenantsOf(m), r.key, {
      batch,
      onBatch: (table, rows) => {
        if (table !== current) finish();
        sofar = table === current ? sofar + rows : rows;
        current = table;
        // A full batch means more to come: the running total; the table's count follows when it is done.
        if (rows >= batch) r.emit({ phase: 'cleanup', table, rows, deletedRows: sofar });
        crashPoint('mid-cleanup');
      },
    }),
  );
  finish();
  return deleted;
}

async function afterSwitch(r: MoveRun): Promise<StepResult> {
  const m = r.move;
  await tombstones(r);
  const teardown = r.capture.teardown;
  if (teardown) {
    // Before the cleanup, which must never replicate to the target; after the tombstones, so that the
    // tenant's writes reach the target while this runs.
    r.emit({ phase: 'switched', message: teardown.message });
    await teardown.run(r.pools, m);
  }
  if (m.keepSource) {
    r.emit({
      phase: 'switched',
      message: `source rows kept on ${m.source}: remove them with \`shardctl moves cleanup ${m.id}\``,
    });
    return { stop: true };
  }
  await graceForRouters(r);
  const deleted = await cleanupSource(r);
  const total = Object.values(deleted).reduce((a, n) => a + n, 0);
  return {
    state: 'cleaned',
    entry: {
      stats: { cleanup: { tables: deleted, rows: total } },
      message: `${total} source rows of ${tenantsLabel(m)} deleted from ${m.source}`,
    },
  };
}

/**
 * The steps from `verified` on, the same for every capture.
 *
 * @example
 * const table = { ...capture.steps, ...SWITCH_STEPS };
 */
export const SWITCH_STEPS: StepTable<'verified' | 'switched' | 'cleaned'> = {
  verified: { run: switchTenant },
  switched: { run: afterSwitch },
  cleaned: { run: async () => ({ state: 'done', entry: { message: 'done' } }) },
};

/** When the move switched (ms since the epoch, by the catalog's clock compared to ours: now minus the age). */
async function switchTime(c: PoolClient, id: number): Promise<number> {
  const r = await c.query<{ age: number | null }>(
    "SELECT extract(epoch FROM clock_timestamp() - max(at)) * 1000 AS age FROM shardctl.move_events WHERE move_id = $1 AND state = 'switched'",
    [id],
  );
  return Date.now() - Number(r.rows[0]?.age ?? Number.POSITIVE_INFINITY);
}
