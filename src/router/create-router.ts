import type { Kysely } from 'kysely';
import type { Shard, ShardMap } from '../config/shard-map.js';
import { loadShardMap } from '../config/load-shard-map.js';
import { readDirectory, readDirectoryVersion } from '../catalog/directory.js';
import type { ShardPools, ShardPoolsOptions } from '../db/shard-pools.js';
import { ExitCode, ShardctlError } from '../errors.js';
import { compileRule } from '../placement/placement.js';
import { parseTenant, tenantText, type TenantKey } from '../placement/tenant-key.js';
import { assertRuleUnchanged, readRuleState } from '../catalog/rule-state.js';

/** Where a tenant lives. */
export interface Location {
  /** Tenant in canonical text form. */
  tenant: string;
  /** Shard holding the tenant: the directory's entry if there is one, else the rule's. */
  shard: string;
  /** Shard the placement rule alone names. */
  ruleShard: string;
  /** Hash bucket (`hash` strategy only). */
  bucket?: number;
  /** True when the directory overrides the rule (the tenant was moved). */
  override: boolean;
}

/** Options of {@link createRouter}. */
export interface RouterOptions {
  /** Compute from the map alone; never connect. `db()` and `refresh()` are unavailable. Default false. */
  offline?: boolean;
  /** How long a directory read is trusted before its version is checked again, in ms. Default 2000. */
  directoryTtlMs?: number;
  /** Connection options of the pools. */
  pool?: ShardPoolsOptions;
}

/**
 * Routes tenants to shards: the TypeScript form of the classic `get_session(tenant_id)`.
 * `locate` is synchronous and served from memory; the directory is re-read in the background
 * when its TTL expires and its version changed.
 */
export interface Router {
  readonly map: ShardMap;
  /** True when built with `offline`: the directory was not read. */
  readonly offline: boolean;
  /** Version of the directory in memory (-1 when none was read). */
  readonly directoryVersion: number;
  /** Where the tenant lives. Throws (exit code 2) on a value that is not a valid key. */
  locate(tenant: unknown): Location;
  /** Kysely bound to the tenant's shard. */
  db<DB>(tenant: unknown): Kysely<DB>;
  /** Kysely bound to a shard by name. */
  shard<DB>(name: string): Kysely<DB>;
  /** The connection pools behind `db()` and `shard()`. */
  readonly pools: ShardPools;
  /**
   * Asks every shard one SELECT and yields the merged rows as objects of PostgreSQL text values
   * (int8 and numeric stay exact strings), the same engine as `shardctl query`; refuses what cannot be
   * answered exactly.
   */
  scatter(
    sql: string,
    params?: unknown[],
    options?: { tenant?: string; shards?: string[]; statementTimeoutMs?: number; maxRows?: number },
  ): AsyncIterableIterator<Record<string, string | null>>;
  /** Checks the directory version now and re-reads the directory if it changed. */
  refresh(): Promise<void>;
  /** Closes every connection. */
  close(): Promise<void>;
}

/**
 * Creates a router for a map (or the path of one). Reads the placement directory once from the
 * catalog shard unless `offline`; a catalog without a shardctl schema reads as an empty directory.
 *
 * @example
 * const router = await createRouter('shards.yaml');
 * const rows = await router.db<DB>(123).selectFrom('users').selectAll().where('tenant_id', '=', 123).execute();
 * await router.close();
 */
