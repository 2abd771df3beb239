import { crashPoint } from '../crash-points.js';
import { moveLockKey } from '../db/lock-keys.js';
import type { ShardMap } from '../config/shard-map.js';
import { ensureCatalogSchema } from '../catalog/catalog-schema.js';
import { setPlacement } from '../catalog/directory.js';
import { ShardPools, withAdvisoryLock } from '../db/shard-pools.js';
import { ExitCode, fromDriverError, ShardctlError } from '../errors.js';
import { compileRule } from '../placement/placement.js';
import { parseTenant } from '../placement/tenant-key.js';
import { writeRuleState } from '../catalog/rule-state.js';
import { copyTenant, deleteTenantRows, tenantChecksums, type CopyProgress } from './copy-tenant.js';
import { addFence, fenceTenant, removeFence } from './fence.js';
import {
  createMove,
  readMove,
  SWITCHED_STATES,
  transition,
  type MovePlanRecord,
  type MoveRecord,
  type MoveState,
} from './move-journal.js';
import { runOnlinePhases, teardownOnline } from './online-move.js';
import { planMove, refuse, type MoveEvent, type MoveOptions, type MovePreview, type MoveResult } from './plan-move.js';
import { readTenantTables, type TenantTable } from './tenant-tables.js';

export { planMove, type MoveEvent, type MoveOptions, type MovePreview, type MoveResult } from './plan-move.js';

function key(map: ShardMap) {
  return { column: map.shardKey.column, type: map.shardKey.type };
}

/**
 * Moves a tenant to another shard. Online (the default): its rows are copied in the snapshot of a
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
  const pools = await ShardPools.open(map, {
    connectTimeoutMs: options.timeoutMs ?? 5000,
    maxPerShard: 4,
    applicationName: 'shardctl move',
  });
  try {
    const plan: MovePlanRecord = { tables: preview.tables };
    let move: MoveRecord;
    try {
      move = await pools.withShard(map.catalog, async (c) => {
        await ensureCatalogSchema(c);
        await writeRuleState(c, map, { ifAbsent: true });
        return createMove(c, {
          tenant: preview.tenant,
          source: preview.source,
          target: preview.target,
          keepSource: options.keepSource ?? false,
          plan,
          planId: options.planId ?? null,
          mode: preview.mode,
        });
      });
    } catch (e) {
      if ((e as ShardctlError).pg?.code === '23505')
        throw refuse(
          `a move of tenant ${preview.tenant} is already in flight`,
          'MOVE_IN_FLIGHT',
          'see `shardctl moves`',
        );
      throw e;
    }
    crashPoint('after-plan');
    return { move: await drive(map, pools, move.id, options), preview };
  } finally {
    await pools.close();
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
  const pools = await ShardPools.open(map, {
    connectTimeoutMs: options.timeoutMs ?? 5000,
    maxPerShard: 4,
    applicationName: 'shardctl move',
  });
  try {
    return { move: await drive(map, pools, id, options) };
  } finally {
    await pools.close();
  }
}

async function loadMove(pools: ShardPools, map: ShardMap, id: number): Promise<MoveRecord> {
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

/** Runs a move's steps from its journal state, holding the move's lock on the catalog. */
async function drive(map: ShardMap, pools: ShardPools, id: number, options: MoveOptions): Promise<MoveRecord> {
  const lockClient = await pools.pool(map.catalog).connect();
  try {
    return await withAdvisoryLock(lockClient, moveLockKey(id), () => steps(map, pools, id, options), {
      purpose: `move ${id}`,
      shard: map.catalog,
      timeoutMs: 3000,
    });
  } finally {
    lockClient.release();
  }
}

async function record(
  pools: ShardPools,
  map: ShardMap,
  id: number,
  state: MoveState,
  extra: Parameters<typeof transition>[3] = {},
): Promise<void> {
  await pools.withShard(map.catalog, (c) => transition(c, id, state, extra));
  crashPoint(`after-state:${state}`);
}

