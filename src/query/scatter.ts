import type { ShardMap } from '../config/shard-map.js';
import { createRouter as createShardRouter, type RouterOptions, type ShardRouter } from '../router/create-router.js';
import { runQuery } from './run-query.js';

/** Options of {@link Router.scatter}. */
export interface ScatterOptions {
  /** Only this tenant's shard. */
  tenant?: string;
  /** Only these shards. */
  shards?: string[];
  /** statement_timeout on every shard, ms. */
  statementTimeoutMs?: number;
  /** Most rows held in memory at once. Default 1,000,000. */
  maxRows?: number;
}

/**
 * Routes tenants to shards (see {@link ShardRouter}) and answers scatter-gather SELECTs with the same
 * engine as `shardctl query`.
 */
export interface Router extends ShardRouter {
  /**
   * Asks every shard one SELECT and yields the merged rows as objects of PostgreSQL text values
   * (int8 and numeric stay exact strings), the same engine as `shardctl query`; refuses what cannot be
   * answered exactly.
   */
  scatter(
    sql: string,
    params?: unknown[],
    options?: ScatterOptions,
  ): AsyncIterableIterator<Record<string, string | null>>;
}

/**
 * Adds `scatter` to a router of the router layer (which cannot see the query engine above it).
 *
 * @example
 * const router = withScatter(await createShardRouter(map));
 * for await (const row of router.scatter('SELECT count(*) FROM users')) console.log(row.count);
 */
export function withScatter(base: ShardRouter): Router {
  async function* scatter(sql: string, params: unknown[] = [], options: ScatterOptions = {}) {
    const result = await runQuery(base.map, sql, params, { ...options, router: base });
    for (const row of result.rows) {
      const out: Record<string, string | null> = {};
      result.fields.forEach((f, i) => (out[f.name] = row[i] ?? null));
      yield out;
    }
  }
  // The base router's getters (directoryVersion, pools) must stay live: extend it, do not copy it.
  return Object.assign(Object.create(base) as ShardRouter, { scatter }) as Router;
}

/**
 * Creates a router for a map (or the path of one), with `scatter`: the public entry's `createRouter`.
 * Reads the placement directory once from the catalog shard unless `offline`.
 *
 * @example
 * const router = await createRouter('shards.yaml');
 * const rows = await router.db<DB>(123).selectFrom('users').selectAll().where('tenant_id', '=', 123).execute();
 * for await (const row of router.scatter('SELECT plan, count(*) FROM users GROUP BY plan')) console.log(row);
 * await router.close();
 */
export async function createRouter(mapOrPath: ShardMap | string, options: RouterOptions = {}): Promise<Router> {
  return withScatter(await createShardRouter(mapOrPath, options));
}
