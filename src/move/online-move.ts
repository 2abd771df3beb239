import { randomBytes } from 'node:crypto';
import type { PoolClient } from 'pg';
import { pollUntil } from '../db/poll.js';
import type { ShardPools } from '../db/shard-pools.js';
import { ShardctlError } from '../errors.js';
import { removeChangeTracking } from './change-tracking.js';
import type { MoveRecord, MoveState } from './move-journal.js';
import type { MoveRun } from './move-run.js';
import { dropMoveReplication, markApplied, readSlot, readSubscription, replicationName } from './replication.js';
import { columnSignatures, type TenantTable } from './tenant-tables.js';

export type { OnlineEvent, OnlineOptions } from './online-types.js';

/** Raised inside a pause when the budget runs out: the fence is lifted and the switch retried. */
export class PauseExceeded extends Error {
  // A code, so that the pooled sessions of the pause are not taken for broken and dropped.
  readonly code = 'PAUSE_EXCEEDED';
}

/**
 * A failure of the online capture; `restartFrom` is the state a resume starts from (the copy is void).
 *
 * @example
 * throw fail('the slot disappeared', 'SLOT_LOST', 'resume copies again', 'syncing');
 */
export function fail(message: string, code: string, hint: string, restartFrom?: MoveState): ShardctlError {
  return new ShardctlError(message, { code, hint, ...(restartFrom ? { details: { restartFrom } } : {}) });
}

/**
 * The name of the move's publication, slot and subscription, chosen and journaled on first use. Slot
 * names are per server: two clusters sharing a server must not meet on the same move id.
 *
 * @example
 * await ensureReplicationName(r) // 'shardctl_move_7_9f2c01aa'
 */
export async function ensureReplicationName(r: MoveRun): Promise<string> {
  const m = r.move;
  if (m.plan.replication) return m.plan.replication;
  const assigned = replicationName(m.id, randomBytes(4).toString('hex'));
  await r.pools.withShard(r.map.catalog, (c) =>
    c.query(`UPDATE shardctl.moves SET plan = plan || jsonb_build_object('replication', $2::text) WHERE id = $1`, [
      m.id,
      assigned,
    ]),
  );
  m.plan.replication = assigned;
  return assigned;
}

/**
 * Watches the replication of a move while a mark is awaited, at most every 500 ms (a pause's short
 * drain never spends time on it): fails when the slot or the subscription is gone, when the
 * subscription's worker keeps failing or the target stays disconnected for `connectWaitMs`, and reports
 * the lag otherwise.
 */
function replicationWatch(r: MoveRun, src: PoolClient, dst: PoolClient): () => Promise<void> {
  const m = r.move;
  const name = m.plan.replication!;
  const patienceMs = r.options.connectWaitMs ?? 30_000;
  const started = Date.now();
  let lastReport = started;
  let inactiveSince: number | undefined;
  let failingSince: number | undefined;
  let errors: number | undefined;
  return async () => {
    const now = Date.now();
    if (now - lastReport < 500) return;
    const slot = await readSlot(src, name);
    if (!slot.slot)
      throw fail(
        `the replication slot ${name} disappeared from ${m.source}`,
        'SLOT_LOST',
        'resume copies again',
        'syncing',
      );
    lastReport = now;
    const sub = await readSubscription(dst, name);
    if (!sub.exists || !sub.enabled)
      throw fail(
        `the subscription ${name} on ${m.target} is ${sub.exists ? 'disabled' : 'gone'}`,
        'APPLY_FAILED',
        'resume copies again, abort undoes the move',
        'syncing',
      );
    // Errors of the subscription's worker (a dropped connection is retried by PostgreSQL): the move
    // gives up only when they go on, without the mark arriving, for connectWaitMs.
    if (errors !== undefined && sub.errors > errors) failingSince ??= now;
    errors = sub.errors;
    if (failingSince !== undefined && now - failingSince > patienceMs)
      throw fail(
        `the subscription ${name} on ${m.target} keeps failing (${sub.errors} errors; see ${m.target}'s server log)`,
        'APPLY_FAILED',
        `find out why the target rejects the tenant's rows; resume copies again, abort undoes the move`,
        'syncing',
      );
    inactiveSince = slot.active ? undefined : (inactiveSince ?? now);
    if (inactiveSince !== undefined && now - inactiveSince > patienceMs)
      throw new ShardctlError(
        `${m.target} has not connected to ${m.source}'s replication slot for ${Math.round((now - inactiveSince) / 1000)} s`,
        {
          code: 'REPLICATION_UNREACHABLE',
          hint: `the target server connects with ${m.source}'s replicationUrl (or url): check that it reaches ${m.source} from ${m.target}'s host and that pg_hba.conf admits it; resume retries`,
        },
      );
    r.emit({
      phase: 'replicating',
      message: 'catching up',
      lagBytes: slot.lagBytes,
      lagSeconds: slot.lagSeconds,
      markWaitMs: now - started,
    });
  };
}