async function steps(map: ShardMap, pools: ShardPools, id: number, options: MoveOptions): Promise<MoveRecord> {
  let m = await loadMove(pools, map, id);
  const emit = (e: Omit<MoveEvent, 'moveId'>) => options.onProgress?.({ moveId: id, ...e });
  if (m.state === 'done' || m.state === 'aborted') return m;
  let state: MoveState = m.state === 'failed' ? (m.failedIn ?? 'planned') : m.state;
  const k = key(map);
  let tables: TenantTable[] | undefined;
  const tenantTables = async () =>
    (tables ??= (await pools.withShard(m.source, (c) => readTenantTables(c, map))).filter((t) =>
      m.plan.tables.some((p) => p.table === t.table),
    ));
  try {
    if (m.mode === 'online' && !SWITCHED_STATES.includes(state)) {
      state = await runOnlinePhases(
        {
          map,
          pools,
          move: m,
          options,
          emit: (e) => emit(e),
          record: async (s2, extra) => {
            await record(pools, map, id, s2, extra ?? {});
            state = s2;
          },
          tables: tenantTables,
        },
        state,
      );
    } else {
      if (state === 'planned') {
        await record(pools, map, id, 'fenced', { message: `fencing tenant ${m.tenant} on ${m.source}` });
        state = 'fenced';
      }
      if (state === 'fenced') {
        emit({ phase: 'fenced', message: `fencing tenant ${m.tenant} on ${m.source}` });
        const ts = await tenantTables();
        await pools.withShard(m.source, (c) =>
          fenceTenant(c, {
            tenant: m.tenant,
            moveId: id,
            target: m.target,
            tables: ts.map((t) => t.table),
            keyColumn: k.column,
            waitMs: options.waitMs ?? 30_000,
            shard: m.source,
          }),
        );
        crashPoint('after-fence');
        await record(pools, map, id, 'copying', { message: 'copying' });
        state = 'copying';
      }
      if (state === 'copying') {
        const ts = await tenantTables();
        const totalRows = m.plan.tables.reduce((a, t) => a + t.rows, 0);
        const totalBytes = m.plan.tables.reduce((a, t) => a + t.bytes, 0);
        const src = await pools.pool(m.source).connect();
        const dst = await pools.pool(m.target).connect();
        let stats;
        try {
          stats = await copyTenant(src, dst, ts, m.tenant, k, {
            onProgress: (p: CopyProgress) =>
              emit({
                phase: 'copying',
                table: p.table,
                ...(p.rows >= 0 ? { rows: p.rows } : {}),
                bytes: p.bytes,
                totalRows,
                totalBytes,
              }),
            ...(options.maxBytesPerSecond ? { maxBytesPerSecond: options.maxBytesPerSecond } : {}),
          });
        } finally {
          src.release();
          dst.release();
        }
        crashPoint('after-copy');
        await record(pools, map, id, 'copied', {
          stats: { copy: stats },
          message: `copied ${stats.rows} rows, ${stats.bytes} bytes in ${stats.ms} ms`,
        });
        state = 'copied';
      }
      if (state === 'copied') {
        emit({ phase: 'copied', message: 'verifying' });
        const ts = await tenantTables();
        const [a, b] = await Promise.all([
          pools.withShard(m.source, (c) => tenantChecksums(c, ts, m.tenant, k)),
          pools.withShard(m.target, (c) => tenantChecksums(c, ts, m.tenant, k)),
        ]);
        const bad = ts.filter((t) => a[t.table]!.rows !== b[t.table]!.rows || a[t.table]!.sum !== b[t.table]!.sum);
        if (bad.length > 0) {
          const detail = bad
            .map(
              (t) =>
                `${t.table}: source ${a[t.table]!.rows} rows (checksum ${a[t.table]!.sum}), target ${b[t.table]!.rows} rows (checksum ${b[t.table]!.sum})`,
            )
            .join('; ');
          // Redo the copy on resume: the target's rows are not trusted.
          await record(pools, map, id, 'failed', {
            failedIn: 'copying',
            error: `verification failed: ${detail}`,
            message: 'verification failed',
          });
          throw refuse(
            `move ${id}: verification failed, not switched: ${detail}`,
            'VERIFY_FAILED',
            `the tenant stays on ${m.source} (still fenced): \`shardctl rebalance --resume ${id}\` copies again, \`--abort ${id}\` undoes the move`,
          );
        }
        await record(pools, map, id, 'verified', {
          stats: { verify: Object.fromEntries(ts.map((t) => [t.table, a[t.table]])) },
          message: 'source and target agree',
        });
        state = 'verified';
      }
    }
    if (state === 'verified') {
      emit({ phase: 'verified', message: `switching tenant ${m.tenant} to ${m.target}` });
      const rule = compileRule(map);
      // The directory change and the journal state commit together.
      await pools.withTransaction(map.catalog, async (c) => {
        await setPlacement(c, m.tenant, m.target, {
          ruleShard: rule(parseTenant(m.tenant, map.shardKey.type)).shard.name,
          moveId: id,
        });
        await transition(c, id, 'switched', { message: `tenant ${m.tenant} now lives on ${m.target}` });
      });
      crashPoint('after-state:switched');
      state = 'switched';
    }
    if (state === 'switched') {
      // Idempotent, so it also runs on resume: the fence on the source stays as a tombstone (a writer
      // with a stale map gets an error, not a lost row); a tombstone an earlier move left on the target
      // goes, since the tenant lives there again.
      await pools.withShard(m.target, (c) => removeFence(c, m.tenant));
      await pools.withShard(m.source, (c) =>
        addFence(c, {
          tenant: m.tenant,
          moveId: id,
          target: m.target,
          reason: `tenant ${m.tenant} moved to ${m.target} by move ${id}`,
        }),
      );
    }
    if (state === 'switched' && m.mode === 'online') {
      // Before the cleanup, which must never replicate to the target; after the tombstones, so that
      // the tenant's writes reach the target while this runs.
      emit({ phase: 'switched', message: 'removing the subscription, slot, publication and change log' });
      await teardownOnline(pools, m);
    }
    if (state === 'switched') {
      if (m.keepSource) {
        emit({
          phase: 'switched',
          message: `source rows kept on ${m.source}: remove them with \`shardctl moves cleanup ${id}\``,
        });
        return loadMove(pools, map, id);
      }
      const switchedAt = await pools.withShard(map.catalog, (c) => switchTime(c, id));
      const wait = switchedAt + (options.cleanupGraceMs ?? 2500) - Date.now();
      if (wait > 0) {
        emit({
          phase: 'cleanup',
          message: `waiting ${Math.ceil(wait / 100) / 10} s for routers to see the switch before deleting the source rows`,
        });
        await new Promise((r) => setTimeout(r, wait));
      }
      await cleanupSource(pools, map, m, await tenantTables(), options, emit);
      await record(pools, map, id, 'cleaned', {
        message: `source rows of tenant ${m.tenant} deleted from ${m.source}`,
      });
      state = 'cleaned';
    }
    if (state === 'cleaned') {
      await record(pools, map, id, 'done', { message: 'done' });
    }
    return loadMove(pools, map, id);
  } catch (e) {
    const err = fromDriverError(e);
    if (m.mode === 'online' && state === 'verified') {
      // The switch failed: an online move never holds writes past its pause, so the fence goes, but
      // only when the journal proves the switch did not commit (a lost reply to a COMMIT that went
      // through must not open the old shard to writes).
      const now = await pools.withShard(map.catalog, (c) => readMove(c, id)).catch(() => undefined);
      if (now?.state === 'verified') {
        const lifted = await pools.withShard(m.source, (c) => removeFence(c, m.tenant, id)).catch(() => false);
        if (lifted) state = 'replicating';
      } else if (now && SWITCHED_STATES.includes(now.state)) {
        state = now.state;
      }
    }
    // A fenced move's verification failure is journaled where it is found.
    if (!SWITCHED_STATES.includes(state) && !(err.code === 'VERIFY_FAILED' && m.mode !== 'online')) {
      // Some failures invalidate the copy: the move then resumes from an earlier step.
      const restartFrom = (err.details as { restartFrom?: MoveState } | undefined)?.restartFrom ?? state;
      await pools
        .withShard(map.catalog, (c) =>
          transition(c, id, 'failed', { failedIn: restartFrom, error: err.message, message: `failed in ${state}` }),
        )
        .catch(() => undefined);
    }
    throw new ShardctlError(`move ${id} of tenant ${m.tenant}: ${err.message}`, {
      code: err.code,
      exitCode: err.exitCode,
      hint: SWITCHED_STATES.includes(state)
        ? `the tenant already lives on ${m.target}; finish with \`shardctl rebalance --resume ${id}\``
        : `tenant ${m.tenant} stays on ${m.source}${state === 'planned' || m.mode === 'online' ? '' : ' and is fenced there'}: ${err.hint ? `${err.hint}; ` : ''}\`shardctl rebalance --resume ${id}\` retries, \`shardctl rebalance --abort ${id}\` undoes the move`,
      ...(err.pg ? { pg: err.pg } : {}),
      ...(err.details !== undefined ? { details: err.details } : {}),
      cause: e,
    });
  }
}

