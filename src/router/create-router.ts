import type { Kysely } from 'kysely';
import type { Shard, ShardMap } from '../config/shard-map.js';
import { loadShardMap } from '../config/load-shard-map.js';
import type { ShardPools, ShardPoolsOptions } from '../db/shard-pools.js';
import { ExitCode, ShardctlError } from '../errors.js';
import { compileRule } from '../placement/placement.js';
import { parseTenant, tenantText, type TenantKey } from '../placement/tenant-key.js';
import { assertRuleUnchanged, readRoutingState } from '../catalog/rule-state.js';
import type { KeyedTable } from '../catalog/misplaced-sql.js';
import { keyedTables, scanPlacement, tenantsPresent, type DataPlacement } from './data-check.js';
import { listenForDirectory, type DirectoryListener } from './directory-listener.js';
import { fenceTarget } from './fence-error.js';

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
  /** True when the directory overrides the rule (the tenant was moved), or the rows were found elsewhere. */
  override: boolean;
  /**
   * Present only when the catalog records no placement rule and the shards' rows, not the map, gave
   * this answer: the tenant's rows are on `shard` while the map's rule names `ruleShard`.
   */
  foundByData?: true;
  /** Why the answer is not the map's, and what makes it fast and certain (`shardctl adopt`). */
  warning?: string;
}

/**
 * What a router does when the catalog records no placement rule (a fleet nobody adopted: the map's
 * rule may not be the one the data was placed by).
 * - `check-data` (default): scan every shard once when the directory is read (verify's misplaced-rows
 *   SQL) and answer from the rows: a tenant found on another shard than the map names is located
 *   there (with `foundByData` and a warning), a tenant on two shards is refused.
 * - `refuse`: `locate()` throws `RULE_UNRECORDED`; `locateVerified()` asks the shards per tenant.
 * - `trust-map`: answer from the map alone (what `--offline` does); only for callers that check the
 *   rows themselves.
 */
export type UnrecordedRule = 'check-data' | 'refuse' | 'trust-map';

/** Options of {@link createRouter}. */
export interface RouterOptions {
  /** Compute from the map alone; never connect. `db()` and `refresh()` are unavailable. Default false. */
  offline?: boolean;
  /**
   * How long a directory read is trusted before its version is checked again, in ms. Default: the map's
   * `routers.directoryTtl` (2000 unless set). Moves wait the map's value after a switch before deleting
   * the source rows: a router given a longer TTL than its map's could still route to a shard whose rows
   * are gone, so keep it at most the map's.
   */
  directoryTtlMs?: number;
  /** Connection options of the pools. */
  pool?: ShardPoolsOptions;
  /** What to do when the catalog records no placement rule. Default `check-data`. */
  unrecordedRule?: UnrecordedRule;
  /**
   * Load Kysely for `db()` and `shard()`. False for callers that use only `pools` (the query engine):
   * loading it costs more than a trivial query's round trips; `db()` and `shard()` then throw. Default true.
   */
  kysely?: boolean;
  /**
   * Keep a session on the catalog shard that LISTENs for directory changes (catalog step 12 notifies
   * each one), and re-read the directory as soon as one commits: a writer paused by a move's fence
   * resumes when the switch commits instead of at the next TTL check, and `refresh()` returns as soon
   * as a newer directory is read. The TTL checks go on beside it (a pooler in transaction mode drops
   * LISTEN). False for short-lived callers (one command), which do not wait for changes. Default true.
   */
  listen?: boolean;
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
   * True when the catalog holds a recorded placement rule (written by adopt, freeze and prune, and by
   * the first migrate or move when the catalog shard's rows agree with the map) and it matches the
   * map. False offline and on a fleet nobody recorded: then the map's rule is unproven (the map may
   * have grown since the data was placed), and `locate` follows {@link RouterOptions.unrecordedRule}.
   */
  readonly ruleRecorded: boolean;
  /**
   * True while the router's LISTEN session on the catalog is up ({@link RouterOptions.listen}): directory
   * changes then reach it as they commit. False offline, with `listen: false`, and while it reconnects.
   */
  readonly listening: boolean;
  /**
   * Where the tenant lives. Throws (exit code 2) on a value that is not a valid key. When the catalog
   * records no rule, see {@link UnrecordedRule}: `RULE_UNRECORDED` under `refuse`, an answer checked
   * against the rows under `check-data`, `TENANT_ON_TWO_SHARDS` for a tenant whose rows are split.
   */
  locate(tenant: unknown): Location;
  /**
   * Where the tenant lives, proven: with a recorded rule, `locate()`; without one, every shard is
   * asked whether it holds the tenant's rows now (by each table's key index): the shard that does,
   * else (no rows anywhere) the map's answer. Never answers from an unproven rule.
   *
   * @example
   * const { shard, warning } = await router.locateVerified(123);
   */
  locateVerified(tenant: unknown): Promise<Location>;
  /** Kysely bound to the tenant's shard. */
  db<DB>(tenant: unknown): Kysely<DB>;
  /** Kysely bound to a shard by name. */
  shard<DB>(name: string): Kysely<DB>;
  /** The connection pools behind `db()` and `shard()`. */
  readonly pools: ShardPools;
  /**
   * Checks the directory version now and re-reads the directory if it changed. Given the fence error
   * that made the caller refresh (`isFenceError`), it also opens connections to the shard the tenant
   * moves to, as many as the app holds to the fenced shard, while the pause lasts: the writes that
   * resume after the switch find them ready instead of each connecting and authenticating at once.
   *
   * @example
   * catch (e) { if (!isFenceError(e)) throw e; await router.refresh(e); }
   */
  refresh(cause?: unknown): Promise<void>;
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
  /** False until the catalog was read once. */
  read: boolean;
  /** `check-data` without a recorded rule: what the rows said, or why they could not be read. */
  data: DataPlacement | undefined;
  dataError: ShardctlError | undefined;
  /** Reads started, and the start number of the read last applied: a read overtaken by a later one is dropped. */
  started: number;
  applied: number;
}

