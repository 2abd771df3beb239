import os from 'node:os';
import type { Kysely } from 'kysely';
import type { PoolClient } from 'pg';
import type { ShardMap } from '../config/shard-map.js';
import { ensureCatalogSchema } from '../catalog/catalog-schema.js';
import type { ShardPools } from '../db/shard-pools.js';
import { beginWithSettingsSql, type TransactionOptions } from '../db/transaction.js';
import { crashPoint } from '../crash-points.js';
import { ExitCode, fromDriverError, ShardctlError } from '../errors.js';
import { openDecision, pruneDecisions, resolveDecision } from './decisions.js';
import { gidOf } from './gid.js';
import { finishSql } from './prepared.js';
import { sessionsKysely, type Session } from './kysely-driver.js';

/** What a distributed transaction needs: the map, the participants' pools, a separate pool for decisions, routing. */
export interface TxContext {
  map: ShardMap;
  /** Pools of the participants' connections (the router's). */
  pools: ShardPools;
  /**
   * Pools of the decision connections to the catalog shard: separate from the participants' so that a
   * transaction holding participant connections never waits for one of the same pool (pool deadlock).
   */
  decisionPools: ShardPools;
  /** The shard of a tenant (the router's directory, then its rule). */
  locate(tenant: unknown): string;
  /** Kysely's module (loaded once by the caller). */
  kysely: typeof import('kysely');
  /**
   * Ids of finished transactions whose decision records are deleted by the next decision transaction
   * (in its own round trip) instead of one DELETE each; the owner flushes them on close. Absent: each
   * record is deleted at once.
   */
  finished?: string[];
}

/** Options of a distributed transaction: those of every participant's BEGIN, and how to report. */
export interface DistributedTransactionOptions extends TransactionOptions {
  /**
   * Called when the transaction is committed (the decision is durable) but a participant could not be
   * told yet: `shardctl recover` (or the router's background recovery) finishes it. The promise still
   * resolves: the transaction is committed.
   */
  onWarning?: (warning: ShardctlError) => void;
  /** Run everything, then roll every participant back (a dry run). Default false. */
  rollbackOnly?: boolean;
}

/**
 * The handle `router.transaction(fn)` gives `fn`: Kysely instances bound to one open transaction per
 * shard, each begun on its first query. Do not call `.transaction()` on them: the router commits them
 * all together.
 */
export interface TransactionHandle {
  /** Kysely in the transaction on the tenant's shard. */
  db<DB>(tenant: unknown): Kysely<DB>;
  /** Kysely in the transaction on a shard by name. */
  shard<DB>(name: string): Kysely<DB>;
  /**
   * Kysely whose every statement runs on every shard (reference tables): writes must change the same
   * number of rows on each shard, reads answer from the first shard.
   */
  reference<DB>(): Kysely<DB>;
  /** Shards with an open transaction so far. */
  readonly participants: string[];
}

/** What a distributed transaction did. */
export interface TransactionOutcome<T> {
  value: T;
  /** Shards that took part, in the order they were opened. */
  participants: string[];
  /** Two-phase commit (several participants): the id of its decision record. */
  id?: string;
  /** Participants the commit could not reach yet (recovery finishes them); empty normally. */
  unfinished: string[];
  /** True when `rollbackOnly` rolled everything back. */
  rolledBack: boolean;
}

interface Participant extends Session {
  gid?: string;
  xid?: string;
  broken?: Error;
}

/** The participants of one transaction: sessions opened on first use, released together. */
class Participants {
  private readonly opening = new Map<string, Promise<Participant>>();
  readonly list: Participant[] = [];
  closed = false;

  constructor(
    private readonly ctx: TxContext,
    private readonly options: DistributedTransactionOptions,
  ) {}

  /** The first shard that could not be opened: the transaction cannot commit without it, caught or not. */
  failed: { shard: string; error: unknown } | undefined;

  open(shard: string): Promise<Participant> {
    let p = this.opening.get(shard);
    if (!p) {
      p = this.connect(shard).catch((error: unknown) => {
        this.failed ??= { shard, error };
        throw error;
      });
      this.opening.set(shard, p);
    }
    return p;
  }

