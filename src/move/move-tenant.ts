import { crashPoint } from '../crash-points.js';
import { moveLockKey } from '../db/lock-keys.js';
import type { ShardMap } from '../config/shard-map.js';
import { ensureCatalogSchema } from '../catalog/catalog-schema.js';
import { withAdvisoryLock, type ShardPools } from '../db/shard-pools.js';
import { ExitCode, ShardctlError } from '../errors.js';
import { writeRuleState } from '../catalog/rule-state.js';
import { deleteTenantRows } from './copy-tenant.js';
import { settleCopyTransactions } from './move-copy.js';
import { removeFence } from './fence.js';
import { createMove, SWITCHED_STATES, tenantsLabel, tenantsOf, type MoveRecord } from './move-journal.js';
import { CAPTURES, drive } from './move-loop.js';
import { journal, loadMove, withMovePools } from './move-run.js';
import { planMove, refuse, type MoveOptions, type MovePreview, type MoveResult } from './plan-move.js';
import { readTenantTables } from './tenant-tables.js';

export { planMove, type MoveEvent, type MoveOptions, type MovePreview, type MoveResult } from './plan-move.js';

/**
 * Moves a tenant (or, given an array, a group of tenants of one shard together: one copy, one change
 * capture, one pause, one switch of all their directory entries) to another shard. Online (the default): its rows are copied in the snapshot of a
 * logical replication slot while writes continue, the changes replicate to the target, and writes
 * pause only to drain the last changes, check the rows changed since the copy and switch (at most
 * `maxPauseMs`, else the fence is lifted and the switch retried). Fenced: its writes are rejected on
 * the source for the whole copy. Other tenants are never blocked. Every step is
 * journaled before it runs, so {@link resumeMove} or {@link abortMove} can finish or undo it after a
 * crash. Returns the final journal record (state `done`, or `switched` with `keepSource`).
 *
 * @example
 * const { move } = await moveTenant(map, 123, 'shard-2', { onProgress: console.log });
 */
export async function moveTenant(
  map: ShardMap,
  tenantValue: unknown,
  to: string,
  options: MoveOptions = {},
): Promise<MoveResult> {
  const preview = await planMove(map, tenantValue, to, options);
  if (options.confirm && !(await options.confirm(preview))) {
    throw refuse('move not confirmed: nothing changed', 'NOT_CONFIRMED', undefined, undefined, ExitCode.Usage);
  }
  return withMovePools(map, options, async (pools) => {
    const move = await journalNewMove(pools, map, preview, options);
    crashPoint('after-plan');
    return { move: await drive(map, pools, move.id, options), preview };
  });
}

/** Creates the move's journal entry (`planned`); refuses while a move of the tenant is in flight. */
async function journalNewMove(
  pools: ShardPools,
  map: ShardMap,
  preview: MovePreview,
  options: MoveOptions,
): Promise<MoveRecord> {
  try {
    return await pools.withShard(map.catalog, async (c) => {
      await ensureCatalogSchema(c);
      await writeRuleState(c, map, { ifAbsent: true });
      return createMove(c, {
        tenant: preview.tenant,
        source: preview.source,
        target: preview.target,
        keepSource: options.keepSource ?? false,
        plan: {
          tables: preview.tables,
          captureReason: preview.captureReason,
          ...(preview.tenants ? { group: preview.tenants } : {}),
        },
        planId: options.planId ?? null,
        mode: preview.mode,
      });
    });
  } catch (e) {
    if ((e as ShardctlError).pg?.code === '23505')
      throw refuse(
        `a move of ${preview.tenants ? `one of tenants ${preview.tenants.join(', ')}` : `tenant ${preview.tenant}`} is already in flight`,
        'MOVE_IN_FLIGHT',
        'see `shardctl moves`',
      );
    throw e;
  }
}

/**
 * Continues a move from its journal: a failed move retries from the step that failed; a move
 * interrupted anywhere redoes its current step (every step is idempotent).
 *
 * @example
 * await resumeMove(map, 7);
 */