/** Connections of an online router: the pools and the Kysely module bound to them. */
interface Connections {
  pools: ShardPools;
  kysely: typeof import('kysely') | undefined;
}

/** Opens the pools (no connection yet; node-postgres loads with them) and Kysely: offline routers pay for neither. */
async function openConnections(map: ShardMap, options: RouterOptions): Promise<Connections | undefined> {
  if (options.offline) return undefined;
  const { ShardPools: Pools } = await import('../db/shard-pools.js');
  // A router lives as long as the application: one connection per shard stays open (see minPerShard).
  const pools = await Pools.open(map, { minPerShard: 1, ...options.pool });
  return { pools, kysely: options.kysely === false ? undefined : await import('kysely') };
}

/**
 * Coalesces concurrent calls of `run`: a call while one runs waits for the next run, which starts after
 * the running one ends and serves every call made meanwhile. Each caller thus gets a run that began
 * after its call (a writer refreshing after a fence error sees a directory read after that error),
 * and many writers rejected at once make two reads, not one each.
 */
function coalesced(run: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  let next: Promise<void> | undefined;
  const start = (): Promise<void> => {
    const p = run().finally(() => {
      if (running === p) running = undefined;
    });
    running = p;
    return p;
  };
  return () => {
    if (!running) return start();
    next ??= running
      .catch(() => undefined)
      .then(() => {
        next = undefined;
        return start();
      });
    return next;
  };
}

/**
 * Re-reads the directory from the catalog shard when its version changed; records the rule check.
 * Without a recorded rule (under `check-data`) the rows are scanned with the new directory before
 * anything is replaced, so `locate()` never sees a new directory without its data check.
 */
