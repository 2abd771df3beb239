import type { PoolClient } from 'pg';

/**
 * States of a move, in order; `failed` and `aborted` are off the main path. A fenced move goes
 * planned, fenced, copying, copied, verified; an online move goes planned, syncing, replicating,
 * fenced (the write pause), verified; both then switched, cleaned, done.
 */
export const MOVE_STATES = [
  'planned',
  'syncing',
  'replicating',
  'fenced',
  'copying',
  'copied',
  'verified',
  'switched',
  'cleaned',
  'done',
  'failed',
  'aborted',
] as const;

/** One state of {@link MOVE_STATES}. */
export type MoveState = (typeof MOVE_STATES)[number];

/** States after which the tenant lives on the target: abort is no longer possible. */
export const SWITCHED_STATES: MoveState[] = ['switched', 'cleaned', 'done'];

/**
 * How a move copies: `fenced` rejects the tenant's writes for the whole copy; `online` (logical
 * replication) and `trigger` (change-log triggers, ordinary connections only) only for the switch.
 */
export type MoveMode = 'fenced' | 'online' | 'trigger';

/** The change capture of each move mode, as the move record and the preview name it. */
export const CAPTURE_OF_MODE: Record<MoveMode, 'logical' | 'trigger' | 'none'> = {
  online: 'logical',
  trigger: 'trigger',
  fenced: 'none',
};

/** The plan a move records: tables in copy order with their source row counts. */
export interface MovePlanRecord {
  tables: { table: string; rows: number; bytes: number }[];
  /** Online moves: name of the publication, slot and subscription (unique per server, set before any is created). */
  replication?: string;
  /**
   * A group move: every tenant it moves (the move's `tenant` is the first). They share one copy, one
   * capture, one pause, and switch in one catalog transaction.
   */
  group?: string[];
  /** Why the move uses its capture (logical replication, change-log triggers, none), as chosen at plan time. */
  captureReason?: string;
}

/** A move as the journal holds it. */
export interface MoveRecord {
  id: number;
  tenant: string;
  source: string;
  target: string;
  state: MoveState;
  mode: MoveMode;
  keepSource: boolean;
  plan: MovePlanRecord;
  stats: Record<string, unknown>;
  failedIn: MoveState | null;
  error: string | null;
  planId: number | null;
  createdAt: string;
  updatedAt: string;
}

interface Row {
  id: string;
  tenant: string;
  source_shard: string;
  target_shard: string;
  state: MoveState;
  mode: MoveMode;
  keep_source: boolean;
  plan: MovePlanRecord;
  stats: Record<string, unknown>;
  failed_in: MoveState | null;
  error: string | null;
  plan_id: string | null;
  created_at: Date;
  updated_at: Date;
}

function toRecord(r: Row): MoveRecord {
  return {
    id: Number(r.id),
    tenant: r.tenant,
    source: r.source_shard,
    target: r.target_shard,
    state: r.state,
    mode: r.mode,
    keepSource: r.keep_source,
    plan: r.plan,
    stats: r.stats,
    failedIn: r.failed_in,
    error: r.error,
    planId: r.plan_id === null ? null : Number(r.plan_id),
    createdAt: new Date(r.created_at).toISOString(),
    updatedAt: new Date(r.updated_at).toISOString(),
  };
}

/**
 * The tenants a move moves: the group's, or its one tenant.
 *
 * @example
 * tenantsOf(move) // ['5', '8', '13']
 */
export function tenantsOf(m: Pick<MoveRecord, 'tenant' | 'plan'>): string[] {
  return m.plan.group ?? [m.tenant];
}

/**
 * How messages name a move's tenants: `tenant 5`, or `tenants 5, 8, 13` (the first ten of a large group).
 *
 * @example
 * tenantsLabel(move) // 'tenants 5, 8, 13'
 */
export function tenantsLabel(m: Pick<MoveRecord, 'tenant' | 'plan'>): string {
  const ts = tenantsOf(m);
  if (ts.length === 1) return `tenant ${ts[0]}`;
  return `tenants ${ts.slice(0, 10).join(', ')}${ts.length > 10 ? ` and ${ts.length - 10} more` : ''}`;
}

/** Creates a move in state `planned`; fails with a unique violation when one of the tenant is in flight. */
export async function createMove(
  client: PoolClient,
  m: {
    tenant: string;
    source: string;
    target: string;
    keepSource: boolean;
    plan: MovePlanRecord;
    planId?: number | null;
    mode?: MoveMode;
  },
): Promise<MoveRecord> {
  const r = await client.query<Row>(
    `INSERT INTO shardctl.moves (tenant, source_shard, target_shard, state, keep_source, plan, plan_id, mode)
     VALUES ($1, $2, $3, 'planned', $4, $5, $6, $7) RETURNING *`,
    [m.tenant, m.source, m.target, m.keepSource, JSON.stringify(m.plan), m.planId ?? null, m.mode ?? 'fenced'],
  );
  await client.query(
    "INSERT INTO shardctl.move_events (move_id, state, message) VALUES ($1, 'planned', 'move planned')",
    [r.rows[0]!.id],
  );
  // A unique violation here: one of the tenants is in another move in flight.
  await client.query('INSERT INTO shardctl.move_tenants (move_id, tenant) SELECT $1, unnest($2::text[])', [
    r.rows[0]!.id,
    m.plan.group ?? [m.tenant],
  ]);
  return toRecord(r.rows[0]!);
}

