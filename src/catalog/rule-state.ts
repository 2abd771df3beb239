import { createHash } from 'node:crypto';
import type { PoolClient } from 'pg';
import type { ShardMap } from '../config/shard-map.js';
import { ExitCode, ShardctlError } from '../errors.js';
import { readDirectory } from './directory.js';
import { misplacedRowsSql } from './misplaced-sql.js';
import { TENANT_TABLES_SQL, tenantTablesParams } from './user-tables.js';

/** The placement rule of a map in a comparable form. */
export interface RuleDescription {
  strategy: 'modulo' | 'hash';
  keyType: string;
  /** modulo: shard names in index order. */
  shards?: string[];
  /** hash: bucket count and the ranges each shard owns. */
  buckets?: number;
  ranges?: { shard: string; from: number; to: number }[];
}

/** Fingerprint meaning "every tenant is in the directory": any rule is safe. */
export const FROZEN = '*';

/**
 * The rule of a map as data: what decides where a tenant that is not in the directory lives.
 *
 * @example
 * describeRule(map) // { strategy: 'modulo', keyType: 'bigint', shards: ['shard-0', 'shard-1'] }
 */
export function describeRule(map: ShardMap): RuleDescription {
  if (map.placement.strategy === 'modulo')
    return { strategy: 'modulo', keyType: map.shardKey.type, shards: map.shards.map((s) => s.name) };
  const ranges = map.shards
    .flatMap((s) => s.buckets.map((r) => ({ shard: s.name, from: r.from, to: r.to })))
    .sort((a, b) => a.from - b.from);
  return { strategy: 'hash', keyType: map.shardKey.type, buckets: map.placement.buckets, ranges };
}

/** A stable fingerprint of a map's placement rule. */
export function ruleFingerprint(map: ShardMap): string {
  return createHash('sha256')
    .update(JSON.stringify(describeRule(map)))
    .digest('hex')
    .slice(0, 24);
}

/** The recorded rule state, or undefined when the catalog has none. */
export async function readRuleState(
  client: PoolClient,
): Promise<{ fingerprint: string; rule: RuleDescription } | undefined> {
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass('shardctl.rule_state')::text AS t");
  if (!exists.rows[0]?.t) return undefined;
  const r = await client.query<{ fingerprint: string; rule: RuleDescription }>(
    'SELECT fingerprint, rule FROM shardctl.rule_state',
  );
  return r.rows[0];
}

/** What a router reads from the catalog: the directory (when its version changed) and the recorded rule. */
export interface RoutingState {
  /** The directory's version; -1 when the catalog has no shardctl schema yet. */
  version: number;
  /** Undefined when the version equals the one the caller already holds. */
  directory?: Map<string, string>;
  /** The recorded rule, undefined when none is (or when the directory did not change). */
  recorded?: { fingerprint: string; rule: RuleDescription };
}

// One statement, so one round trip and one snapshot: a router refreshing after a fence error is
// waiting on it, with the tenant's writes paused. The entries and the rule come only on a change.
const ROUTING_STATE_SQL = `
  SELECT v.version::text AS v,
    CASE WHEN v.version IS DISTINCT FROM $1::bigint THEN
      (SELECT coalesce(json_agg(json_build_array(p.tenant, p.shard)), '[]'::json) FROM shardctl.placements p)
    END AS entries,
    CASE WHEN v.version IS DISTINCT FROM $1::bigint THEN
      (SELECT json_build_object('fingerprint', r.fingerprint, 'rule', r.rule) FROM shardctl.rule_state r)
    END AS recorded
  FROM shardctl.directory_version v`;

/**
 * Reads the directory and the recorded rule in one round trip, skipping both when the directory's
 * version is `knownVersion`. The first read, and every read of a catalog that had no schema, go table
 * by table: a fleet nobody has adopted is refreshed without a failing statement in its server log on
 * every refresh. So does a catalog of a schema step before the rule state (42P01).
 *
 * @example
 * const s = await readRoutingState(client, cache.version); // s.directory undefined: nothing changed
 */
export async function readRoutingState(client: PoolClient, knownVersion?: number): Promise<RoutingState> {
  if (knownVersion === undefined || knownVersion < 0) return readTableByTable(client, knownVersion);
  try {
    const r = await client.query<{
      v: string;
      entries: [string, string][] | null;
      recorded: RoutingState['recorded'] | null;
    }>(ROUTING_STATE_SQL, [knownVersion ?? null]);
    const row = r.rows[0];
    if (row) {
      const version = Number(row.v);
      if (version === knownVersion) return { version };
      return { version, directory: new Map(row.entries ?? []), ...(row.recorded ? { recorded: row.recorded } : {}) };
    }
  } catch (e) {
    // 42P01: a table of the schema is missing; read what there is below.
    if ((e as { code?: string }).code !== '42P01') throw e;
  }
  return readTableByTable(client, knownVersion);
}

async function readTableByTable(client: PoolClient, knownVersion: number | undefined): Promise<RoutingState> {
  const dir = await readDirectory(client);
  if (dir.version === knownVersion) return { version: dir.version };
  const recorded = await readRuleState(client);
  return { version: dir.version, directory: dir.entries, ...(recorded ? { recorded } : {}) };
}

