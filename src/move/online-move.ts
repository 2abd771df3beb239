import { crashPoint } from '../crash-points.js';
import { randomBytes } from 'node:crypto';
import type { PoolClient } from 'pg';
import type { ShardMap } from '../config/shard-map.js';
import { ensureCatalogSchema } from '../catalog/catalog-schema.js';
import type { ShardPools } from '../db/shard-pools.js';
import { fromDriverError, ShardctlError } from '../errors.js';
import { compareKeys, installChangeTracking, readChangedKeys, removeChangeTracking } from './change-tracking.js';
import { copyTenant, tenantChecksums, type CopyProgress, type CopyStats } from './copy-tenant.js';
import { ensureFenceTriggers, raiseFence, removeFence, waitForOlderWriters } from './fence.js';
import type { MoveRecord, MoveState } from './move-journal.js';
import {
  createSlotWithSnapshot,
  createTenantPublication,
  createTenantSubscription,
  dropMoveReplication,
  markApplied,
  readSlot,
  readSubscription,
  replicationName,
  writeMark,
} from './replication.js';
import { readTenantTables, type TenantTable } from './tenant-tables.js';

/** Progress of an online move, as the move reports it. */
export interface OnlineEvent {
  phase: MoveState;
  message?: string;
  table?: string;
  rows?: number;
  bytes?: number;
  totalRows?: number;
  totalBytes?: number;
  /** Replication lag: WAL bytes the target has not confirmed. */
  lagBytes?: number;
  /** Replication lag in seconds (the walsender's replay lag). */
  lagSeconds?: number;
  /** Length of a write pause, ms (after it ended). */
  pauseMs?: number;
}

/** Options of the online phases (a subset of the move's options). */
export interface OnlineOptions {
  /** Longest write pause, ms: a drain that does not fit lifts the fence (`--max-pause`). Default 1000. */
  maxPauseMs?: number;
  /** Switch attempts before the move fails (writes continue). Default 5. */
  switchAttempts?: number;
  /** Wait between switch attempts, ms, doubled each time. Default 1000. */
  retryDelayMs?: number;
  /** How long the target may stay disconnected from the source's slot, ms. Default 30000. */
  connectWaitMs?: number;
  /** How long to wait for table locks while installing triggers, ms. Default 30000. */
  waitMs?: number;
  maxBytesPerSecond?: number;
}

/** What the online phases need from the move driver. */
export interface OnlineContext {
  map: ShardMap;
  pools: ShardPools;
  move: MoveRecord;
  options: OnlineOptions;
  emit: (e: OnlineEvent) => void;
  record: (state: MoveState, extra?: { stats?: Record<string, unknown>; message?: string }) => Promise<void>;
  tables: () => Promise<TenantTable[]>;
}

/** Raised inside a pause when the budget runs out: the fence is lifted and the switch retried. */
class PauseExceeded extends Error {}

