/** A tenant as the planner sees it. */
export interface PlanTenant {
  tenant: string;
  shard: string;
  bytes: number;
  rows?: number;
}

/** Inputs of {@link planRebalance}. */
export interface PlanInput {
  /** Every shard of the map, in map order (a new shard with no tenant included). */
  shards: string[];
  tenants: PlanTenant[];
  /** Allowed deviation from the mean, as a fraction. Default 0.10 (10%). */
  threshold?: number;
  /** Stop after this many moves. Default: no limit. */
  maxMoves?: number;
  /** Stop before moving more than this many bytes. Default: no limit. */
  maxBytes?: number;
  /** Tenants never moved. */
  exclude?: string[];
  /** Shards to empty onto the others (decommissioning). */
  drain?: string[];
  /**
   * Where the placement rule of the current map puts each tenant; with `towardRule`, tenants not
   * on their rule's shard are moved there first (after a shard-count change under `modulo`).
   */
  ruleShard?: (tenant: string) => string;
  towardRule?: boolean;
}

/** One move of a plan. */
export interface PlannedMove {
  tenant: string;
  from: string;
  to: string;
  bytes: number;
  rows?: number;
  /** Why: `drain`, `rule` or `balance`. */
  reason: 'drain' | 'rule' | 'balance';
}

/** A plan: moves, and each shard's load before and after. */
export interface RebalancePlan {
  moves: PlannedMove[];
  before: Record<string, number>;
  after: Record<string, number>;
  /** Mean tenant bytes per shard that receives tenants (drained shards excluded). */
  mean: number;
  threshold: number;
  bytesMoved: number;
  /**
   * Lower bounds of the bytes any plan must move: `surplus` is the sum over shards of their bytes
   * above the mean, `band` the sum of bytes above the threshold's upper edge (plus drained bytes).
   */
  lowerBound: { surplus: number; band: number };
  /** Tenants larger than a shard may hold within the threshold: reported, never shuffled around. */
  whales: PlanTenant[];
  /** True when every receiving shard ends within the threshold of the mean. */
  balanced: boolean;
  notes: string[];
}

/**
 * Plans tenant moves that bring every shard within `threshold` of the mean tenant bytes while moving
 * few bytes. Greedy, deterministic: first drains (largest tenants first, each to the emptiest shard),
 * then optional moves toward the rule, then repeatedly takes the fullest and the emptiest shard and moves
 * the tenant whose size is closest to what would bring one of them to the mean, never overshooting (so
 * the spread strictly shrinks and no tenant moves twice). Whales (tenants above the band's upper edge)
 * stay put and are reported.
 *
 * @example
 * planRebalance({ shards: ['a', 'b'], tenants: [{ tenant: '1', shard: 'a', bytes: 60 }, { tenant: '2', shard: 'a', bytes: 40 }] })
 * // moves tenant 2 (40 bytes) from a to b
 */