export async function resumeMove(map: ShardMap, id: number, options: MoveOptions = {}): Promise<MoveResult> {
  return withMovePools(map, options, async (pools) => ({ move: await drive(map, pools, id, options) }));
}

/**
 * Removes the source rows of a switched move kept with `--keep-source`, and finishes it.
 *
 * @example
 * await cleanupMove(map, 7);
 */
export async function cleanupMove(map: ShardMap, id: number, options: MoveOptions = {}): Promise<MoveResult> {
  return withMovePools(map, options, async (pools) => {
    const m = await loadMove(pools, map, id);
    if (m.state !== 'switched' && m.state !== 'cleaned') {
      throw refuse(
        `move ${id} is ${m.state}: only a switched move has source rows to clean up`,
        'BAD_STATE',
        undefined,
        undefined,
        ExitCode.Usage,
      );
    }
    if (m.keepSource)
      await pools.withShard(map.catalog, (c) =>
        c.query('UPDATE shardctl.moves SET keep_source = false WHERE id = $1', [id]),
      );
    return { move: await drive(map, pools, id, options) };
  });
}

/**
 * Undoes a move that has not switched: deletes what it copied to the target, removes its fence,
 * leaves the directory unchanged, and records `aborted`. A switched move cannot be aborted (move the
 * tenant back instead).
 *
 * @example
 * await abortMove(map, 7);
 */
export async function abortMove(map: ShardMap, id: number, options: MoveOptions = {}): Promise<MoveResult> {
  return withMovePools(map, options, (pools) =>
    pools.withShard(map.catalog, (lockClient) =>
      withAdvisoryLock(lockClient, moveLockKey(id), () => undo(pools, map, id, options), {
        purpose: `move ${id}`,
        shard: map.catalog,
      }),
    ),
  );
}

/** Refuses to abort a move that switched (or is done). */
function assertAbortable(m: MoveRecord): void {
  if (
    SWITCHED_STATES.includes(m.state) ||
    (m.state === 'failed' && m.failedIn !== null && SWITCHED_STATES.includes(m.failedIn))
  ) {
    throw refuse(
      `move ${m.id} already switched ${tenantsLabel(m)} to ${m.target}: it cannot be aborted`,
      'ALREADY_SWITCHED',
      `move them back with \`shardctl rebalance --tenant ${tenantsOf(m).join(',')} --to ${m.source}\``,
      undefined,
      ExitCode.Usage,
    );
  }
  if (m.state === 'done') throw refuse(`move ${m.id} is done`, 'ALREADY_DONE', undefined, undefined, ExitCode.Usage);
}

async function undo(pools: ShardPools, map: ShardMap, id: number, options: MoveOptions): Promise<MoveResult> {
  const m = await loadMove(pools, map, id);
  if (m.state === 'aborted') return { move: m };
  assertAbortable(m);
  // The capture first: the target's rows must not be written again while they are deleted.
  await CAPTURES[m.mode].teardown?.run(pools, m);
  const tables = (await pools.withShard(m.target, (c) => readTenantTables(c, map))).filter((t) =>
    m.plan.tables.some((p) => p.table === t.table),
  );
  const key = { column: map.shardKey.column, type: map.shardKey.type };
  // A parallel copy cut short may have left prepared transactions: settled first, then deleted with the rest.
  await settleCopyTransactions(pools, map.catalog, m);
  await pools.withShard(m.target, (c) =>
    deleteTenantRows(c, tables, tenantsOf(m), key, { batch: options.batch ?? 50_000 }),
  );
  crashPoint('abort-after-delete');
  await pools.withShard(m.source, (c) => removeFence(c, tenantsOf(m), id));
  await journal(pools, map, id, {
    state: 'aborted',
    entry: { message: `aborted: ${m.target} rows removed, fence lifted, tenant stays on ${m.source}` },
  });
  return { move: await loadMove(pools, map, id) };
}
