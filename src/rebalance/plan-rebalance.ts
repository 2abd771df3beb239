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
  const p = new Planner(input);
  p.drainShards();
  if (input.towardRule && input.ruleShard) p.towardRule(input.ruleShard);
  const whales = p.balance();
  return p.plan(whales);
}

/** The planner's working state: each shard's load and each tenant's shard as moves are chosen. */
class Planner {
  readonly threshold: number;
  private readonly drain: Set<string>;
  private readonly exclude: Set<string>;
  private readonly notes: string[] = [];
  private readonly load: Map<string, number>;
  private readonly location = new Map<string, string>();
  private readonly before: Record<string, number>;
  private readonly receivers: string[];
  private readonly mean: number;
  private readonly upper: number;
  private readonly lower: number;
  private readonly moves: PlannedMove[] = [];
  private readonly moved = new Set<string>();
  private bytesMoved = 0;
  /** Tenants largest first (ties by id), so that every pass is deterministic. */
  private readonly bySizeDesc: PlanTenant[];

  constructor(private readonly input: PlanInput) {
    this.threshold = input.threshold ?? 0.1;
    this.drain = new Set(input.drain ?? []);
    this.exclude = new Set(input.exclude ?? []);
    this.load = new Map<string, number>(input.shards.map((s) => [s, 0]));
    for (const t of input.tenants) {
      if (!this.load.has(t.shard)) {
        this.notes.push(`tenant ${t.tenant} sits on unknown shard ${t.shard}: left out`);
        continue;
      }
      this.load.set(t.shard, this.load.get(t.shard)! + t.bytes);
      this.location.set(t.tenant, t.shard);
    }
    this.before = Object.fromEntries(this.load);
    this.receivers = input.shards.filter((s) => !this.drain.has(s));
    if (this.receivers.length === 0) throw new Error('every shard is being drained: nothing can receive tenants');
    const total = [...this.load.values()].reduce((a, b) => a + b, 0);
    this.mean = total / this.receivers.length;
    this.upper = this.mean * (1 + this.threshold);
    this.lower = this.mean * (1 - this.threshold);
    this.bySizeDesc = [...input.tenants]
      .filter((t) => this.location.has(t.tenant))
      .sort((a, b) => b.bytes - a.bytes || a.tenant.localeCompare(b.tenant));
  }

  private budgetLeft(bytes: number): boolean {
    const { maxMoves, maxBytes } = this.input;
    return (
      (maxMoves === undefined || this.moves.length < maxMoves) &&
      (maxBytes === undefined || this.bytesMoved + bytes <= maxBytes)
    );
  }

  private move(t: PlanTenant, to: string, reason: PlannedMove['reason']): void {
    const from = this.location.get(t.tenant)!;
    this.load.set(from, this.load.get(from)! - t.bytes);
    this.load.set(to, this.load.get(to)! + t.bytes);
    this.location.set(t.tenant, to);
    this.moved.add(t.tenant);
    this.bytesMoved += t.bytes;
    this.moves.push({
      tenant: t.tenant,
      from,
      to,
      bytes: t.bytes,
      ...(t.rows !== undefined ? { rows: t.rows } : {}),
      reason,
    });
  }

  private emptiest(): string {
    return this.receivers.reduce((best, s) => (this.load.get(s)! < this.load.get(best)! ? s : best));
  }

  /** 1. Drain: everything leaves, whatever its size, each tenant to the emptiest receiver. */
  drainShards(): void {
    for (const t of this.bySizeDesc) {
      if (!this.drain.has(this.location.get(t.tenant)!)) continue;
      if (this.exclude.has(t.tenant)) {
        this.notes.push(
          `tenant ${t.tenant} is excluded but sits on drained shard ${this.location.get(t.tenant)}: the shard will not be empty`,
        );
        continue;
      }
      if (!this.budgetLeft(t.bytes)) {
        this.notes.push('move or byte limit reached while draining: the shard will not be empty');
        break;
      }
      this.move(t, this.emptiest(), 'drain');
    }
  }