  private async connect(shard: string): Promise<Participant> {
    if (this.closed)
      throw new ShardctlError('this transaction has already ended: use the handle only inside its function', {
        code: 'TX_FINISHED',
        exitCode: ExitCode.Usage,
      });
    let client: PoolClient;
    try {
      client = await this.ctx.pools.pool(shard).connect();
    } catch (e) {
      throw fromDriverError(e, { shard, action: 'cannot connect' });
    }
    const p: Participant = { shard, client };
    this.list.push(p);
    // One round trip: BEGIN and the SET LOCALs as one simple-protocol string (values quoted).
    await client.query(beginWithSettingsSql(this.options));
    return p;
  }

  /** Waits for opens still in flight (a query the function did not await). */
  async settle(): Promise<void> {
    this.closed = true;
    await Promise.allSettled(this.opening.values());
  }

  release(): void {
    for (const p of this.list) p.client.release(p.broken);
  }
}

/** The handle over a set of participants. */
function handleOf(ctx: TxContext, parts: Participants): TransactionHandle {
  const perShard = new Map<string, Kysely<unknown>>();
  const shard = <DB>(name: string): Kysely<DB> => {
    ctx.pools.shard(name); // an unknown name fails here, naming the shards
    let db = perShard.get(name);
    if (!db) {
      db = sessionsKysely<unknown>(ctx.kysely, async () => [await parts.open(name)]);
      perShard.set(name, db);
    }
    return db as Kysely<DB>;
  };
  let everywhere: Kysely<unknown> | undefined;
  return {
    db: <DB>(tenant: unknown) => shard<DB>(ctx.locate(tenant)),
    shard,
    reference: <DB>() =>
      (everywhere ??= sessionsKysely<unknown>(ctx.kysely, () =>
        Promise.all(ctx.map.shards.map((s) => parts.open(s.name))),
      )) as Kysely<DB>,
    get participants() {
      return parts.list.map((p) => p.shard);
    },
  };
}

/** Rolls back every participant, prepared or not; failures are left to recovery (no decision: abort). */
async function rollbackAll(parts: Participant[]): Promise<void> {
  await Promise.all(
    parts.map(async (p) => {
      try {
        await p.client.query(p.gid ? finishSql(p.gid, false) : 'ROLLBACK');
      } catch (e) {
        p.broken = e as Error;
      }
    }),
  );
}

/**
 * Runs `fn` with a {@link TransactionHandle} and commits what it wrote: nothing to do without
 * participants, a plain COMMIT with one, a two-phase commit with several (see docs/architecture.md).
 * Any error before the commit decision rolls every participant back and is rethrown.
 *
 * @example
 * const { value } = await runTransaction(ctx, async (tx) => {
 *   await tx.db<DB>(1).updateTable('accounts').set({ balance: sql`balance - 10` }).where('tenant_id', '=', 1).execute();
 *   await tx.db<DB>(2).updateTable('accounts').set({ balance: sql`balance + 10` }).where('tenant_id', '=', 2).execute();
 * });
 */
export async function runTransaction<T>(
  ctx: TxContext,
  fn: (tx: TransactionHandle) => Promise<T>,
  options: DistributedTransactionOptions = {},
): Promise<TransactionOutcome<T>> {
  const parts = new Participants(ctx, options);
  try {
    let value: T;
    try {
      value = await fn(handleOf(ctx, parts));
    } finally {
      await parts.settle();
    }
    const participants = parts.list.map((p) => p.shard);
    if (parts.failed && !options.rollbackOnly) throw abortedInside(parts.failed.shard, parts.failed.error);
    if (options.rollbackOnly) {
      await rollbackAll(parts.list);
      return { value, participants, unfinished: [], rolledBack: true };
    }
    if (parts.list.length === 0) return { value, participants, unfinished: [], rolledBack: false };
    if (parts.list.length === 1) {
      await commitOne(parts.list[0]!);
      return { value, participants, unfinished: [], rolledBack: false };
    }
    const { id, unfinished } = await twoPhaseCommit(ctx, parts.list, options);
    return { value, participants, id, unfinished, rolledBack: false };
  } catch (e) {
    // In doubt, the decision may be commit: only recovery, reading the record, may end the participants.
    if (!(e instanceof ShardctlError && e.code === 'TX_IN_DOUBT'))
      await rollbackAll(parts.list.filter((p) => !p.broken));
    throw e;
  } finally {
    parts.release();
  }
}