function fail(message: string, code: string, hint: string, restartFrom?: MoveState): ShardctlError {
  return new ShardctlError(message, { code, hint, ...(restartFrom ? { details: { restartFrom } } : {}) });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs the online part of a move from its journal state up to `verified` with the tenant fenced,
 * drained and checked, ready to switch: syncing (change log, publication, slot, snapshot copy,
 * checksum, subscription), replicating (catch up), then pause attempts within the budget.
 */
export async function runOnlinePhases(ctx: OnlineContext, from: MoveState): Promise<MoveState> {
  let state = from;
  const m = ctx.move;
  if (state === 'verified') return state;
  if (!m.plan.replication) {
    // Slot names are per server: two clusters sharing a server must not meet on the same move id.
    const assigned = replicationName(m.id, randomBytes(4).toString('hex'));
    await ctx.pools.withShard(ctx.map.catalog, (c) =>
      c.query(`UPDATE shardctl.moves SET plan = plan || jsonb_build_object('replication', $2::text) WHERE id = $1`, [
        m.id,
        assigned,
      ]),
    );
    m.plan.replication = assigned;
  }
  const name = m.plan.replication;
  if (state === 'fenced') {
    // Interrupted inside a pause: writes resume first, the switch is tried again within the budget.
    await ctx.pools.withShard(m.source, (c) => removeFence(c, m.tenant, m.id));
    await ctx.record('replicating', { message: 'resumed after an interrupted pause: fence lifted, writes continue' });
    state = 'replicating';
  }
  if (state === 'replicating') {
    const [slot, sub] = await Promise.all([
      ctx.pools.withShard(m.source, (c) => readSlot(c, name)),
      ctx.pools.withShard(m.target, (c) => readSubscription(c, name)),
    ]);
    if (!slot.slot || !sub.exists || !sub.enabled) {
      await ctx.record('syncing', {
        message: `replication ${!slot.slot ? 'slot' : 'subscription'} of the move is gone or stopped: copying again`,
      });
      state = 'syncing';
    }
  }
  if (state === 'planned') {
    await ctx.record('syncing', { message: 'setting up replication and copying' });
    state = 'syncing';
  }
  if (state === 'syncing') {
    const copy = await sync(ctx);
    await ctx.record('replicating', {
      stats: { copy },
      message: `copied ${copy.rows} rows, ${copy.bytes} bytes in ${copy.ms} ms; replicating`,
    });
    state = 'replicating';
  }
  await cutover(ctx);
  return 'verified';
}

async function sync(ctx: OnlineContext): Promise<CopyStats> {
  const { map, pools, move: m } = ctx;
  const name = m.plan.replication!;
  const k = { column: map.shardKey.column, type: map.shardKey.type };
  const waitMs = ctx.options.waitMs ?? 30_000;
  ctx.emit({ phase: 'syncing', message: `creating the publication and slot on ${m.source}` });
  const tables = await ctx.tables();
  // A repeated attempt starts from nothing.
  await teardownOnline(pools, m);
  await pools.withShard(m.target, (c) => ensureCatalogSchema(c));
  await pools.withShard(m.source, async (c) => {
    // The fence triggers go in now, so that the pause itself takes no table lock.
    await ensureFenceTriggers(
      c,
      tables.map((t) => t.table),
      k.column,
      waitMs,
    );
    // The change log must be in place before the slot's snapshot: every later write is then logged.
    await installChangeTracking(c, m.id, tables, k, m.tenant, waitMs);
    await createTenantPublication(c, name, m.id, tables, k, m.tenant);
  });
  crashPoint('online:after-publication');
  const slot = await createSlotWithSnapshot(pools.shard(m.source), name);
  crashPoint('online:after-slot');
  const totalRows = m.plan.tables.reduce((a, t) => a + t.rows, 0);
  const totalBytes = m.plan.tables.reduce((a, t) => a + t.bytes, 0);
  const a = await pools.pool(m.source).connect();
  const b = await pools.pool(m.source).connect();
  const dst = await pools.pool(m.target).connect();
  let stats: CopyStats;
  let sourceSums: Awaited<ReturnType<typeof tenantChecksums>>;
  try {
    // The source's checksum runs beside the copy, in the same snapshot.
    [stats, sourceSums] = await Promise.all([
      copyTenant(a, dst, tables, m.tenant, k, {
        snapshot: slot.snapshot,
        onProgress: (p: CopyProgress) =>
          ctx.emit({
            phase: 'syncing',
            table: p.table,
            ...(p.rows >= 0 ? { rows: p.rows } : {}),
            bytes: p.bytes,
            totalRows,
            totalBytes,
          }),
        ...(ctx.options.maxBytesPerSecond ? { maxBytesPerSecond: ctx.options.maxBytesPerSecond } : {}),
      }),
      tenantChecksums(b, tables, m.tenant, k, { snapshot: slot.snapshot }),
    ]);
  } catch (e) {
    throw fromDriverError(e, { shard: m.source });
  } finally {
    a.release();
    b.release();
    dst.release();
    await slot.release();
  }
  crashPoint('online:after-copy');
  ctx.emit({ phase: 'syncing', message: 'verifying the copy' });
  const targetSums = await pools.withShard(m.target, (c) => tenantChecksums(c, tables, m.tenant, k));
  const bad = tables.filter(
    (t) =>
      sourceSums[t.table]!.rows !== targetSums[t.table]!.rows || sourceSums[t.table]!.sum !== targetSums[t.table]!.sum,
  );
  if (bad.length > 0) {
    const detail = bad
      .map(
        (t) =>
          `${t.table}: source ${sourceSums[t.table]!.rows} rows (checksum ${sourceSums[t.table]!.sum}), target ${targetSums[t.table]!.rows} rows (checksum ${targetSums[t.table]!.sum})`,
      )
      .join('; ');
    throw fail(
      `the copy does not match the source's snapshot: ${detail}`,
      'VERIFY_FAILED',
      'resume copies again',
      'syncing',
    );
  }
  const source = pools.shard(m.source);
  await pools.withShard(m.target, (c) => createTenantSubscription(c, name, source.replicationUrl ?? source.url));
  crashPoint('online:after-subscription');
  return stats;
}

/** Waits until the target has applied the source's mark `mark`; false when `deadline` passes first. */
async function waitConfirmed(
  ctx: OnlineContext,
  src: PoolClient,
  dst: PoolClient,
  mark: number,
  deadline: number,
  pollMs: number,
): Promise<boolean> {
  const m = ctx.move;
  const name = m.plan.replication!;
  // The first report after 500 ms: a pause's short drain never spends time on it.
  let lastReport = Date.now();
  let inactiveSince: number | undefined;
  let failingSince: number | undefined;
  let errors: number | undefined;
  for (;;) {
    if ((await markApplied(dst, m.id)) >= mark) return true;
    const now = Date.now();
    if (now > deadline) return false;
    if (now - lastReport < 500) {
      await sleep(pollMs);
      continue;
    }
    const slot = await readSlot(src, name);
    if (!slot.slot)
      throw fail(
        `the replication slot ${name} disappeared from ${m.source}`,
        'SLOT_LOST',
        'resume copies again',
        'syncing',
      );
    {
      lastReport = now;
      const sub = await readSubscription(dst, name);
      if (!sub.exists || !sub.enabled) {
        throw fail(
          `the subscription ${name} on ${m.target} is ${sub.exists ? 'disabled' : 'gone'}`,
          'APPLY_FAILED',
          'resume copies again, abort undoes the move',
          'syncing',
        );
      }
      // Errors of the subscription's worker (a dropped connection is retried by PostgreSQL): the move
      // gives up only when they go on, without the mark arriving, for connectWaitMs.
      if (errors !== undefined && sub.errors > errors) failingSince ??= now;
      errors = sub.errors;
      if (failingSince !== undefined && now - failingSince > (ctx.options.connectWaitMs ?? 30_000)) {
        throw fail(
          `the subscription ${name} on ${m.target} keeps failing (${sub.errors} errors; see ${m.target}'s server log)`,
          'APPLY_FAILED',
          `find out why the target rejects the tenant's rows; resume copies again, abort undoes the move`,
          'syncing',
        );
      }
      if (!slot.active) {
        inactiveSince ??= now;
        if (now - inactiveSince > (ctx.options.connectWaitMs ?? 30_000)) {
          throw fail(
            `${m.target} has not connected to ${m.source}'s replication slot for ${Math.round((now - inactiveSince) / 1000)} s`,
            'REPLICATION_UNREACHABLE',
            `the target server connects with ${m.source}'s replicationUrl (or url): check that it reaches ${m.source} from ${m.target}'s host and that pg_hba.conf admits it; resume retries`,
          );
        }
      } else inactiveSince = undefined;
      ctx.emit({ phase: 'replicating', message: 'catching up', lagBytes: slot.lagBytes, lagSeconds: slot.lagSeconds });
    }
    await sleep(pollMs);
  }
}

async function cutover(ctx: OnlineContext): Promise<void> {
  const { pools, move: m } = ctx;
  const maxPause = ctx.options.maxPauseMs ?? 1000;
  const attempts = ctx.options.switchAttempts ?? 5;
  let delay = ctx.options.retryDelayMs ?? 1000;
  const tables = await ctx.tables();
  const src = await pools.pool(m.source).connect();
  const dst = await pools.pool(m.target).connect();
  // Keys found equal on both sides, with the log id they had then: a later change gives a new id.
  const verified = new Map<string, number>();
  const unverified = (log: Map<string, Map<string, number>>) =>
    new Map(
      [...log].map(
        ([t, ks]) => [t, [...ks].filter(([k, id]) => verified.get(`${t}\u0000${k}`) !== id).map(([k]) => k)] as const,
      ),
    );
  const check = async (log: Map<string, Map<string, number>>) => {
    const todo = unverified(log);
    const bad = await compareKeys(src, dst, tables, todo);
    for (const [t, ks] of todo) {
      const wrong = new Set(bad.get(t) ?? []);
      for (const k of ks) if (!wrong.has(k)) verified.set(`${t}\u0000${k}`, log.get(t)!.get(k)!);
    }
    return bad;
  };
  const pauses: { attempt: number; ms: number; outcome: string }[] = [];
  try {
    for (let attempt = 1; attempt <= attempts; attempt++) {
      // Catch up and check the rows changed so far, writes flowing.
      const changed = await readChangedKeys(src, m.id);
      if (changed.truncated.length > 0)
        throw fail(
          `${changed.truncated.join(', ')} was truncated on ${m.source} during the move: the copy no longer stands`,
          'TRUNCATED',
          'resume copies again',
          'syncing',
        );
      const slot = await readSlot(src, m.plan.replication!);
      const markedAt = performance.now();
      const mark = await writeMark(src, m.id);
      await waitConfirmed(ctx, src, dst, mark, Number.POSITIVE_INFINITY, 5);
      // The lag as a write sees it: how long a mark took to be applied on the target.
      const lagSeconds = (performance.now() - markedAt) / 1000;
      // Rows still in flight differ now and are compared again in the pause.
      await check(changed.keys);
      ctx.emit({
        phase: 'replicating',
        message: `caught up; pausing writes (attempt ${attempt} of ${attempts}, budget ${maxPause} ms)`,
        lagBytes: slot.lagBytes,
        lagSeconds,
      });

      // Sessions already running with an older snapshot would hold the pause open: let them end first,
      // writes flowing, so that the pause only waits for what starts in the next milliseconds.
      const now = (await src.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x;
      await waitForOlderWriters(src, now, ctx.options.waitMs ?? 30_000, m.source);
      await ctx.record('fenced', { message: `write pause, attempt ${attempt}` });
      const t0 = performance.now();
      const deadline = Date.now() + maxPause;
      const left = () => deadline - Date.now();
      try {
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
        const drainMark = await writeMark(src, m.id);
        if (!(await waitConfirmed(ctx, src, dst, drainMark, deadline, 2)))
          throw new PauseExceeded('the drain did not finish');
        const last = await readChangedKeys(src, m.id);
        if (last.truncated.length > 0)
          throw fail(
            `${last.truncated.join(', ')} was truncated on ${m.source} during the move`,
            'TRUNCATED',
            'resume copies again',
            'syncing',
          );
        const bad = await check(last.keys);
        if (bad.size > 0) {
          const detail = [...bad].map(([t, ks]) => `${t}: ${ks.length} row(s), e.g. key ${ks[0]}`).join('; ');
          throw fail(
            `after the drain, rows of tenant ${m.tenant} differ between ${m.source} and ${m.target}: ${detail}`,
            'VERIFY_FAILED',
            'not switched; resume copies again, abort undoes the move',
            'syncing',
          );
        }
        await checkSchemaUnchanged(ctx, src, dst, tables);
        await syncSequences(src, dst, tables);
        if (left() < 0) throw new PauseExceeded('the checks did not finish');
        const ms = Math.round(performance.now() - t0);
        pauses.push({ attempt, ms, outcome: 'switched' });
        await ctx.record('verified', {
          stats: { online: { pauses, keysChecked: verified.size } },
          message: `drained and verified in ${ms} ms; switching`,
        });
        return;
      } catch (e) {
        const ms = Math.round(performance.now() - t0);
        // Writes resume whatever went wrong: the fence is only ever held inside a pause.
        await pools.withShard(m.source, (c) => removeFence(c, m.tenant, m.id));
        if (!(e instanceof PauseExceeded)) throw e;
        pauses.push({ attempt, ms, outcome: e.message });
        const more = attempt < attempts;
        await ctx.record('replicating', {
          message: `pause budget of ${maxPause} ms exceeded (${e.message}): fence lifted after ${ms} ms${more ? `, retrying in ${delay} ms` : ''}`,
        });
        ctx.emit({
          phase: 'replicating',
          message: `pause budget exceeded (${e.message}); fence lifted after ${ms} ms`,
          pauseMs: ms,
        });
        if (more) {
          await sleep(delay);
          delay *= 2;
        }
      }
    }
    throw new ShardctlError(
      `the final drain did not fit the pause budget of ${maxPause} ms in ${attempts} attempts; writes continued throughout`,
      {
        code: 'PAUSE_BUDGET',
        hint: `the tenant stays on ${m.source} and replication keeps running: resume later (\`shardctl rebalance --resume ${m.id}\`, maybe with a larger --max-pause) or abort`,
        details: { pauses },
      },
    );
  } finally {
    src.release();
    dst.release();
  }
}

/** Refuses the switch when a tenant table's columns changed on either side during the move (DDL is not replicated). */
async function checkSchemaUnchanged(
  ctx: OnlineContext,
  src: PoolClient,
  dst: PoolClient,
  tables: TenantTable[],
): Promise<void> {
  const sig = (ts: TenantTable[]) =>
    new Map(ts.map((t) => [t.table, t.allColumns.map((c) => `${c.name} ${c.type}`).join(', ')]));
  const want = sig(tables);
  for (const [side, c] of [
    [ctx.move.source, src],
    [ctx.move.target, dst],
  ] as const) {
    const now = sig(await readTenantTables(c, ctx.map));
    const changed = [...want].filter(([t, s]) => now.get(t) !== s).map(([t]) => t);
    if (changed.length > 0)
      throw fail(
        `the columns of ${changed.join(', ')} changed on ${side} during the move`,
        'SCHEMA_CHANGED',
        'run the migration on every shard, then resume (it copies again)',
        'syncing',
      );
  }
}

/**
 * Moves every sequence feeding a tenant table on the target past the source's: rows inserted on the
 * source after the copy took values the target's sequence has not given out yet.
 */
async function syncSequences(src: PoolClient, dst: PoolClient, tables: TenantTable[]): Promise<void> {
  for (const t of tables) {
    for (const s of t.sequences) {
      const r = await src.query<{ v: string; called: boolean }>(
        `SELECT last_value::text AS v, is_called AS called FROM ${s.sequence}`,
      );
      const row = r.rows[0];
      if (!row || !row.called) continue;
      await dst.query(
        `SELECT setval($1::regclass, $2::int8, true) FROM ${s.sequence} WHERE NOT is_called OR last_value < $2::int8`,
        [s.sequence, row.v],
      );
    }
  }
}

/**
 * Removes what an online move set up: the subscription, slot and publication, and the change log's
 * triggers. Idempotent; the fence is not touched.
 */
export async function teardownOnline(pools: ShardPools, m: MoveRecord): Promise<void> {
  const name = m.plan.replication;
  // Without a name nothing was created but, maybe, the change log.
  if (!name) return void (await pools.withShard(m.source, (src) => removeChangeTracking(src, m.id)));
  const forgetMarks = async (c: PoolClient) => {
    if ((await c.query<{ t: string | null }>("SELECT to_regclass('shardctl.move_marks')::text AS t")).rows[0]?.t)
      await c.query('DELETE FROM shardctl.move_marks WHERE move_id = $1', [m.id]);
  };
  await pools.withShard(m.target, async (dst) => {
    await dropMoveReplication(undefined, dst, name);
    await forgetMarks(dst);
  });
  await pools.withShard(m.source, async (src) => {
    await dropMoveReplication(src, undefined, name);
    await removeChangeTracking(src, m.id);
    await forgetMarks(src);
  });
}
