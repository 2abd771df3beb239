import type { MoveOptions } from '../move/plan-move.js';
import type { ShardMap } from '../config/shard-map.js';
import { ensureCatalogSchema } from '../catalog/catalog-schema.js';
import { ShardPools } from '../db/shard-pools.js';
import { ExitCode, fromDriverError, ShardctlError } from '../errors.js';
import { crashPoint } from '../crash-points.js';
import { listMoves, tenantsOf, type MoveRecord } from '../move/move-journal.js';
import { cleanupMove, moveTenant, resumeMove, type MoveEvent } from '../move/move-tenant.js';
import { compileRule } from '../placement/placement.js';
import { parseTenant } from '../placement/tenant-key.js';
import { createRouter } from '../router/create-router.js';
import { pruneDirectory } from './freeze-placements.js';
import { planRebalance, type PlannedMove, type RebalancePlan } from './plan-rebalance.js';
import { ruleFingerprint } from '../catalog/rule-state.js';
import { measureTenantSizes } from './tenant-sizes.js';

/** A plan as saved to a file (`rebalance --plan --json > plan.json`) and applied later. */
export interface FleetPlan extends RebalancePlan {
  version: 1;
  createdAt: string;
  /** Fingerprint of the placement rule the plan was made with. */
  rule: string;
  /** True when sizes came from sampling or statistics. */
  estimated: boolean;
}

/** Options of {@link computeFleetPlan}. */
export interface FleetPlanOptions {
  threshold?: number;
  maxMoves?: number;
  maxBytes?: number;
  exclude?: string[];
  drain?: string[];
  towardRule?: boolean;
  timeoutMs?: number;
}

/**
 * Measures the fleet and plans the moves that bring it within the threshold (see `planRebalance`).
 * Every shard must be reachable: a plan that ignores one would be wrong. Reads only.
 *
 * @example
 * const plan = await computeFleetPlan(map, { threshold: 0.1 });
 */
export async function computeFleetPlan(map: ShardMap, options: FleetPlanOptions = {}): Promise<FleetPlan> {
  for (const d of options.drain ?? []) {
    if (!map.shards.some((s) => s.name === d))
      throw new ShardctlError(`unknown shard "${d}" to drain`, { code: 'UNKNOWN_SHARD', exitCode: ExitCode.Usage });
  }
  const sizes = await measureTenantSizes(map, options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {});
  const failed = sizes.filter((s) => s.status === 'failed');
  if (failed.length > 0) {
    throw new ShardctlError(
      `cannot plan: ${failed.map((f) => (f.status === 'failed' ? f.error.message : '')).join('; ')}`,
      { code: 'UNREACHABLE', hint: 'every shard must be reachable to plan' },
    );
  }
  const ok = sizes.flatMap((s) => (s.status === 'ok' ? [s.value] : []));
  const rule = compileRule(map);
  const plan = planRebalance({
    shards: map.shards.map((s) => s.name),
    tenants: ok.flatMap((s) =>
      s.tenants.map((t) => ({ tenant: t.tenant, shard: s.shard, bytes: t.bytes, rows: t.rows })),
    ),
    ...(options.threshold !== undefined ? { threshold: options.threshold } : {}),
    ...(options.maxMoves !== undefined ? { maxMoves: options.maxMoves } : {}),
    ...(options.maxBytes !== undefined ? { maxBytes: options.maxBytes } : {}),
    ...(options.exclude ? { exclude: options.exclude } : {}),
    ...(options.drain ? { drain: options.drain } : {}),
    ...(options.towardRule
      ? { towardRule: true, ruleShard: (t: string) => rule(parseTenant(t, map.shardKey.type)).shard.name }
      : {}),
  });
  return {
    version: 1,
    createdAt: new Date().toISOString(),
    rule: ruleFingerprint(map),
    estimated: ok.some((s) => s.estimated),
    ...plan,
  };
}

/** Outcome of one planned move. */
export interface AppliedMove extends PlannedMove {
  status: 'done' | 'failed' | 'skipped';
  moveId?: number;
  error?: string;
}

/** Result of {@link applyFleetPlan}. */
export interface ApplyReport {
  planId: number;
  state: 'done' | 'failed';
  moves: AppliedMove[];
  bytesMoved: number;
  seconds: number;
}

/** Progress of a plan. */
export interface PlanProgress {
  planId: number;
  done: number;
  total: number;
  bytesMoved: number;
  totalBytes: number;
  /** Bytes per second so far. */
  rate: number;
  etaSeconds?: number;
  move?: MoveEvent;
}