async function cleanupSource(
  pools: ShardPools,
  map: ShardMap,
  m: MoveRecord,
  tables: TenantTable[],
  options: MoveOptions,
  emit: (e: Omit<MoveEvent, 'moveId'>) => void,
): Promise<void> {
  emit({ phase: 'cleanup', message: `deleting tenant ${m.tenant}'s rows from ${m.source}` });
  await pools.withShard(m.source, (c) =>
    deleteTenantRows(c, tables, m.tenant, key(map), {
      batch: options.batch ?? 50_000,
      onBatch: (table, rows) => {
        emit({ phase: 'cleanup', table, rows });
        crashPoint('mid-cleanup');
      },
    }),
  );
}

/**
 * Removes the source rows of a switched move kept with `--keep-source`, and finishes it.
 *
 * @example
 * await cleanupMove(map, 7);
 */
export async function cleanupMove(map: ShardMap, id: number, options: MoveOptions = {}): Promise<MoveResult> {
  const pools = await ShardPools.open(map, {
    connectTimeoutMs: options.timeoutMs ?? 5000,
    maxPerShard: 4,
    applicationName: 'shardctl move',
  });
  try {
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
  } finally {
    await pools.close();
  }
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
  const pools = await ShardPools.open(map, {
    connectTimeoutMs: options.timeoutMs ?? 5000,
    maxPerShard: 4,
    applicationName: 'shardctl move',
  });
  try {
    const lockClient = await pools.pool(map.catalog).connect();
    try {
      return await withAdvisoryLock(
        lockClient,
        moveLockKey(id),
        async () => {
          const m = await loadMove(pools, map, id);
          if (m.state === 'aborted') return { move: m };
          if (
            SWITCHED_STATES.includes(m.state) ||
            (m.state === 'failed' && m.failedIn !== null && SWITCHED_STATES.includes(m.failedIn))
          ) {
            throw refuse(
              `move ${id} already switched tenant ${m.tenant} to ${m.target}: it cannot be aborted`,
              'ALREADY_SWITCHED',
              `move the tenant back with \`shardctl rebalance --tenant ${m.tenant} --to ${m.source}\``,
              undefined,
              ExitCode.Usage,
            );
          }
          if (m.state === 'done')
            throw refuse(`move ${id} is done`, 'ALREADY_DONE', undefined, undefined, ExitCode.Usage);
          // Replication first: the target's rows must not be written again while they are deleted.
          if (m.mode === 'online') await teardownOnline(pools, m);
          const tables = (await pools.withShard(m.target, (c) => readTenantTables(c, map))).filter((t) =>
            m.plan.tables.some((p) => p.table === t.table),
          );
          await pools.withShard(m.target, (c) =>
            deleteTenantRows(c, tables, m.tenant, key(map), { batch: options.batch ?? 50_000 }),
          );
          crashPoint('abort-after-delete');
          await pools.withShard(m.source, (c) => removeFence(c, m.tenant, id));
          await record(pools, map, id, 'aborted', {
            message: `aborted: ${m.target} rows removed, fence lifted, tenant stays on ${m.source}`,
          });
          return { move: await loadMove(pools, map, id) };
        },
        { purpose: `move ${id}`, shard: map.catalog },
      );
    } finally {
      lockClient.release();
    }
  } finally {
    await pools.close();
  }
}

/** When the move switched (ms since the epoch, by the catalog's clock compared to ours: now minus the age). */
async function switchTime(c: import('pg').PoolClient, id: number): Promise<number> {
  const r = await c.query<{ age: number | null }>(
    "SELECT extract(epoch FROM clock_timestamp() - max(at)) * 1000 AS age FROM shardctl.move_events WHERE move_id = $1 AND state = 'switched'",
    [id],
  );
  return Date.now() - Number(r.rows[0]?.age ?? Number.POSITIVE_INFINITY);
}