async function refreshDirectory(
  map: ShardMap,
  pools: ShardPools,
  cache: DirectoryCache,
  checkData: ((entries: Map<string, string>) => Promise<DataPlacement>) | undefined,
): Promise<void> {
  const seq = ++cache.started;
  const read = await pools.withShard(map.catalog, async (client) => {
    const state = await readRoutingState(client, cache.read ? cache.version : undefined);
    if (!state.directory) return undefined;
    const dir = { version: state.version, entries: state.directory };
    // A map whose rule differs from the recorded one would send tenants to shards that do not
    // hold them: refuse to route rather than answer from the wrong shard.
    try {
      assertRuleUnchanged(map, state.recorded);
      return { dir, recorded: state.recorded !== undefined, ruleError: undefined };
    } catch (e) {
      return { dir, recorded: false, ruleError: e as ShardctlError };
    }
  });
  let data: DataPlacement | undefined;
  let dataError: ShardctlError | undefined;
  if (read && checkData && !read.recorded && !read.ruleError) {
    try {
      data = await checkData(read.dir.entries);
    } catch (e) {
      dataError = e as ShardctlError;
    }
  }
  // Reads may overlap (a notice starts one at once): one overtaken by a later-started read is dropped.
  if (seq < cache.applied) return;
  cache.applied = seq;
  if (read) {
    Object.assign(cache, {
      entries: read.dir.entries,
      version: read.dir.version,
      read: true,
      ruleError: read.ruleError,
      ruleRecorded: read.ruleError ? cache.ruleRecorded : read.recorded,
      data,
      dataError,
    });
  }
  cache.checkedAt = Date.now();
}

const ADOPT_HINT =
  'run `shardctl adopt`: it checks every row against the rule, records the rule, and makes locate fast and certain';

/** `locate()` of a router under `refuse` on a fleet whose rule is not recorded. */
function unrecordedError(map: ShardMap): ShardctlError {
  return new ShardctlError(
    `the catalog (${map.catalog}) records no placement rule: the map's rule is unproven (the fleet may have been placed by another rule), so locate will not answer from it`,
    {
      code: 'RULE_UNRECORDED',
      exitCode: ExitCode.Failed,
      shard: map.catalog,
      hint: `${ADOPT_HINT}; or use router.locateVerified(), which asks the shards`,
    },
  );
}

/** A tenant whose rows are on several shards: no shard is a right answer. */
function splitError(tenant: string, shards: string[]): ShardctlError {
  return new ShardctlError(`tenant ${tenant} has rows on ${shards.join(' and ')}: no single shard holds it`, {
    code: 'TENANT_ON_TWO_SHARDS',
    exitCode: ExitCode.Failed,
    hint: 'repair it first (`shardctl verify --tenant ' + tenant + '` lists its rows per shard)',
    details: { tenant, shards },
  });
}

/** The location the rows gave, when they are not where the map says. */
function foundElsewhere(loc: Location, shard: string): Location {
  return {
    ...loc,
    shard,
    override: true,
    foundByData: true,
    warning: `tenant ${loc.tenant}'s rows are on ${shard}, not on ${loc.shard} as the map's rule says, and the catalog records no rule: the map may have changed since the data was placed; record where tenants are: \`shardctl adopt\` with the map the data was placed by (it refuses while any tenant sits elsewhere), or \`shardctl rebalance --freeze\``,
  };
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
    if (!connections.kysely)
      throw new ShardctlError('this router was created with kysely: false: use its pools', {
        code: 'NO_KYSELY',
        exitCode: ExitCode.Usage,
      });
    const shard: Shard | undefined = shardByName.get(name);
    if (!shard) {
      throw new ShardctlError(`unknown shard "${name}"; the map has ${map.shards.map((s) => s.name).join(', ')}`, {
        code: 'UNKNOWN_SHARD',
        exitCode: ExitCode.Usage,
      });
    }
    let db = kyselies.get(name);
    if (!db) {
      const { Kysely: K, PostgresDialect } = connections.kysely!;
      db = new K<unknown>({ dialect: new PostgresDialect({ pool: connections.pools.pool(name) }) });
      kyselies.set(name, db);
    }
    return db as Kysely<DB>;
  };
}