export function planRebalance(input: PlanInput): RebalancePlan {
  const threshold = input.threshold ?? 0.1;
  const drain = new Set(input.drain ?? []);
  const exclude = new Set(input.exclude ?? []);
  const notes: string[] = [];
  const load = new Map<string, number>(input.shards.map((s) => [s, 0]));
  const location = new Map<string, string>();
  for (const t of input.tenants) {
    if (!load.has(t.shard)) {
      notes.push(`tenant ${t.tenant} sits on unknown shard ${t.shard}: left out`);
      continue;
    }
    load.set(t.shard, load.get(t.shard)! + t.bytes);
    location.set(t.tenant, t.shard);
  }
  const before = Object.fromEntries(load);
  const receivers = input.shards.filter((s) => !drain.has(s));
  if (receivers.length === 0) throw new Error('every shard is being drained: nothing can receive tenants');
  const total = [...load.values()].reduce((a, b) => a + b, 0);
  const mean = total / receivers.length;
  const upper = mean * (1 + threshold);
  const lower = mean * (1 - threshold);
  const moves: PlannedMove[] = [];
  const moved = new Set<string>();
  let bytesMoved = 0;
  const budgetLeft = (b: number) =>
    (input.maxMoves === undefined || moves.length < input.maxMoves) &&
    (input.maxBytes === undefined || bytesMoved + b <= input.maxBytes);
  const move = (t: PlanTenant, to: string, reason: PlannedMove['reason']) => {
    const from = location.get(t.tenant)!;
    load.set(from, load.get(from)! - t.bytes);
    load.set(to, load.get(to)! + t.bytes);
    location.set(t.tenant, to);
    moved.add(t.tenant);
    bytesMoved += t.bytes;
    moves.push({
      tenant: t.tenant,
      from,
      to,
      bytes: t.bytes,
      ...(t.rows !== undefined ? { rows: t.rows } : {}),
      reason,
    });
  };
  const emptiest = () => receivers.reduce((best, s) => (load.get(s)! < load.get(best)! ? s : best));
  const bySizeDesc = [...input.tenants]
    .filter((t) => location.has(t.tenant))
    .sort((a, b) => b.bytes - a.bytes || a.tenant.localeCompare(b.tenant));

  // 1. Drain: everything leaves, whatever its size.
  for (const t of bySizeDesc) {
    if (!drain.has(location.get(t.tenant)!)) continue;
    if (exclude.has(t.tenant)) {
      notes.push(
        `tenant ${t.tenant} is excluded but sits on drained shard ${location.get(t.tenant)}: the shard will not be empty`,
      );
      continue;
    }
    if (!budgetLeft(t.bytes)) {
      notes.push('move or byte limit reached while draining: the shard will not be empty');
      break;
    }
    move(t, emptiest(), 'drain');
  }

  // 2. Toward the rule: tenants the current rule places elsewhere go there.
  if (input.towardRule && input.ruleShard) {
    for (const t of bySizeDesc) {
      const target = input.ruleShard(t.tenant);
      const at = location.get(t.tenant)!;
      if (moved.has(t.tenant) || exclude.has(t.tenant) || target === at || drain.has(target) || !load.has(target))
        continue;
      if (!budgetLeft(t.bytes)) {
        notes.push('move or byte limit reached while moving tenants toward the rule');
        break;
      }
      move(t, target, 'rule');
    }
  }

  // 3. Balance.
  const whales = bySizeDesc.filter((t) => t.bytes > upper && !moved.has(t.tenant));
  const whaleSet = new Set(whales.map((w) => w.tenant));
  const stuck = new Set<string>();
  for (;;) {
    const candidates = receivers.filter((s) => !stuck.has(s));
    if (candidates.length < 2) break;
    const src = candidates.reduce((best, s) => (load.get(s)! > load.get(best)! ? s : best));
    const dst = receivers.reduce((best, s) => (load.get(s)! < load.get(best)! ? s : best));
    const ls = load.get(src)!;
    const ld = load.get(dst)!;
    if (ls <= upper && ld >= lower) break;
    if (src === dst) break;
    const gap = Math.min(ls - mean, mean - ld);
    const room = ls - ld; // moving b < room strictly shrinks the spread between the two
    let best: PlanTenant | undefined;
    for (const t of bySizeDesc) {
      if (location.get(t.tenant) !== src || moved.has(t.tenant) || exclude.has(t.tenant) || whaleSet.has(t.tenant))
        continue;
      if (t.bytes <= 0 || t.bytes >= room) continue;
      if (ld + t.bytes > upper && ls <= upper) continue; // would push the receiver out of the band for nothing
      if (!best || Math.abs(t.bytes - gap) < Math.abs(best.bytes - gap)) best = t;
    }
    if (!best) {
      stuck.add(src);
      continue;
    }
    if (!budgetLeft(best.bytes)) {
      notes.push('move or byte limit reached before the fleet was balanced');
      break;
    }
    move(best, dst, 'balance');
  }
  for (const w of whales)
    notes.push(
      `tenant ${w.tenant} (${w.bytes} bytes) is larger than a shard may hold within ${Math.round(threshold * 100)}% of the mean: left on ${w.shard}`,
    );

  const after = Object.fromEntries(load);
  const balanced =
    receivers.every((s) => load.get(s)! <= upper + 1e-9 && load.get(s)! >= lower - 1e-9) &&
    [...drain].every((s) => load.get(s) === 0);
  const surplus =
    receivers.reduce((a, s) => a + Math.max(0, before[s]! - mean), 0) +
    [...drain].reduce((a, s) => a + (before[s] ?? 0), 0);
  const band =
    receivers.reduce((a, s) => a + Math.max(0, before[s]! - upper), 0) +
    [...drain].reduce((a, s) => a + (before[s] ?? 0), 0);
  return { moves, before, after, mean, threshold, bytesMoved, lowerBound: { surplus, band }, whales, balanced, notes };
}
