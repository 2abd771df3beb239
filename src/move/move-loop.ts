import { ensureCatalogSchema } from '../catalog/catalog-schema.js';
import type { ShardMap } from '../config/shard-map.js';
import { moveLockKey } from '../db/lock-keys.js';
import { withAdvisoryLock, type ShardPools } from '../db/shard-pools.js';
import { fromDriverError, ShardctlError } from '../errors.js';
import { FENCED_CAPTURE } from './fenced-steps.js';
import {
  readMove,
  SWITCHED_STATES,
  tenantsLabel,
  tenantsOf,
  transition,
  type MoveMode,
  type MoveRecord,
  type MoveState,
} from './move-journal.js';
import {
  journal,
  JournaledFailure,
  loadMove,
  moveRun,
  type Capture,
  type MoveRun,
  type Step,
  type StepTable,
} from './move-run.js';
import { ONLINE_CAPTURE } from './online-steps.js';
import type { MoveOptions } from './plan-move.js';
import { removeFence } from './fence.js';
import { SWITCH_STEPS } from './switch-steps.js';
import { TRIGGER_CAPTURE } from './trigger-steps.js';
import { settleCopyTransactions } from './move-copy.js';

/**
 * The capture of each move mode. A new capture is one more entry (and its steps), not a branch.
 *
 * @example
 * CAPTURES[move.mode].teardown?.run(pools, move);
 */
export const CAPTURES: Record<MoveMode, Capture> = {
  fenced: FENCED_CAPTURE,
  online: ONLINE_CAPTURE,
  trigger: TRIGGER_CAPTURE,
};

/** The whole step table of a move: its capture's steps, then the switch and cleanup. */
function stepTable(capture: Capture): Partial<StepTable> {
  return { ...capture.steps, ...SWITCH_STEPS };
}

function stepOf(table: Partial<StepTable>, m: MoveRecord, state: MoveState): Step {
  const step = table[state];
  if (!step)
    throw new ShardctlError(`move ${m.id} is ${state}, a state a ${m.mode} move never reaches`, { code: 'BAD_STATE' });
  return step;
}

/**
 * Runs a move's steps from its journal state, holding the move's lock on the catalog: a failed move
 * restarts from the step that failed, an interrupted one redoes its current step (every step is
 * idempotent).
 *
 * @example
 * const done = await drive(map, pools, 7, {}); done.state // 'done'
 */
export async function drive(map: ShardMap, pools: ShardPools, id: number, options: MoveOptions): Promise<MoveRecord> {
  // A move journaled by an older shardctl finishes with this one's journal (group members among it).
  await pools.withShard(map.catalog, (c) => ensureCatalogSchema(c));
  return pools.withShard(map.catalog, (lockClient) =>
    withAdvisoryLock(lockClient, moveLockKey(id), () => runMove(map, pools, id, options), {
      purpose: `move ${id}`,
      shard: map.catalog,
      timeoutMs: 3000,
    }),
  );
}

/**
 * The move loop: runs the step of the current state (its resume variant for the first one), journals
 * the state it names, and goes on until `done` or a step stops the run.
 */
async function runMove(map: ShardMap, pools: ShardPools, id: number, options: MoveOptions): Promise<MoveRecord> {
  const m = await loadMove(pools, map, id);
  if (m.state === 'done' || m.state === 'aborted') return m;
  const r = moveRun(map, pools, m, options, CAPTURES[m.mode]);
  // A parallel copy cut short holds locks on the target in prepared transactions: settled before any step.
  // A move still planned never copied (and its first step journals a failure to reach the target).
  const from = m.state === 'failed' ? (m.failedIn ?? 'planned') : m.state;
  if (from !== 'planned' && !SWITCHED_STATES.includes(m.state)) await settleCopyTransactions(pools, map.catalog, m);
  const table = stepTable(r.capture);
  let state: MoveState = m.state === 'failed' ? (m.failedIn ?? 'planned') : m.state;
  let first = true;
  try {
    while (state !== 'done') {
      const step = stepOf(table, m, state);
      const result = await (first && step.resume ? step.resume(r) : step.run(r));
      first = false;
      if ('stop' in result) break;
      await journal(pools, map, id, result);
      state = result.state;
    }
  } catch (e) {
    throw await failed(r, state, e);
  }
  return loadMove(pools, map, id);
}

/**
 * A capture that fences only inside a step (the online pause) never leaves writes blocked by a failure:
 * the fence goes, but only when the journal proves the switch did not commit (a lost reply to a COMMIT
 * that went through must not open the old shard to writes). Returns the state the failure is in.
 */
async function liftPauseFence(r: MoveRun, state: MoveState): Promise<MoveState> {
  const { map, pools, move: m } = r;
  if (r.capture.fencedThroughCopy || (state !== 'fenced' && state !== 'verified')) return state;
  const now = await pools.withShard(map.catalog, (c) => readMove(c, m.id)).catch(() => undefined);
  if (!now) return state;
  if (SWITCHED_STATES.includes(now.state)) return now.state;
  const lifted = await pools.withShard(m.source, (c) => removeFence(c, tenantsOf(m), m.id)).catch(() => false);
  // A switch that failed with the fence lifted goes back to catching up.
  return lifted && state === 'verified' ? 'replicating' : state;
}

/** Journals a failure (with the state a resume starts from) and returns the error the caller sees. */
async function failed(r: MoveRun, running: MoveState, e: unknown): Promise<ShardctlError> {
  const { map, pools, move: m } = r;
  const cause = e instanceof JournaledFailure ? e.error : e;
  const err = fromDriverError(cause);
  const state = await liftPauseFence(r, running);
  if (e instanceof JournaledFailure) {
    await journal(pools, map, m.id, e.entry).catch(() => undefined);
  } else if (!SWITCHED_STATES.includes(state)) {
    // Some failures invalidate the copy: the move then resumes from an earlier step.
    const restartFrom = (err.details as { restartFrom?: MoveState } | undefined)?.restartFrom ?? state;
    await pools
      .withShard(map.catalog, (c) =>
        transition(c, m.id, 'failed', { failedIn: restartFrom, error: err.message, message: `failed in ${state}` }),
      )
      .catch(() => undefined);
  }
  const fenced = r.capture.fencedThroughCopy && state !== 'planned' ? ' and is fenced there' : '';
  return new ShardctlError(`move ${m.id} of ${tenantsLabel(m)}: ${err.message}`, {
    code: err.code,
    exitCode: err.exitCode,
    hint: SWITCHED_STATES.includes(state)
      ? `the tenant already lives on ${m.target}; finish with \`shardctl rebalance --resume ${m.id}\``
      : `${tenantsLabel(m)} stay${tenantsOf(m).length > 1 ? '' : 's'} on ${m.source}${fenced}: ${err.hint ? `${err.hint}; ` : ''}\`shardctl rebalance --resume ${m.id}\` retries, \`shardctl rebalance --abort ${m.id}\` undoes the move`,
    ...(err.pg ? { pg: err.pg } : {}),
    ...(err.details !== undefined ? { details: err.details } : {}),
    cause,
  });
}
