import { isFenceError, type Router } from '../../src/index.js';
import { pollUntil } from '../../src/db/poll.js';

/** What a concurrent writer saw: its model of acknowledged rows, and its errors. */
export interface WriterReport {
  /** `tenant:id` -> name of every acknowledged row of `users`; null for an acknowledged delete. */
  model: Map<string, string | null>;
  writes: number;
  /** Writes rejected by a fence (each retried through the router until accepted). */
  fenceRejections: number;
  /** Any other error: a test expects none. */
  otherErrors: string[];
  /** Longest time from a fence rejection to the next accepted write of that tenant, ms. */
  longestPauseMs: number;
  /** Pauses observed (rejection to acceptance), ms. */
  pauses: number[];
  /** Acknowledged writes per tenant. */
  writesByTenant: Map<number, number>;
}

/** A running writer. */
export interface RunningWriter {
  /** Stops it and returns what it saw. */
  stop(): Promise<WriterReport>;
  /**
   * Resolves once `count` more writes (of `tenant`, when given) have been acknowledged from now: a test
   * waits on the writer's progress, never on a guess of how long it takes.
   */
  waitForWrites(count: number, options?: { tenant?: number; timeoutMs?: number }): Promise<void>;
}

/**
 * Writes `users` rows of the given tenants through a router until stopped: inserts, updates and
 * deletes at random, one statement each (acknowledged = the statement returned). A write a fence
 * rejects refreshes the router and is retried, so that the writer follows a move to its new shard.
 */
export function startWriter(
  router: Router,
  tenants: number[],
  options: {
    ratePerSecond?: number;
    concurrency?: number;
    seed?: number;
    /**
     * Ids unique across tenants (100000 + tenant * 1000000 on): for schemas whose primary key is `id`
     * alone (the blog schema). Default: every tenant counts from 100000.
     */
    globalIds?: boolean;
  } = {},
): RunningWriter {
  const report: WriterReport = {
    model: new Map(),
    writes: 0,
    fenceRejections: 0,
    otherErrors: [],
    longestPauseMs: 0,
    pauses: [],
    writesByTenant: new Map(tenants.map((t) => [t, 0])),
  };
  let running = true;
  let seed = options.seed ?? 42;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const nextId = new Map<number, number>(
    tenants.map((t) => [t, options.globalIds ? 100_000 + t * 1_000_000 : 100_000]),
  );
  const live = new Map<number, number[]>(tenants.map((t) => [t, []]));
  const delay = options.ratePerSecond ? 1000 / options.ratePerSecond : 0;
  let seq = 0;
  const exec = async (tenant: number, sql: string, params: unknown[]): Promise<void> => {
    let rejectedAt: number | undefined;
    for (;;) {
      const shard = router.locate(tenant).shard;
      try {
        await router.pools.pool(shard).query(sql, params);
        if (rejectedAt !== undefined) {
          const p = performance.now() - rejectedAt;
          report.pauses.push(p);
          report.longestPauseMs = Math.max(report.longestPauseMs, p);
        }
        report.writes++;
        report.writesByTenant.set(tenant, (report.writesByTenant.get(tenant) ?? 0) + 1);
        return;
      } catch (e) {
        if (!isFenceError(e)) {
          report.otherErrors.push(`${shard}: ${(e as Error).message}`);
          return;
        }
        report.fenceRejections++;
        rejectedAt ??= performance.now();
        await router.refresh(e);
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  };
  const n = options.concurrency ?? 1;
  const worker = async (w: number) => {
    // Each worker owns its tenants, so that the model's order of writes per row is the database's.
    const mine = tenants.filter((_, i) => i % n === w);
    while (running && mine.length > 0) {
      const tenant = mine[Math.floor(rand() * mine.length)]!;
      const ids = live.get(tenant)!;
      const r = rand();
      const name = `v${++seq}-${w}`;
      if (ids.length < 5 || r < 0.5) {
        const id = nextId.get(tenant)!;
        nextId.set(tenant, id + 1);
        ids.push(id);
        await exec(tenant, `INSERT INTO users (tenant_id, id, email, name) VALUES ($1, $2, $3, $4)`, [
          tenant,
          id,
          `w${id}@t${tenant}`,
          name,
        ]);
        if (report.otherErrors.length === 0) report.model.set(`${tenant}:${id}`, name);
      } else if (r < 0.85) {
        const id = ids[Math.floor(rand() * ids.length)]!;
        await exec(tenant, `UPDATE users SET name = $3 WHERE tenant_id = $1 AND id = $2`, [tenant, id, name]);
        if (report.otherErrors.length === 0) report.model.set(`${tenant}:${id}`, name);
      } else {
        const i = Math.floor(rand() * ids.length);
        const id = ids[i]!;
        ids.splice(i, 1);
        await exec(tenant, `DELETE FROM users WHERE tenant_id = $1 AND id = $2`, [tenant, id]);
        if (report.otherErrors.length === 0) report.model.set(`${tenant}:${id}`, null);
      }
      if (delay > 0) await new Promise((r2) => setTimeout(r2, delay * n));
    }
  };
  const workers = Array.from({ length: n }, (_, w) => worker(w));
  const acknowledged = (tenant?: number) =>
    tenant === undefined ? report.writes : (report.writesByTenant.get(tenant) ?? 0);
  return {
    async stop() {
      running = false;
      await Promise.all(workers);
      return report;
    },
    async waitForWrites(count, w = {}) {
      const goal = acknowledged(w.tenant) + count;
      await pollUntil(() => acknowledged(w.tenant) >= goal, {
        timeoutMs: w.timeoutMs ?? 20_000,
        intervalMs: 10,
        reason: `${count} more acknowledged writes${w.tenant === undefined ? '' : ` of tenant ${w.tenant}`}`,
      });
    },
  };
}