/** Options of {@link applyFleetPlan}. */
export interface ApplyOptions {
  /** Moves at once, on disjoint shards. Default 1. */
  parallel?: number;
  /** Go on after a failed move (it is reported). Default false: the plan stops. */
  continueOnError?: boolean;
  /** Throttle every copy to this many bytes per second. */
  maxBytesPerSecond?: number;
  onProgress?: (p: PlanProgress) => void;
  timeoutMs?: number;
  /** How each move runs (online by default) and its pause budget; see {@link MoveOptions}. */
  move?: Pick<MoveOptions, 'mode' | 'capture' | 'allowOffline' | 'maxPauseMs' | 'switchAttempts'>;
  /**
   * Small tenants that go between the same pair of shards move together in one group move (one copy,
   * one capture, one pause, one switch), up to `maxTenants` tenants and `maxBytes` bytes per group; a
   * tenant larger than `maxBytes` moves alone. `false`: every tenant alone. Default 25 tenants, 256 MB.
   */
  group?: false | GroupLimits;
}

/** Limits of a group move of the fleet planner. */
export interface GroupLimits {
  maxTenants?: number;
  maxBytes?: number;
}

/** Default limits of a group move: large enough to pay the fixed cost of a move once, small enough for one pause. */
export const GROUP_DEFAULTS: Required<GroupLimits> = { maxTenants: 25, maxBytes: 256 * 1024 * 1024 };

/**
 * The units a plan runs as: lists of indices of its moves that go together. Moves already journaled
 * (a resumed plan) keep the grouping they were journaled with; the others are grouped per pair of
 * shards in plan order within the limits.
 *
 * @example
 * groupMoves(plan.moves, { maxTenants: 2 }, []) // [[0, 1], [2], ...]
 */
export function groupMoves(moves: PlannedMove[], limits: false | GroupLimits, journaled: MoveRecord[]): number[][] {
  const units: number[][] = [];
  const taken = new Set<number>();
  for (const j of journaled) {
    if (j.state === 'aborted') continue;
    const ts = new Set(tenantsOf(j));
    const unit = moves.flatMap((m, i) => (ts.has(m.tenant) && !taken.has(i) ? [i] : []));
    for (const i of unit) taken.add(i);
    if (unit.length > 0) units.push(unit);
  }
  const max = limits === false ? { maxTenants: 1, maxBytes: 0 } : { ...GROUP_DEFAULTS, ...limits };
  const open = new Map<string, { unit: number[]; bytes: number }>();
  for (const [i, m] of moves.entries()) {
    if (taken.has(i)) continue;
    const pair = `${m.from}\u0000${m.to}`;
    const cur = open.get(pair);
    if (cur && cur.unit.length < max.maxTenants && cur.bytes + m.bytes <= max.maxBytes) {
      cur.unit.push(i);
      cur.bytes += m.bytes;
      continue;
    }
    const next = { unit: [i], bytes: m.bytes };
    units.push(next.unit);
    if (m.bytes <= max.maxBytes) open.set(pair, next);
    else open.delete(pair);
  }
  return units.sort((a, b) => a[0]! - b[0]!);
}

/**
 * Checks that a (possibly saved) plan still applies: every tenant still lives on the shard the plan
 * moves it from. Returns the reasons it does not (empty when it applies).
 */
export async function planConflicts(map: ShardMap, plan: FleetPlan): Promise<string[]> {
  const reasons: string[] = [];
  if (plan.version !== 1) reasons.push(`unknown plan version ${String(plan.version)}`);
  const names = new Set(map.shards.map((s) => s.name));
  const router = await createRouter(map, { listen: false });
  try {
    for (const m of plan.moves) {
      if (!names.has(m.to)) reasons.push(`tenant ${m.tenant}: target shard ${m.to} is not in the map`);
      const at = router.locate(m.tenant).shard;
      if (at !== m.from) reasons.push(`tenant ${m.tenant} now lives on ${at}, not ${m.from} as the plan says`);
    }
  } finally {
    await router.close();
  }
  return reasons;
}

