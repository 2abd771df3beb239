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
 * when its TTL expires and its version changed. This is the router layer's router: the public entry's
 * `Router` (src/query/scatter.ts) adds `scatter`, which needs the query engine above this layer.
 */
export interface ShardRouter {
  readonly map: ShardMap;
  /** True when built with `offline`: the directory was not read. */
  readonly offline: boolean;
  /** Version of the directory in memory (-1 when none was read). */
  readonly directoryVersion: number;
  /**
   * True when the catalog holds a recorded placement rule (written by migrate, moves, freeze, adopt)
   * and it matches the map. False offline and on a fleet nobody recorded: then the map's rule is
   * unproven (the map may have grown since the data was placed), and a caller that must be right
   * asks every shard instead of trusting `locate`.
   */
  readonly ruleRecorded: boolean;
  /** Where the tenant lives. Throws (exit code 2) on a value that is not a valid key. */
  locate(tenant: unknown): Location;
  /** Kysely bound to the tenant's shard. */
  db<DB>(tenant: unknown): Kysely<DB>;
  /** Kysely bound to a shard by name. */
  shard<DB>(name: string): Kysely<DB>;
  /** The connection pools behind `db()` and `shard()`. */
  readonly pools: ShardPools;
  /** Checks the directory version now and re-reads the directory if it changed. */
  refresh(): Promise<void>;
  /** Closes every connection. */
  close(): Promise<void>;
}

/** The directory as last read from the catalog shard, and the rule check that came with it. */
interface DirectoryCache {
  entries: Map<string, string>;
  version: number;
  checkedAt: number;
  ruleError: ShardctlError | undefined;
  ruleRecorded: boolean;
}

/** Connections of an online router: the pools and the Kysely module bound to them. */
interface Connections {
  pools: ShardPools;
  kysely: typeof import('kysely');
}

/** Opens the pools (no connection yet; node-postgres loads with them) and Kysely: offline routers pay for neither. */
async function openConnections(map: ShardMap, options: RouterOptions): Promise<Connections | undefined> {
  if (options.offline) return undefined;
  const { ShardPools: Pools } = await import('../db/shard-pools.js');
  const pools = await Pools.open(map, options.pool);
  return { pools, kysely: await import('kysely') };
}

/** Re-reads the directory from the catalog shard when its version changed; records the rule check. */
async function refreshDirectory(map: ShardMap, pools: ShardPools, cache: DirectoryCache): Promise<void> {
  await pools.withShard(map.catalog, async (client) => {
    const v = await readDirectoryVersion(client);
    if (v === cache.version) return;
    const dir = await readDirectory(client);
    // A map whose rule differs from the recorded one would send tenants to shards that do not
    // hold them: refuse to route rather than answer from the wrong shard.
    try {
      const recorded = await readRuleState(client);
      assertRuleUnchanged(map, recorded);
      cache.ruleRecorded = recorded !== undefined;
      cache.ruleError = undefined;
    } catch (e) {
      cache.ruleError = e as ShardctlError;
    }
    cache.entries = dir.entries;
    cache.version = dir.version;
  });
  cache.checkedAt = Date.now();
}

/** The location of a parsed tenant: the directory's entry if any, else the rule's shard. */
function locationOf(rule: ReturnType<typeof compileRule>, entries: Map<string, string>, tenant: TenantKey): Location {
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
}

function offlineError(what: string): ShardctlError {
  return new ShardctlError(`this router was created offline: ${what}`, { code: 'OFFLINE', exitCode: ExitCode.Usage });
}

/** One Kysely per shard, created on first use over the shard's pool. */
function kyselyPerShard(map: ShardMap, connections: Connections | undefined): <DB>(name: string) => Kysely<DB> {
  const shardByName = new Map(map.shards.map((s) => [s.name, s]));
  const kyselies = new Map<string, Kysely<unknown>>();
  return <DB>(name: string): Kysely<DB> => {
    if (!connections) throw offlineError('it cannot connect');
    const shard: Shard | undefined = shardByName.get(name);
    if (!shard) {
      throw new ShardctlError(`unknown shard "${name}"; the map has ${map.shards.map((s) => s.name).join(', ')}`, {
        code: 'UNKNOWN_SHARD',
        exitCode: ExitCode.Usage,
      });
    }
    let db = kyselies.get(name);
    if (!db) {
      const { Kysely: K, PostgresDialect } = connections.kysely;
      db = new K<unknown>({ dialect: new PostgresDialect({ pool: connections.pools.pool(name) }) });
      kyselies.set(name, db);
    }
    return db as Kysely<DB>;
  };
}

/**
 * Creates a router for a map (or the path of one). Reads the placement directory once from the
 * catalog shard unless `offline`; a catalog without a shardctl schema reads as an empty directory.
 * Library users get this router with `scatter` from the public entry's `createRouter`.
 *
 * @example
 * const router = await createRouter('shards.yaml');
 * const rows = await router.db<DB>(123).selectFrom('users').selectAll().where('tenant_id', '=', 123).execute();
 * await router.close();
 */
export async function createRouter(mapOrPath: ShardMap | string, options: RouterOptions = {}): Promise<ShardRouter> {
  const map = typeof mapOrPath === 'string' ? await loadShardMap(mapOrPath) : mapOrPath;
  const rule = compileRule(map);
  const ttl = options.directoryTtlMs ?? 2000;
  const connections = await openConnections(map, options);
  const cache: DirectoryCache = {
    entries: new Map(),
    version: -1,
    checkedAt: 0,
    ruleError: undefined,
    ruleRecorded: false,
  };
  const refresh = async () => (connections ? refreshDirectory(map, connections.pools, cache) : undefined);
  if (connections) {
    await refresh();
    if (cache.ruleError) {
      await connections.pools.close();
      throw cache.ruleError;
    }
  }
  let refreshing: Promise<void> | undefined;
  const shard = kyselyPerShard(map, connections);
  const router: ShardRouter = {
    map,
    offline: !connections,
    get directoryVersion() {
      return cache.version;
    },
    get ruleRecorded() {
      return cache.ruleRecorded;
    },
    locate(tenant) {
      if (connections && Date.now() - cache.checkedAt > ttl && !refreshing) {
        // Stale reads are safe: a moved tenant's old shard rejects writes through its fence.
        refreshing = refresh()
          .catch(() => undefined)
          .finally(() => (refreshing = undefined));
      }
      if (cache.ruleError) throw cache.ruleError;
      return locationOf(rule, cache.entries, parseTenant(tenant, map.shardKey.type));
    },
    db: <DB>(tenant: unknown) => shard<DB>(router.locate(tenant).shard),
    shard,
    get pools() {
      if (!connections) throw offlineError('it has no pools');
      return connections.pools;
    },
    refresh,
    async close() {
      await refreshing;
      // Kysely's destroy would end the shared pools; closing the pools once is enough.
      await connections?.pools.close();
    },
  };
  return router;
}