/**
 * Waits until the target has applied the source's mark `mark`; false when `deadline` passes first.
 *
 * @example
 * const drained = await waitConfirmed(r, src, dst, await writeMark(src, r.move.id), Date.now() + 1000, 2);
 */
export async function waitConfirmed(
  r: MoveRun,
  src: PoolClient,
  dst: PoolClient,
  mark: number,
  deadline: number,
  pollMs: number,
): Promise<boolean> {
  const watch = replicationWatch(r, src, dst);
  return pollUntil(
    async () => {
      if ((await markApplied(dst, r.move.id)) >= mark) return true;
      await watch();
      return undefined;
    },
    {
      deadline,
      intervalMs: pollMs,
      reason: `mark ${mark} of move ${r.move.id} to be applied on ${r.move.target}`,
      onTimeout: () => false,
    },
  );
}

/**
 * Refuses the switch when a tenant table's columns changed on either side during the move (DDL is not replicated).
 *
 * @example
 * await checkSchemaUnchanged(r, src, dst, await r.tables()); // throws SCHEMA_CHANGED naming the tables
 */
export async function checkSchemaUnchanged(
  r: MoveRun,
  src: PoolClient,
  dst: PoolClient,
  tables: TenantTable[],
): Promise<void> {
  const want = new Map(tables.map((t) => [t.table, t.allColumns.map((c) => `${c.name} ${c.type}`).join(', ')]));
  const names = [...want.keys()];
  // Both sides at once, one catalog query each: this runs inside the write pause.
  const sides = await Promise.all([columnSignatures(src, names), columnSignatures(dst, names)]);
  for (const [i, side] of [r.move.source, r.move.target].entries()) {
    const changed = [...want].filter(([t, s]) => sides[i]!.get(t) !== s).map(([t]) => t);
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
 *
 * @example
 * await syncSequences(src, dst, tables);
 */
export async function syncSequences(src: PoolClient, dst: PoolClient, tables: TenantTable[]): Promise<void> {
  const seqs = [...new Set(tables.flatMap((t) => t.sequences.map((s) => s.sequence)))];
  if (seqs.length === 0) return;
  // One round trip per side (this runs inside the write pause).
  const read = seqs.map((s, i) => `SELECT ${i} AS i, last_value::text AS v, is_called AS called FROM ${s}`);
  const r = await src.query<{ i: number; v: string; called: boolean }>(read.join(' UNION ALL '));
  const moved = r.rows.filter((x) => x.called);
  if (moved.length === 0) return;
  // Each setval guarded by the target's own value in the same statement: a sequence never goes back.
  const sets = moved.map(
    (x, k) =>
      `(SELECT setval($${2 * k + 1}::regclass, $${2 * k + 2}::int8, true) FROM ${seqs[x.i]} WHERE NOT is_called OR last_value < $${2 * k + 2}::int8)`,
  );
  await dst.query(
    `SELECT ${sets.join(', ')}`,
    moved.flatMap((x) => [seqs[x.i]!, x.v]),
  );
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
