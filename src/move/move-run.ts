import type { PoolClient } from 'pg';
import type { ShardMap } from '../config/shard-map.js';
import { crashPoint } from '../crash-points.js';
import { ShardPools } from '../db/shard-pools.js';
import { ExitCode } from '../errors.js';
import { readMove, transition, type MoveRecord, type MoveState } from './move-journal.js';
import { DEFAULT_COPY_STREAMS, refuse, type MoveEvent, type MoveOptions } from './plan-move.js';
import { readTenantTables, type TenantTable } from './tenant-tables.js';

/** What a journal entry records besides the state (see {@link transition}). */
export type JournalEntry = NonNullable<Parameters<typeof transition>[3]>;

/** The state a step hands on to, journaled by the move loop before that state's step runs. */
export interface Next {
  state: MoveState;
  entry: JournalEntry;
  /** An action that must commit in the same catalog transaction as the journal entry (the switch). */
  together?: (catalog: PoolClient) => Promise<void>;
}

/**
 * A failure that names its own journal entry (with the state to restart from), which the move loop
 * records instead of the generic one.
 *
 * @example
 * throw new JournaledFailure(error, { state: 'failed', entry: { failedIn: 'copying', message: 'verification failed' } });
 */
export class JournaledFailure extends Error {
  constructor(
    readonly error: Error,
    readonly entry: Next,
  ) {
    super(error.message);
  }
}

/** What a step returns: the next state, or `stop` to end the run where it is (a switch that keeps the source). */
export type StepResult = Next | { stop: true };

/**
 * The action of one journal state: `run` is what follows the state in the normal course, `resume` what
 * follows it when a run starts there (after a crash or a failure), when that differs.
 */
export interface Step {
  run(r: MoveRun): Promise<StepResult>;
  resume?(r: MoveRun): Promise<StepResult>;
}

/** Steps by the journal state they follow. */
export type StepTable<S extends MoveState = MoveState> = Record<S, Step>;

/**
 * How a move keeps the target up to date until the switch: the steps from `planned` up to `verified`
 * (each step ends by naming the next state; the last names `verified`), and what to remove once the
 * move switched or is aborted. The switch and the cleanup after it are the same for every capture.
 * A new way of capturing changes is a new capture (and a new move mode), never a branch in the loop.
 *
 * @example
 * const capture: Capture = { steps: { planned: { run: async () => ({ state: 'verified', entry: {} }) } }, fencedThroughCopy: true };
 */
export interface Capture {
  /** Steps by the journal state they follow, for the capture's own states. */
  steps: Partial<StepTable>;
  /**
   * Whether the tenant stays fenced on the source between the capture's steps (the whole copy), so that a
   * failure leaves it fenced. False when the fence is only held inside a step (a write pause).
   */
  fencedThroughCopy: boolean;
  /** What the capture set up on the shards, removed after the switch and on abort (idempotent). */
  teardown?: { message: string; run(pools: ShardPools, move: MoveRecord): Promise<void> };
}

/** The shard key as the copy and the checks use it. */
export interface MoveKey {
  column: string;
  type: string;
}

/** Everything a step needs: one per run of the move loop. */
export interface MoveRun {
  map: ShardMap;
  pools: ShardPools;
  move: MoveRecord;
  options: MoveOptions;
  key: MoveKey;
  capture: Capture;
  emit(e: Omit<MoveEvent, 'moveId'>): void;
  /** The move's tenant tables as the source has them now, limited to the planned ones (read once per run). */
  tables(): Promise<TenantTable[]>;
}

/**
 * Builds the context of one run of a move.
 *
 * @example
 * const r = moveRun(map, pools, move, options, CAPTURES[move.mode]); await FENCED_STEPS.copying.run(r);
 */
export function moveRun(
  map: ShardMap,
  pools: ShardPools,
  move: MoveRecord,
  options: MoveOptions,
  capture: Capture,
): MoveRun {
  let tables: TenantTable[] | undefined;
  return {
    map,
    pools,
    move,
    options,
    capture,
    key: { column: map.shardKey.column, type: map.shardKey.type },
    emit: (e) => options.onProgress?.({ moveId: move.id, ...e }),
    tables: async () =>
      (tables ??= (await pools.withShard(move.source, (c) => readTenantTables(c, map))).filter((t) =>
        move.plan.tables.some((p) => p.table === t.table),
      )),
  };
}

/**
 * Journals a state (with the action that must commit with it, if any) in one catalog transaction, then
 * passes the state's crash point.
 *
 * @example
 * await journal(pools, map, 7, { state: 'copying', entry: { message: 'copying' } });
 */
export async function journal(pools: ShardPools, map: ShardMap, id: number, next: Next): Promise<void> {
  await pools.withTransaction(map.catalog, async (c) => {
    await next.together?.(c);
    await transition(c, id, next.state, next.entry);
  });
  crashPoint(`after-state:${next.state}`);
}

/**
 * Opens the pools of a move command: every move command connects the same way.
 *
 * @example
 * const pools = await openMovePools(map, { timeoutMs: 2000 });
 */
export function openMovePools(map: ShardMap, options: MoveOptions): Promise<ShardPools> {
  return ShardPools.open(map, {
    connectTimeoutMs: options.timeoutMs ?? 5000,
    // A parallel copy holds a source and a target session per stream, beside the snapshot and checksum
    // sessions and, where the catalog is the source or target, the move's lock and its journal writes.
    maxPerShard: Math.max(4, (options.copyStreams ?? DEFAULT_COPY_STREAMS) + 5),
    applicationName: 'shardctl move',
  });
}

/**
 * Runs `fn` with the pools of a move command and closes them whatever happens.
 *
 * @example
 * await withMovePools(map, {}, (pools) => loadMove(pools, map, 7));
 */
export async function withMovePools<T>(
  map: ShardMap,
  options: MoveOptions,
  fn: (pools: ShardPools) => Promise<T>,
): Promise<T> {
  const pools = await openMovePools(map, options);
  try {
    return await fn(pools);
  } finally {
    await pools.close();
  }
}

/**
 * Reads a move from the catalog's journal, or refuses naming it.
 *
 * @example
 * const m = await loadMove(pools, map, 7); m.state // 'copying'
 */
export async function loadMove(pools: ShardPools, map: ShardMap, id: number): Promise<MoveRecord> {
  const m = await pools.withShard(map.catalog, (c) => readMove(c, id));
  if (!m)
    throw refuse(
      `no move ${id} in the journal of ${map.catalog}`,
      'UNKNOWN_MOVE',
      'list moves with `shardctl moves`',
      undefined,
      ExitCode.Usage,
    );
  return m;
}