/**
 * Carries out a plan with the crash-safe move, one at a time by default (small tenants between the same
 * pair of shards grouped into one move, see {@link ApplyOptions.group}), journaled as a
 * whole (`shardctl.rebalance_plans`, each move pointing to it) so that {@link resumeFleetPlan} finishes it
 * after a crash or Ctrl-C. Refuses a plan that no longer applies. Directory entries that agree with the
 * map's rule are dropped first (after a freeze).
 *
 * @example
 * const report = await applyFleetPlan(map, await computeFleetPlan(map));
 */
export async function applyFleetPlan(map: ShardMap, plan: FleetPlan, options: ApplyOptions = {}): Promise<ApplyReport> {
  const reasons = await planConflicts(map, plan);
  if (reasons.length > 0) {
    throw new ShardctlError(
      `the plan no longer applies: ${reasons.slice(0, 10).join('; ')}${reasons.length > 10 ? `; and ${reasons.length - 10} more` : ''}`,
      {
        code: 'PLAN_STALE',
        hint: 'make a new plan with `shardctl rebalance --plan`',
        details: reasons,
      },
    );
  }
  const pools = await ShardPools.open(map, { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 2 });
  let planId: number;
  try {
    await pruneDirectory(map, pools);
    planId = await pools.withShard(map.catalog, async (c) => {
      await ensureCatalogSchema(c);
      const r = await c.query<{ id: string }>(
        "INSERT INTO shardctl.rebalance_plans (state, plan) VALUES ('running', $1) RETURNING id",
        [JSON.stringify(plan)],
      );
      return Number(r.rows[0]!.id);
    });
  } finally {
    await pools.close();
  }
  return runPlan(map, planId, plan, options);
}

/**
 * Finishes a fleet plan after a crash or a stop: moves already done are skipped, a move in flight is
 * resumed, the rest run.
 *
 * @example
 * await resumeFleetPlan(map, 3);
 */
export async function resumeFleetPlan(map: ShardMap, planId: number, options: ApplyOptions = {}): Promise<ApplyReport> {
  const pools = await ShardPools.open(map, { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 1 });
  let plan: FleetPlan;
  try {
    const r = await pools.withShard(map.catalog, async (c) => {
      const exists = await c.query<{ t: string | null }>("SELECT to_regclass('shardctl.rebalance_plans')::text AS t");
      return exists.rows[0]?.t
        ? (await c.query<{ plan: FleetPlan }>('SELECT plan FROM shardctl.rebalance_plans WHERE id = $1', [planId]))
            .rows[0]
        : undefined;
    });
    if (!r)
      throw new ShardctlError(`no rebalance plan ${planId} in the journal`, {
        code: 'UNKNOWN_PLAN',
        exitCode: ExitCode.Usage,
      });
    plan = r.plan;
  } finally {
    await pools.close();
  }
  return runPlan(map, planId, plan, options);
}

/** One run of a fleet plan: its moves' results and the small scheduler that runs them. */
class PlanRun {
  private readonly start = performance.now();
  readonly results: AppliedMove[];
  bytesMoved = 0;
  /** Moves (single or group) finished in this run. */
  private movesDone = 0;
  private readonly totalBytes: number;
  /** Set when a move fails without continueOnError: nothing new starts. */
  private stop = false;
  private readonly cleanups = new Set<Promise<void>>();

  constructor(
    private readonly map: ShardMap,
    private readonly planId: number,
    private readonly plan: FleetPlan,
    private readonly options: ApplyOptions,
    /** The plan's moves already in the journal (a resumed plan). */
    private readonly journaled: MoveRecord[],
  ) {
    this.results = plan.moves.map((m) => ({ ...m, status: 'skipped' }));
    this.totalBytes = plan.moves.reduce((a, m) => a + m.bytes, 0);
  }

  private doneCount(): number {
    return this.results.filter((r) => r.status === 'done').length;
  }

  private report(move?: MoveEvent): void {
    const s = (performance.now() - this.start) / 1000;
    const rate = this.bytesMoved / Math.max(s, 0.001);
    this.options.onProgress?.({
      planId: this.planId,
      done: this.doneCount(),
      total: this.plan.moves.length,
      bytesMoved: this.bytesMoved,
      totalBytes: this.totalBytes,
      rate,
      ...(rate > 0 ? { etaSeconds: (this.totalBytes - this.bytesMoved) / rate } : {}),
      ...(move ? { move } : {}),
    });
  }

  private fail(i: number, e: unknown): void {
    this.results[i] = { ...this.results[i]!, status: 'failed', error: fromDriverError(e).message };
    if (!this.options.continueOnError) this.stop = true;
  }