/** Reads one move, or undefined. */
export async function readMove(client: PoolClient, id: number): Promise<MoveRecord | undefined> {
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass('shardctl.moves')::text AS t");
  if (!exists.rows[0]?.t) return undefined;
  const r = await client.query<Row>('SELECT * FROM shardctl.moves WHERE id = $1', [id]);
  return r.rows[0] ? toRecord(r.rows[0]) : undefined;
}

/** Lists moves (of one tenant, group moves included), newest first; an empty list where the catalog has no journal. */
export async function listMoves(
  client: PoolClient,
  options: { tenant?: string; limit?: number } = {},
): Promise<MoveRecord[]> {
  const exists = await client.query<{ t: string | null; g: string | null }>(
    "SELECT to_regclass('shardctl.moves')::text AS t, to_regclass('shardctl.move_tenants')::text AS g",
  );
  if (!exists.rows[0]?.t) return [];
  // A tenant's moves include the group moves it was part of.
  const groups = exists.rows[0].g
    ? ' OR EXISTS (SELECT 1 FROM shardctl.move_tenants x WHERE x.move_id = m.id AND x.tenant = $1)'
    : '';
  const r = await client.query<Row>(
    `SELECT * FROM shardctl.moves m WHERE ($1::text IS NULL OR tenant = $1${groups}) ORDER BY id DESC LIMIT $2`,
    [options.tenant ?? null, options.limit ?? 1000],
  );
  return r.rows.map(toRecord);
}

/** The move of a tenant (alone or in a group) that is not done or aborted, if any. */
export async function inFlightMove(client: PoolClient, tenant: string): Promise<MoveRecord | undefined> {
  const exists = await client.query<{ t: string | null; g: string | null }>(
    "SELECT to_regclass('shardctl.moves')::text AS t, to_regclass('shardctl.move_tenants')::text AS g",
  );
  if (!exists.rows[0]?.t) return undefined;
  const groups = exists.rows[0].g
    ? ' OR EXISTS (SELECT 1 FROM shardctl.move_tenants x WHERE x.move_id = m.id AND x.tenant = $1 AND x.in_flight)'
    : '';
  const r = await client.query<Row>(
    `SELECT * FROM shardctl.moves m WHERE (tenant = $1${groups}) AND state NOT IN ('done', 'aborted')`,
    [tenant],
  );
  return r.rows[0] ? toRecord(r.rows[0]) : undefined;
}

/**
 * Records a transition (and an event) in one statement pair on the caller's client, so that it can
 * share a transaction with the action it guards (the switch).
 */
export async function transition(
  client: PoolClient,
  id: number,
  state: MoveState,
  extra: { stats?: Record<string, unknown>; error?: string | null; failedIn?: MoveState | null; message?: string } = {},
): Promise<void> {
  await client.query(
    `UPDATE shardctl.moves SET state = $2, updated_at = now(),
            stats = stats || $3::jsonb,
            error = CASE WHEN $4::boolean THEN $5 ELSE error END,
            failed_in = CASE WHEN $6::boolean THEN $7 ELSE failed_in END
      WHERE id = $1`,
    [
      id,
      state,
      JSON.stringify(extra.stats ?? {}),
      extra.error !== undefined,
      extra.error ?? null,
      extra.failedIn !== undefined,
      extra.failedIn ?? null,
    ],
  );
  await client.query('INSERT INTO shardctl.move_events (move_id, state, message) VALUES ($1, $2, $3)', [
    id,
    state,
    extra.message ?? null,
  ]);
  if (state === 'done' || state === 'aborted')
    await client.query('UPDATE shardctl.move_tenants SET in_flight = false WHERE move_id = $1', [id]);
}

/**
 * Records that the parallel copy attempt `attempt` of move `id` commits (its prepared target transactions
 * are then committed, by the copy or, after a crash, by the next attempt or abort).
 *
 * @example
 * await recordCopyCommit(catalog, 7, 'k3x9'); (await readMove(catalog, 7))!.stats.copyCommit // 'k3x9'
 */
export async function recordCopyCommit(client: PoolClient, id: number, attempt: string): Promise<void> {
  await client.query(
    `UPDATE shardctl.moves SET stats = stats || jsonb_build_object('copyCommit', $2::text) WHERE id = $1`,
    [id, attempt],
  );
}