/** A transaction that failed inside (an error was caught and ignored) ends in ROLLBACK, never in a silent commit. */
function abortedInside(shard: string, cause?: unknown): ShardctlError {
  return new ShardctlError(
    `shard ${shard}: the transaction had already failed (a statement's error was caught inside it), so it was rolled back; nothing is committed`,
    {
      code: 'TX_ABORTED',
      shard,
      hint: 'let errors inside router.transaction propagate, or retry the whole transaction',
      ...(cause ? { cause } : {}),
    },
  );
}

async function commitOne(p: Participant): Promise<void> {
  const r = await p.client.query('COMMIT');
  // COMMIT of a failed transaction answers ROLLBACK instead of an error.
  if (r.command !== 'COMMIT') throw abortedInside(p.shard);
}

const decisionSchemaReady = new WeakSet<ShardPools>();

/** This process, as the decision record names its coordinator. */
function coordinatorName(): string {
  return `${os.hostname()}:${process.pid}`;
}

/**
 * The two phases: open the decision record, PREPARE everywhere, commit the decision, COMMIT PREPARED
 * everywhere, prune the record. Before the decision any failure rolls back; after it nothing does.
 */
async function twoPhaseCommit(
  ctx: TxContext,
  parts: Participant[],
  options: DistributedTransactionOptions,
): Promise<{ id: string; unfinished: string[] }> {
  const catalog = ctx.map.catalog;
  let dec: PoolClient;
  try {
    dec = await ctx.decisionPools.pool(catalog).connect();
  } catch (e) {
    throw fromDriverError(e, { shard: catalog, action: 'cannot reach the catalog shard for the commit decision' });
  }
  let broken: Error | undefined;
  try {
    if (!decisionSchemaReady.has(ctx.decisionPools)) {
      await ensureCatalogSchema(dec);
      decisionSchemaReady.add(ctx.decisionPools);
    }
    const prune = ctx.finished?.splice(0) ?? [];
    const id = await openDecision(
      dec,
      parts.map((p) => p.shard),
      coordinatorName(),
      prune,
    );
    try {
      await prepareAll(parts, id);
    } catch (e) {
      await dec.query('ROLLBACK').catch((x: Error) => (broken = x));
      throw e;
    }
    crashPoint('tx:after-prepares');
    const decided = await commitDecision(ctx, dec, id).catch((e: Error) => {
      broken = e;
      throw e;
    });
    if (!decided) {
      throw new ShardctlError(`the commit decision of distributed transaction ${id} was not recorded: rolled back`, {
        code: 'TX_ABORTED',
        shard: catalog,
        hint: 'the catalog shard ended the decision transaction (a restart or a lost connection); retry the transaction',
      });
    }
    crashPoint('tx:after-decision');
    const unfinished = await commitPreparedAll(parts, id, options);
    if (unfinished.length === 0) {
      if (ctx.finished) ctx.finished.push(id);
      else await pruneDecisions(dec, [id]).catch(() => undefined);
    }
    return { id, unfinished };
  } finally {
    dec.release(broken);
  }
}

/** SQLSTATE of "prepared transactions are disabled" (max_prepared_transactions = 0). */
const PREREQUISITE = '55000';

function prepareError(p: Participant, e: unknown): ShardctlError {
  const code = (e as { code?: string }).code;
  if (code === PREREQUISITE && /prepared transactions are disabled/i.test((e as Error).message ?? ''))
    return new ShardctlError(
      `shard ${p.shard} cannot take part in a transaction across shards: max_prepared_transactions is 0 there`,
      {
        code: 'PREPARED_DISABLED',
        shard: p.shard,
        hint: 'set max_prepared_transactions (e.g. 64, at least max_connections used by shardctl) in postgresql.conf on every shard and restart it; nothing was committed',
      },
    );
  if (code === '25P02') return abortedInside(p.shard, e);
  return fromDriverError(e, { shard: p.shard, action: 'PREPARE TRANSACTION failed' });
}