  /**
   * Each move switches and keeps its source rows; their cleanup (which first waits the routers' grace
   * period after the switch) runs beside the next moves instead of holding them up.
   */
  private cleanLater(u: number[], id: number): void {
    const timeout = this.options.timeoutMs ? { timeoutMs: this.options.timeoutMs } : {};
    const p: Promise<void> = cleanupMove(this.map, id, timeout)
      .then(
        () => undefined,
        (e: unknown) => {
          for (const i of u) this.fail(i, e);
        },
      )
      .finally(() => this.cleanups.delete(p));
    this.cleanups.add(p);
  }

  /** Unit `u` carried out (one move, or a group): taken from the journal when done, resumed when in flight, else started. */
  private async moveOf(u: number[]): Promise<MoveRecord> {
    const m = this.plan.moves[u[0]!]!;
    const previous = this.journaled.find((j) => j.state !== 'aborted' && tenantsOf(j).includes(m.tenant));
    const common = {
      ...this.options.move,
      onProgress: (e: MoveEvent) => this.report(e),
      ...(this.options.timeoutMs ? { timeoutMs: this.options.timeoutMs } : {}),
    };
    if (previous && ['done', 'switched', 'cleaned'].includes(previous.state)) return previous;
    if (previous && previous.state !== 'aborted') return (await resumeMove(this.map, previous.id, common)).move;
    const throttle = this.options.maxBytesPerSecond ? { maxBytesPerSecond: this.options.maxBytesPerSecond } : {};
    return (
      await moveTenant(this.map, u.length > 1 ? u.map((i) => this.plan.moves[i]!.tenant) : m.tenant, m.to, {
        ...common,
        planId: this.planId,
        keepSource: true,
        ...throttle,
      })
    ).move;
  }

  private async runOne(u: number[]): Promise<void> {
    try {
      const move = await this.moveOf(u);
      for (const i of u) {
        const m = this.plan.moves[i]!;
        this.results[i] = { ...m, status: 'done', moveId: move.id };
        this.bytesMoved += m.bytes;
      }
      if (move.state !== 'done') this.cleanLater(u, move.id);
      // Counted in moves carried out (a group is one move), as the journal counts them.
      crashPoint(`plan-after-move:${++this.movesDone}`);
    } catch (e) {
      for (const i of u) this.fail(i, e);
    }
    this.report();
  }

  /** Runs the moves, up to `parallel` at once whose shards are all idle; waits for the cleanups. */
  async runAll(): Promise<void> {
    const parallel = Math.max(1, this.options.parallel ?? 1);
    const busy = new Set<string>();
    const running = new Set<Promise<void>>();
    const pending = groupMoves(this.plan.moves, this.options.group ?? {}, this.journaled);
    while ((pending.length > 0 && !this.stop) || running.size > 0) {
      let started = false;
      for (let k = 0; k < pending.length && running.size < parallel && !this.stop; k++) {
        const i = pending[k]!;
        const m = this.plan.moves[i[0]!]!;
        if (busy.has(m.from) || busy.has(m.to)) continue;
        pending.splice(k, 1);
        k--;
        busy.add(m.from);
        busy.add(m.to);
        const p: Promise<void> = this.runOne(i).finally(() => {
          busy.delete(m.from);
          busy.delete(m.to);
          running.delete(p);
        });
        running.add(p);
        started = true;
      }
      if (running.size > 0) await Promise.race(running);
      else if (!started) break;
    }
    await Promise.all([...this.cleanups]);
  }

  seconds(): number {
    return (performance.now() - this.start) / 1000;
  }
}

async function runPlan(map: ShardMap, planId: number, plan: FleetPlan, options: ApplyOptions): Promise<ApplyReport> {
  const pools = await ShardPools.open(map, { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 2 });
  try {
    const journal = await pools.withShard(map.catalog, (c) => listMoves(c));
    const run = new PlanRun(
      map,
      planId,
      plan,
      options,
      journal.filter((m) => m.planId === planId),
    );
    await run.runAll();
    const { results, bytesMoved } = run;
    const state = results.some((r) => r.status === 'failed' || r.status === 'skipped') ? 'failed' : 'done';
    await pools.withShard(map.catalog, (c) =>
      c.query('UPDATE shardctl.rebalance_plans SET state = $2, updated_at = now() WHERE id = $1', [planId, state]),
    );
    return { planId, state, moves: results, bytesMoved, seconds: run.seconds() };
  } finally {
    await pools.close();
  }
}