/** The answer of `locate()` from what is in memory, under the router's {@link UnrecordedRule}. */
function locateCached(
  map: ShardMap,
  rule: ReturnType<typeof compileRule>,
  cache: DirectoryCache,
  mode: UnrecordedRule | undefined,
  tenant: unknown,
): Location {
  if (cache.ruleError) throw cache.ruleError;
  const loc = locationOf(rule, cache.entries, parseTenant(tenant, map.shardKey.type));
  if (mode === undefined || cache.ruleRecorded) return loc;
  if (mode === 'refuse') throw unrecordedError(map);
  if (cache.dataError) throw cache.dataError;
  const split = cache.data?.split.get(loc.tenant);
  if (split) throw splitError(loc.tenant, split);
  const at = cache.data?.elsewhere.get(loc.tenant);
  return at === undefined ? loc : foundElsewhere(loc, at);
}

/**
 * `locateVerified()` of an online router without a recorded rule: asks every shard whether it holds
 * the tenant's rows now (tenant tables listed once per shard and kept).
 */
async function locateOnData(
  map: ShardMap,
  pools: ShardPools,
  tablesOf: Map<string, KeyedTable[]>,
  loc: Location,
): Promise<Location> {
  const holders: string[] = [];
  await Promise.all(
    map.shards.map(async (s) => {
      try {
        const found = await pools.withShard(s.name, async (c) => {
          let tables = tablesOf.get(s.name);
          if (!tables) tablesOf.set(s.name, (tables = await keyedTables(c, map)));
          return tenantsPresent(c, map, tables, [loc.tenant]);
        });
        if (found.length > 0) holders.push(s.name);
      } catch (e) {
        throw new ShardctlError(
          `cannot check where tenant ${loc.tenant} lives: shard ${s.name}: ${(e as Error).message}`,
          { code: 'RULE_UNRECORDED', exitCode: ExitCode.Failed, shard: s.name, hint: ADOPT_HINT, cause: e },
        );
      }
    }),
  );
  if (holders.length > 1) throw splitError(loc.tenant, holders.sort());
  if (holders.length === 0 || holders[0] === loc.shard) return loc;
  return foundElsewhere(loc, holders[0]!);
}

/** Reads the catalog once (and the rows, under `check-data` without a recorded rule); refuses a changed rule. */
async function openCache(map: ShardMap, options: RouterOptions, connections: Connections | undefined) {
  const rule = compileRule(map);
  const cache: DirectoryCache = {
    entries: new Map(),
    version: -1,
    checkedAt: 0,
    ruleError: undefined,
    ruleRecorded: false,
    read: false,
    data: undefined,
    dataError: undefined,
    started: 0,
    applied: 0,
  };
  const mode = connections ? (options.unrecordedRule ?? 'check-data') : undefined;
  const checkData =
    connections && mode === 'check-data'
      ? (entries: Map<string, string>) =>
          scanPlacement(
            map,
            connections.pools,
            entries,
            (t) => locationOf(rule, entries, parseTenant(t, map.shardKey.type)).shard,
          )
      : undefined;
  const read = async () => (connections ? refreshDirectory(map, connections.pools, cache, checkData) : undefined);
  const polled = coalesced(read);
  if (connections) {
    try {
      await polled();
    } catch (e) {
      await connections.pools.close();
      throw e;
    }
    if (cache.ruleError) {
      await connections.pools.close();
      throw cache.ruleError;
    }
  }
  const notices =
    connections && options.listen !== false ? listening(map, connections.pools, cache, read, polled) : undefined;
  return {
    rule,
    cache,
    refresh: notices?.refresh ?? polled,
    listener: notices?.listener,
    mode: mode === 'trust-map' ? undefined : mode,
  };
}

/**
 * The `refresh()` of a listening router, and its listener. A notice starts a read at once, not after
 * a running read (whose snapshot may predate the commit that sent the notice). `refresh()` ends with
 * the coalesced read as without notices, or as soon as any read brings a newer directory than the
 * caller had: a writer rejected by a fence resumes right after the switch commits.
 */