/** PREPARE TRANSACTION on every participant (with its xid, for a later pg_xact_status), in parallel. */
async function prepareAll(parts: Participant[], id: string): Promise<void> {
  let first = true;
  const settled = await Promise.allSettled(
    parts.map(async (p) => {
      const gid = gidOf(id, p.shard);
      let rs: { command: string; rows: { x?: string }[] }[];
      try {
        rs = (await p.client.query(
          `SELECT pg_current_xact_id()::text AS x; PREPARE TRANSACTION '${gid.replace(/'/g, "''")}'`,
        )) as unknown as typeof rs;
      } catch (e) {
        throw prepareError(p, e);
      }
      // PREPARE of a failed transaction answers ROLLBACK instead of an error.
      if (rs[1]?.command !== 'PREPARE') throw abortedInside(p.shard);
      p.gid = gid;
      p.xid = rs[0]!.rows[0]!.x!;
      if (first) {
        first = false;
        crashPoint('tx:after-first-prepare');
      }
    }),
  );
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

/**
 * COMMIT of the decision transaction. A lost answer leaves the outcome unknown to this process: the
 * record is read back from a fresh connection (deciding abort if the transaction is gone uncommitted).
 * Returns whether the decision is commit; throws TX_IN_DOUBT when the catalog cannot say.
 */
async function commitDecision(ctx: TxContext, dec: PoolClient, id: string): Promise<boolean> {
  try {
    const r = await dec.query('COMMIT');
    return r.command === 'COMMIT';
  } catch (e) {
    const state = await ctx.decisionPools
      .withShard(ctx.map.catalog, (c) => resolveDecision(c, id, 5000))
      .catch(() => 'unknown' as const);
    if (state === 'commit') return true;
    if (state === 'abort') return false;
    throw new ShardctlError(
      `the outcome of distributed transaction ${id} is unknown: the catalog shard did not confirm its commit decision (${(e as Error).message})`,
      {
        code: 'TX_IN_DOUBT',
        shard: ctx.map.catalog,
        hint: 'run `shardctl recover` once the catalog shard answers: it commits or rolls back every participant from the decision record',
        cause: e,
      },
    );
  }
}

/** SQLSTATE of "prepared transaction with identifier ... does not exist". */
const UNDEFINED_OBJECT = '42704';

/**
 * After the decision: COMMIT PREPARED on every participant, in parallel. A gid already gone was
 * finished by recovery, which commits only on a commit record; that is confirmed from the participant's
 * xid (pg_xact_status), never assumed. Returns the shards left for recovery.
 */
async function commitPreparedAll(
  parts: Participant[],
  id: string,
  options: DistributedTransactionOptions,
): Promise<string[]> {
  let first = true;
  const unfinished: string[] = [];
  const warn = (p: Participant, message: string, code: string, cause?: unknown) => {
    unfinished.push(p.shard);
    options.onWarning?.(
      new ShardctlError(`distributed transaction ${id} is committed, but shard ${p.shard}: ${message}`, {
        code,
        shard: p.shard,
        hint: '`shardctl recover` (or a router with background recovery) commits it there from the decision record',
        ...(cause ? { cause } : {}),
      }),
    );
  };
  await Promise.all(
    parts.map(async (p) => {
      try {
        await p.client.query(finishSql(p.gid!, true));
      } catch (e) {
        if ((e as { code?: string }).code !== UNDEFINED_OBJECT) {
          p.broken = e as Error;
          return warn(p, `COMMIT PREPARED failed (${(e as Error).message})`, 'TX_UNFINISHED', e);
        }
        const st = await p.client
          .query<{ s: string | null }>('SELECT pg_xact_status($1::xid8) AS s', [p.xid])
          .then((r) => r.rows[0]?.s ?? 'unknown')
          .catch(() => 'unknown');
        if (st !== 'committed')
          return warn(
            p,
            `its prepared transaction is gone and its status is ${st}, not committed: someone ended it by hand`,
            'TX_HEURISTIC',
          );
      }
      if (first) {
        first = false;
        crashPoint('tx:after-first-commit-prepared');
      }
    }),
  );
  return unfinished;
}