  /** 2. Toward the rule: tenants the current rule places elsewhere go there. */
  towardRule(ruleShard: (tenant: string) => string): void {
    for (const t of this.bySizeDesc) {
      const target = ruleShard(t.tenant);
      const at = this.location.get(t.tenant)!;
      if (this.moved.has(t.tenant) || this.exclude.has(t.tenant) || target === at) continue;
      if (this.drain.has(target) || !this.load.has(target)) continue;
      if (!this.budgetLeft(t.bytes)) {
        this.notes.push('move or byte limit reached while moving tenants toward the rule');
        break;
      }
      this.move(t, target, 'rule');
    }
  }

  /**
   * The tenant of `src` whose size is closest to `gap`, below `room` (so that the spread between the two
   * shards strictly shrinks), never a whale or an excluded or already moved tenant.
   */
  private closest(src: string, ls: number, ld: number, whales: Set<string>): PlanTenant | undefined {
    const gap = Math.min(ls - this.mean, this.mean - ld);
    const room = ls - ld;
    let best: PlanTenant | undefined;
    for (const t of this.bySizeDesc) {
      if (this.location.get(t.tenant) !== src || this.moved.has(t.tenant)) continue;
      if (this.exclude.has(t.tenant) || whales.has(t.tenant)) continue;
      if (t.bytes <= 0 || t.bytes >= room) continue;
      if (ld + t.bytes > this.upper && ls <= this.upper) continue; // would push the receiver out of the band for nothing
      if (!best || Math.abs(t.bytes - gap) < Math.abs(best.bytes - gap)) best = t;
    }
    return best;
  }

  /** 3. Balance: fullest to emptiest until both are within the band. Returns the whales, left in place. */
  balance(): PlanTenant[] {
    const whales = this.bySizeDesc.filter((t) => t.bytes > this.upper && !this.moved.has(t.tenant));
    const whaleSet = new Set(whales.map((w) => w.tenant));
    const stuck = new Set<string>();
    for (;;) {
      const candidates = this.receivers.filter((s) => !stuck.has(s));
      if (candidates.length < 2) break;
      const src = candidates.reduce((best, s) => (this.load.get(s)! > this.load.get(best)! ? s : best));
      const dst = this.emptiest();
      const ls = this.load.get(src)!;
      const ld = this.load.get(dst)!;
      if ((ls <= this.upper && ld >= this.lower) || src === dst) break;
      const best = this.closest(src, ls, ld, whaleSet);
      if (!best) {
        stuck.add(src);
        continue;
      }
      if (!this.budgetLeft(best.bytes)) {
        this.notes.push('move or byte limit reached before the fleet was balanced');
        break;
      }
      this.move(best, dst, 'balance');
    }
    for (const w of whales)
      this.notes.push(
        `tenant ${w.tenant} (${w.bytes} bytes) is larger than a shard may hold within ${Math.round(this.threshold * 100)}% of the mean: left on ${w.shard}`,
      );
    return whales;
  }

  plan(whales: PlanTenant[]): RebalancePlan {
    const { load, receivers, before, mean, upper, lower } = this;
    const drain = [...this.drain];
    const drained = drain.reduce((a, s) => a + (before[s] ?? 0), 0);
    const balanced =
      receivers.every((s) => load.get(s)! <= upper + 1e-9 && load.get(s)! >= lower - 1e-9) &&
      drain.every((s) => load.get(s) === 0);
    const surplus = receivers.reduce((a, s) => a + Math.max(0, before[s]! - mean), 0) + drained;
    const band = receivers.reduce((a, s) => a + Math.max(0, before[s]! - upper), 0) + drained;
    return {
      moves: this.moves,
      before,
      after: Object.fromEntries(load),
      mean,
      threshold: this.threshold,
      bytesMoved: this.bytesMoved,
      lowerBound: { surplus, band },
      whales,
      balanced,
      notes: this.notes,
    };
  }
}