/**
 * True when no row of the catalog shard contradicts the map's rule (and the directory): the check
 * `ifAbsent` makes before taking a map's rule as the recorded one. One shard only: it catches a map
 * grown or reordered since the data was placed in practice, not in every case; `shardctl adopt`
 * checks every shard.
 */
async function catalogShardAgrees(client: PoolClient, map: ShardMap): Promise<boolean> {
  const shard = map.shards.find((s) => s.name === map.catalog);
  if (!shard) return false;
  const tables = (
    await client.query<{ table_name: string; key_column: string }>(TENANT_TABLES_SQL, tenantTablesParams(map))
  ).rows.map((t) => ({ table: t.table_name, keyColumn: t.key_column }));
  if (tables.length === 0) return true;
  const here: string[] = [];
  const elsewhere: string[] = [];
  for (const [t, s] of (await readDirectory(client)).entries) (s === shard.name ? here : elsewhere).push(t);
  const q = misplacedRowsSql(map, tables, shard.index, here, elsewhere);
  const r = await client.query<{ e: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM (${q.sql}) m WHERE m.tenant IS NOT NULL) AS e`,
    q.params,
  );
  return !r.rows[0]!.e;
}

/**
 * Records the map's rule as the one tenants outside the directory follow. With `ifAbsent`, only
 * when nothing is recorded yet (the first write of shardctl to a cluster adopts the map's rule), and
 * only when the catalog shard's rows agree with it: a rule the data contradicts (a hand-sharded
 * fleet whose map has grown) is left unrecorded, so routers keep checking the rows until
 * `shardctl adopt` (or a freeze) records where tenants are.
 * A frozen state given `options.map` keeps that map's rule under `placement`: `shardctl.locate()`
 * in SQL places new tenants by it. Needs the catalog schema.
 *
 * @example
 * await writeRuleState(client, map); // the map's rule is now the recorded one
 * await writeRuleState(client, FROZEN, { map }); // every tenant is in the directory
 */
export async function writeRuleState(
  client: PoolClient,
  map: ShardMap | typeof FROZEN,
  options: { ifAbsent?: boolean; map?: ShardMap } = {},
): Promise<void> {
  if (options.ifAbsent && map !== FROZEN) {
    if ((await readRuleState(client)) !== undefined) return;
    if (!(await catalogShardAgrees(client, map))) return;
  }
  const fingerprint = map === FROZEN ? FROZEN : ruleFingerprint(map);
  const rule =
    map === FROZEN
      ? { frozen: true, ...(options.map ? { placement: describeRule(options.map) } : {}) }
      : describeRule(map);
  await client.query(
    `INSERT INTO shardctl.rule_state (fingerprint, rule) VALUES ($1, $2)
     ON CONFLICT (singleton) DO ${options.ifAbsent ? 'NOTHING' : 'UPDATE SET fingerprint = excluded.fingerprint, rule = excluded.rule, updated_at = now()'}`,
    [fingerprint, JSON.stringify(rule)],
  );
  // Routers re-read the rule state when the directory version moves.
  await client.query('UPDATE shardctl.directory_version SET version = version + 1');
}

/**
 * A map's placement rule in words.
 *
 * @example
 * summariseRule(map) // 'modulo over 3 shards [s0, s1, s2]'
 */
export function summariseRule(map: ShardMap): string {
  return summarise(describeRule(map));
}

function summarise(rule: RuleDescription | { frozen: true }): string {
  if ('frozen' in rule) return 'frozen';
  if (rule.strategy === 'modulo') return `modulo over ${rule.shards!.length} shards [${rule.shards!.join(', ')}]`;
  return `hash over ${rule.buckets} buckets owned by [${[...new Set(rule.ranges!.map((r) => r.shard))].join(', ')}]`;
}

/**
 * Refuses a map whose placement rule differs from the recorded one: tenants outside the directory
 * would be looked for on shards the new rule names while their rows sit where the old rule put them.
 * A frozen state (`rebalance --freeze` recorded every tenant) accepts any rule.
 *
 * @example
 * assertRuleUnchanged(map, await readRuleState(client)); // throws RULE_CHANGED (exit 1) with the fix
 */
export function assertRuleUnchanged(
  map: ShardMap,
  state: { fingerprint: string; rule: RuleDescription } | undefined,
): void {
  if (!state || state.fingerprint === FROZEN || state.fingerprint === ruleFingerprint(map)) return;
  throw new ShardctlError(
    `the placement rule of ${map.file} (${summarise(describeRule(map))}) differs from the rule the catalog records (${summarise(state.rule)}): tenants may sit on shards the new rule no longer names, so shardctl will not route by it`,
    {
      code: 'RULE_CHANGED',
      exitCode: ExitCode.Failed,
      hint: "run `shardctl rebalance --freeze` (it records in the directory where every tenant's rows are now; a tenant found on two shards must be repaired first, see `shardctl verify`), or restore the previous shard list",
      details: { recorded: state.rule, map: describeRule(map) },
    },
  );
}