function listening(
  map: ShardMap,
  pools: ShardPools,
  cache: DirectoryCache,
  read: () => Promise<void>,
  polled: () => Promise<void>,
): { refresh: () => Promise<void>; listener: DirectoryListener } {
  const waiting = new Set<{ version: number; done: () => void }>();
  const wake = () => {
    for (const w of waiting)
      if (cache.version !== w.version) {
        waiting.delete(w);
        w.done();
      }
  };
  // A failed read leaves the cache as it was; the TTL checks go on.
  const readNow = () => read().then(wake, () => undefined);
  const listener = listenForDirectory(pools, map.catalog, {
    changed: (version) => {
      if (version !== cache.version) void readNow();
    },
    listening: () => void readNow(),
  });
  const refresh = () =>
    new Promise<void>((resolve, reject) => {
      const w = { version: cache.version, done: resolve };
      waiting.add(w);
      polled().then(
        () => {
          waiting.delete(w);
          resolve();
        },
        (e: unknown) => {
          waiting.delete(w);
          reject(e as Error);
        },
      );
    });
  return { refresh, listener };
}

/**
 * After a fence error, opens connections to the shard the fence names as the tenant's target, up to the
 * count the pool of the fenced shard holds, once at a time per shard (in the background).
 */
function warmTarget(map: ShardMap, pools: ShardPools, cause: unknown, warming: Set<string>): void {
  const target = fenceTarget(cause);
  if (!target || warming.has(target) || !map.shards.some((s) => s.name === target)) return;
  const held = Math.max(1, ...map.shards.filter((s) => s.name !== target).map((s) => pools.pool(s.name).totalCount));
  warming.add(target);
  void pools.warm(target, held).finally(() => warming.delete(target));
}

/**
 * Creates a router for a map (or the path of one). Reads the placement directory once from the
 * catalog shard unless `offline`; a catalog without a shardctl schema reads as an empty directory.
 * When the catalog records no placement rule, `options.unrecordedRule` decides (default: check the
 * answers against the shards' rows, scanned once). Library users get this router with `scatter`
 * from the public entry's `createRouter`.
 *
 * @example
 * const router = await createRouter('shards.yaml');
 * const rows = await router.db<DB>(123).selectFrom('users').selectAll().where('tenant_id', '=', 123).execute();
 * await router.close();
 */
export async function createRouter(mapOrPath: ShardMap | string, options: RouterOptions = {}): Promise<ShardRouter> {
  const map = typeof mapOrPath === 'string' ? await loadShardMap(mapOrPath) : mapOrPath;
  const ttl = options.directoryTtlMs ?? map.routers.directoryTtlMs;
  const connections = await openConnections(map, options);
  const { rule, cache, refresh, mode, listener } = await openCache(map, options, connections);
  let refreshing: Promise<void> | undefined;
  const shard = kyselyPerShard(map, connections);
  const tablesOf = new Map<string, KeyedTable[]>();
  const warming = new Set<string>();
  const router: ShardRouter = {
    map,
    offline: !connections,
    get directoryVersion() {
      return cache.version;
    },
    get ruleRecorded() {
      return cache.ruleRecorded;
    },
    get listening() {
      return listener?.live ?? false;
    },
    locate(tenant) {
      if (connections && Date.now() - cache.checkedAt > ttl && !refreshing) {
        // Stale reads are safe: a moved tenant's old shard rejects writes through its fence.
        refreshing = refresh()
          .catch(() => undefined)
          .finally(() => (refreshing = undefined));
      }
      return locateCached(map, rule, cache, mode, tenant);
    },
    async locateVerified(tenant) {
      if (!connections) throw offlineError('it cannot check the shards');
      if (Date.now() - cache.checkedAt > ttl) await refresh();
      if (cache.ruleError) throw cache.ruleError;
      const loc = locationOf(rule, cache.entries, parseTenant(tenant, map.shardKey.type));
      return cache.ruleRecorded ? loc : locateOnData(map, connections.pools, tablesOf, loc);
    },
    db: <DB>(tenant: unknown) => shard<DB>(router.locate(tenant).shard),
    shard,
    get pools() {
      if (!connections) throw offlineError('it has no pools');
      return connections.pools;
    },
    refresh(cause?: unknown) {
      if (connections) warmTarget(map, connections.pools, cause, warming);
      return refresh();
    },
    async close() {
      await listener?.close();
      await refreshing;
      // Kysely's destroy would end the shared pools; closing the pools once is enough.
      await connections?.pools.close();
    },
  };
  return router;
}