export async function createRouter(mapOrPath: ShardMap | string, options: RouterOptions = {}): Promise<Router> {
  const map = typeof mapOrPath === 'string' ? await loadShardMap(mapOrPath) : mapOrPath;
  const rule = compileRule(map);
  const shardByName = new Map(map.shards.map((s) => [s.name, s]));
  const ttl = options.directoryTtlMs ?? 2000;
  const offline = options.offline ?? false;

  let pools: ShardPools | undefined;
  let kyselyModule: typeof import('kysely') | undefined;
  let pg: typeof import('pg') | undefined;
  if (!offline) {
    const { ShardPools: Pools, loadPg } = await import('../db/shard-pools.js');
    pools = await Pools.open(map, options.pool);
    pg = await loadPg();
    kyselyModule = await import('kysely');
  }

  let entries = new Map<string, string>();
  let version = -1;
  let checkedAt = 0;
  let refreshing: Promise<void> | undefined;
  let ruleError: ShardctlError | undefined;

  const refresh = async (): Promise<void> => {
    if (!pools) return;
    const p = pools;
    await p.withShard(map.catalog, async (client) => {
      const v = await readDirectoryVersion(client);
      if (v !== version) {
        const dir = await readDirectory(client);
        // A map whose rule differs from the recorded one would send tenants to shards that do not
        // hold them: refuse to route rather than answer from the wrong shard.
        try {
          assertRuleUnchanged(map, await readRuleState(client));
          ruleError = undefined;
        } catch (e) {
          ruleError = e as ShardctlError;
        }
        entries = dir.entries;
        version = dir.version;
      }
    });
    checkedAt = Date.now();
  };
  if (!offline) {
    await refresh();
    if (ruleError) {
      await pools?.close();
      throw ruleError;
    }
  }

  const kyselies = new Map<string, Kysely<unknown>>();
  const located = (tenant: TenantKey): Location => {
    const text = tenantText(tenant);
    const r = rule(tenant);
    const dirShard = entries.get(text);
    return {
      tenant: text,
      shard: dirShard ?? r.shard.name,
      ruleShard: r.shard.name,
      ...(r.bucket !== undefined ? { bucket: r.bucket } : {}),
      override: dirShard !== undefined && dirShard !== r.shard.name,
    };
  };

  const router: Router = {
    map,
    offline,
    get directoryVersion() {
      return version;
    },
    locate(tenant) {
      if (!offline && Date.now() - checkedAt > ttl && !refreshing) {
        // Stale reads are safe: a moved tenant's old shard rejects writes through its fence.
        refreshing = refresh()
          .catch(() => undefined)
          .finally(() => {
            refreshing = undefined;
          });
      }
      if (ruleError) throw ruleError;
      return located(parseTenant(tenant, map.shardKey.type));
    },
    db<DB>(tenant: unknown) {
      return router.shard<DB>(router.locate(tenant).shard);
    },
    shard<DB>(name: string) {
      if (!pools || !kyselyModule || !pg) {
        throw new ShardctlError('this router was created offline: it cannot connect', {
          code: 'OFFLINE',
          exitCode: ExitCode.Usage,
        });
      }
      const shard: Shard | undefined = shardByName.get(name);
      if (!shard) {
        throw new ShardctlError(`unknown shard "${name}"; the map has ${map.shards.map((s) => s.name).join(', ')}`, {
          code: 'UNKNOWN_SHARD',
          exitCode: ExitCode.Usage,
        });
      }
      let db = kyselies.get(name);
      if (!db) {
        db = new kyselyModule.Kysely<unknown>({
          dialect: new kyselyModule.PostgresDialect({ pool: pools.pool(name) }),
        });
        kyselies.set(name, db);
      }
      return db as Kysely<DB>;
    },
    get pools() {
      if (!pools)
        throw new ShardctlError('this router was created offline: it has no pools', {
          code: 'OFFLINE',
          exitCode: ExitCode.Usage,
        });
      return pools;
    },
    async *scatter(sql, params = [], options = {}) {
      const { runQuery } = await import('../query/run-query.js');
      const result = await runQuery(map, sql, params, { ...options, router });
      for (const row of result.rows) {
        const out: Record<string, string | null> = {};
        result.fields.forEach((f, i) => (out[f.name] = row[i] ?? null));
        yield out;
      }
    },
    refresh,
    async close() {
      await refreshing;
      // Kysely's destroy would end the shared pools; closing the pools once is enough.
      await pools?.close();
    },
  };
  return router;
}
