import type { PoolClient } from 'pg';
import type { ShardPools } from '../db/shard-pools.js';
import type { ShardMap } from '../config/shard-map.js';
import { ExitCode, ShardctlError } from '../errors.js';
import { parseTenant, tenantText } from '../placement/tenant-key.js';
import { createRouter } from '../router/create-router.js';
import { readLedger } from '../catalog/ledger.js';
import { keyCast, quoteIdent, quoteTable } from '../db/sql.js';
import type { OnlineEvent, OnlineOptions } from './online-types.js';
import { CAPTURE_OF_MODE, inFlightMove, type MoveMode, type MoveRecord, type MoveState } from './move-journal.js';
import { onlineProblems } from './replication.js';
import { readTenantTables, type TenantTable } from './tenant-tables.js';

/** What a move will do, shown before anything changes (`--dry-run` prints it and stops). */
export interface MovePreview {
  /** The tenant, or the first tenant of a group move. */
  tenant: string;
  /** A group move: every tenant it moves together (one copy, one pause, one switch). */
  tenants?: string[];
  source: string;
  target: string;
  /** Tenant tables in copy order (parents first) with the tenant's rows and bytes. */
  tables: { table: string; rows: number; bytes: number }[];
  rows: number;
  bytes: number;
  /** Rough duration in seconds (copy, verify, cleanup), from rows and bytes. */
  estimateSeconds: number;
  /**
   * How the move will run: `online` (logical replication; writes pause only for the switch), `trigger`
   * (change-log triggers over ordinary connections; writes pause only for the switch) or `fenced`.
   */
  mode: MoveMode;
  /** The change capture (`logical`, `trigger`, `none` for a fenced move) and why it was chosen. */
  capture: 'logical' | 'trigger' | 'none';
  captureReason: string;
  /** Why logical replication is impossible between these servers (set when the move uses another capture). */
  onlineProblems?: string[];
}

/** A progress event of a move. */
export interface MoveEvent extends Omit<OnlineEvent, 'phase'> {
  moveId: number;
  phase: MoveState | 'cleanup' | 'waiting';
}

/** Options of {@link moveTenant}, {@link resumeMove} and {@link abortMove}. */
export interface MoveOptions extends OnlineOptions {
  /**
   * `online` (default): copy while writes continue, replicate the changes, pause writes only to drain
   * and switch. `fenced`: reject the tenant's writes for the whole copy.
   */
  mode?: MoveMode;
  /**
   * The change capture of an online move: `logical` (logical replication) or `trigger` (change-log
   * triggers, ordinary connections only). Default: logical where the servers allow it, else trigger.
   */
  capture?: 'logical' | 'trigger';
  /** Where the servers cannot move online with `capture: 'logical'`, move fenced instead of refusing. Default false. */
  allowOffline?: boolean;
  /** Keep the source rows after the switch until `moves cleanup`. Default false. */
  keepSource?: boolean;
  /** Called with progress events. */
  onProgress?: (e: MoveEvent) => void;
  /** Asked with the preview before anything changes; a false answer stops (nothing changed). Default: go. */
  confirm?: (preview: MovePreview) => Promise<boolean>;
  /** Connection timeout, ms. Default 5000. */
  timeoutMs?: number;
  /** How long to wait for transactions older than the fence, and for table locks, ms. Default 30000. */
  waitMs?: number;
  /** Rows per delete batch in cleanup. Default 50000. */
  batch?: number;
  /**
   * Time between the switch and the deletion of the source rows, ms, so that routers re-read the
   * directory first: an UPDATE or DELETE a stale router sends to the old shard is rejected by the
   * tombstone while the rows are there, but would match nothing once they are gone. Default: the map's
   * `routers.directoryTtl` (2 s unless set) plus 500 ms.
   */
  cleanupGraceMs?: number;
  /** Fleet plan this move belongs to. */
  planId?: number;
  /** Throttle the copy to this many bytes per second (`--max-rate`). Default: no limit. */
  maxBytesPerSecond?: number;
  /**
   * Parallel streams of the copy (`--copy-streams`), each its own source and target session, committed
   * together; 1 copies in one target transaction. Default {@link DEFAULT_COPY_STREAMS} (fewer when the
   * tenant has fewer pieces to copy); one stream where the target cannot take more (the move says why).
   */
  copyStreams?: number;
}

/** Default parallel copy streams: suits servers with a few cores to spare on each side. */
export const DEFAULT_COPY_STREAMS = 4;

/** Result of a move command. */
export interface MoveResult {
  move: MoveRecord;
  preview?: MovePreview;
}

/** `col = ANY ($1)` for the moving tenants, passed as a text array and cast to the key's type. */
function anyTenant(column: string, type: string): string {
  return `${quoteIdent(column)} = ANY ($1::text[]::${keyCast(type)}[])`;
}

/** Rows and bytes per table of the moving tenants, and which of them has rows at all. */
async function tenantStats(
  c: PoolClient,
  tables: TenantTable[],
  tenants: string[],
  type: string,
): Promise<{ stats: { table: string; rows: number; bytes: number }[]; present: Set<string> }> {
  const out = [];
  const present = new Set<string>();
  for (const t of tables) {
    const r = await c.query<{ t: string; n: string; b: string }>(
      `SELECT ${quoteIdent(t.keyColumn)}::text AS t, count(*)::text AS n, coalesce(sum(pg_column_size(x.*)), 0)::text AS b
         FROM ${quoteTable(t.table)} x WHERE ${anyTenant(t.keyColumn, type)} GROUP BY 1`,
      [tenants],
    );
    for (const x of r.rows) present.add(tenantText(parseTenant(x.t, type as ShardMap['shardKey']['type'])));
    const sum = (f: (x: { n: string; b: string }) => string) => r.rows.reduce((a, x) => a + Number(f(x)), 0);
    out.push({ table: t.table, rows: sum((x) => x.n), bytes: sum((x) => x.b) });
  }
  return { stats: out, present };
}

/** A ShardctlError with code, hint, details and exit code. */
export function refuse(
  message: string,
  code: string,
  hint?: string,
  details?: unknown,
  exitCode: (typeof ExitCode)[keyof typeof ExitCode] = ExitCode.Failed,
): ShardctlError {
  return new ShardctlError(message, {
    code,
    exitCode,
    ...(hint ? { hint } : {}),
    ...(details !== undefined ? { details } : {}),
  });
}

/**
 * Plans a move and runs every preflight check, changing nothing: unknown tenant or shard, target equal
 * to source, no rows, different migration ledgers or columns, a table without primary key, primary keys
 * already on the target (listed), a move of the tenant in flight; for an online move (the default),
 * what the servers need for it (refused with the fixes, or fenced with `allowOffline`).
 *
 * @example
 * const preview = await planMove(map, 123, 'shard-2');
 */
export async function planMove(
  map: ShardMap,
  tenantValue: unknown,
  to: string,
  options: ModeChoice & { timeoutMs?: number } = {},
): Promise<MovePreview> {
  const tenants = tenantsOfValue(map, tenantValue);
  const tenant = tenants[0]!;
  if (!map.shards.some((s) => s.name === to)) {
    throw refuse(
      `unknown target shard "${to}"; the map has ${map.shards.map((s) => s.name).join(', ')}`,
      'UNKNOWN_SHARD',
      undefined,
      undefined,
      ExitCode.Usage,
    );
  }
  const router = await createRouter(map, {
    pool: { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 2 },
    listen: false,
  });
  try {
    const source = sourceOfAll(tenants, (t) => router.locate(t).shard);
    if (source === to)
      throw refuse(
        `${tenants.length > 1 ? `tenants ${tenants.join(', ')} already live` : `tenant ${tenant} already lives`} on ${to}`,
        'SAME_SHARD',
        'pick another --to shard',
        undefined,
        ExitCode.Usage,
      );
    const pair: ShardPair = { map, pools: router.pools, tenant, tenants, source, target: to };
    await refuseInFlight(pair);
    const tables = await checkSchemas(pair);
    const stats = await checkRows(pair, tables);
    const rows = stats.reduce((a, s) => a + s.rows, 0);
    const bytes = stats.reduce((a, s) => a + s.bytes, 0);
    const { mode, problems, reason } = await chooseMode(pair, tables, options);
    return {
      tenant,
      ...(tenants.length > 1 ? { tenants } : {}),
      source,
      target: to,
      tables: stats,
      rows,
      bytes,
      estimateSeconds: Math.ceil(rows / 150_000 + bytes / 40_000_000 + 1),
      mode,
      capture: CAPTURE_OF_MODE[mode],
      captureReason: reason,
      ...(problems.length > 0 ? { onlineProblems: problems } : {}),
    };
  } finally {
    await router.close();
  }
}

/** The tenants of a move in canonical text, once each: one value, or a group's array. */
function tenantsOfValue(map: ShardMap, value: unknown): string[] {
  const list = Array.isArray(value) ? (value as unknown[]) : [value];
  const tenants = [...new Set(list.map((v) => tenantText(parseTenant(v, map.shardKey.type))))];
  if (tenants.length === 0)
    throw refuse('a move needs at least one tenant', 'NO_TENANT', undefined, undefined, ExitCode.Usage);
  return tenants;
}

/**
 * The one shard all tenants of a move live on, or a refusal naming where each lives (a group moves
 * between one pair of shards).
 */
function sourceOfAll(tenants: string[], locate: (t: string) => string): string {
  const at = new Map(tenants.map((t) => [t, locate(t)]));
  const source = at.get(tenants[0]!)!;
  const elsewhere = tenants.filter((t) => at.get(t) !== source);
  if (elsewhere.length > 0)
    throw refuse(
      `the tenants of one move must live on one shard: ${tenants.map((t) => `${t} on ${at.get(t)}`).join(', ')}`,
      'GROUP_SPLIT',
      'move the tenants of each shard in a move of their own',
      undefined,
      ExitCode.Usage,
    );
  return source;
}

/** The two shards of a planned move and its tenants (the first is `tenant`), for the preflight checks. */
interface ShardPair {
  map: ShardMap;
  pools: ShardPools;
  tenant: string;
  tenants: string[];
  source: string;
  target: string;
}

async function refuseInFlight({ map, pools, tenants }: ShardPair): Promise<void> {
  for (const tenant of tenants) {
    const inflight = await pools.withShard(map.catalog, (c) => inFlightMove(c, tenant));
    if (!inflight) continue;
    throw refuse(
      `a move of tenant ${tenant} is already in flight: move ${inflight.id} (${inflight.source} -> ${inflight.target}) is ${inflight.state}`,
      'MOVE_IN_FLIGHT',
      `resume it with \`shardctl rebalance --resume ${inflight.id}\` or abort it with \`shardctl rebalance --abort ${inflight.id}\``,
    );
  }
}

/** Refuses unless both shards have the same tenant tables, keyed, at the same migration; returns the source's. */
async function checkSchemas(pair: ShardPair): Promise<TenantTable[]> {
  const { map, pools, source, target } = pair;
  const [srcTables, dstTables] = await Promise.all([
    pools.withShard(source, (c) => readTenantTables(c, map)),
    pools.withShard(target, (c) => readTenantTables(c, map)),
  ]);
  if (srcTables.length === 0)
    throw refuse(`shard ${source} has no tenant tables (no table has column ${map.shardKey.column})`, 'NO_TABLES');
  const noPk = srcTables.filter((t) => t.primaryKey.length === 0).map((t) => t.table);
  if (noPk.length > 0)
    throw refuse(
      `tenant table(s) without a primary key: ${noPk.join(', ')}: a move cannot prove what it copied`,
      'NO_PRIMARY_KEY',
      "add a primary key, or list only keyed tables in the map's tables:",
    );
  // Schemas must match: by migration ledger where either shard has one, and by columns always.
  await checkLedgers(pair);
  const colDiffs = columnDifferences(srcTables, dstTables, source, target);
  if (colDiffs.length > 0)
    throw refuse(
      `tenant tables differ between ${source} and ${target}: ${colDiffs.join('; ')}`,
      'SCHEMA_MISMATCH',
      'bring both shards to the same schema first (shardctl verify shows the drift)',
    );
  return srcTables;
}

async function checkLedgers({ pools, source, target }: ShardPair): Promise<void> {
  const [srcLedger, dstLedger] = await Promise.all([
    pools.withShard(source, readLedger),
    pools.withShard(target, readLedger),
  ]);
  if (srcLedger === null && dstLedger === null) return;
  const sig = (l: typeof srcLedger) => (l ?? []).map((e) => `${e.id}:${e.checksum}`).join(',');
  if (sig(srcLedger) === sig(dstLedger)) return;
  const at = (l: typeof srcLedger) =>
    l && l.length ? `${l[l.length - 1]!.id} (${l.length} applied)` : 'no migrations';
  throw refuse(
    `${source} is at ${at(srcLedger)} but ${target} is at ${at(dstLedger)}: their schemas may differ`,
    'MIGRATION_MISMATCH',
    'run `shardctl migrate` so both are at the same migration',
  );
}

function columnDifferences(srcTables: TenantTable[], dstTables: TenantTable[], source: string, to: string): string[] {
  const dstByName = new Map(dstTables.map((t) => [t.table, t]));
  const sig = (x: TenantTable) =>
    x.allColumns.map((c) => `${c.name} ${c.type}${c.generated ? ' generated' : ''}`).join(', ');
  const colDiffs: string[] = [];
  for (const t of srcTables) {
    const d = dstByName.get(t.table);
    if (!d) colDiffs.push(`${t.table} is missing on ${to}`);
    else if (sig(t) !== sig(d)) colDiffs.push(`${t.table}: ${source} has (${sig(t)}), ${to} has (${sig(d)})`);
  }
  return colDiffs;
}

/** Refuses a tenant without rows on the source or with rows already on the target; returns its rows per table. */
async function checkRows(
  { map, pools, tenant, tenants, source, target }: ShardPair,
  tables: TenantTable[],
): Promise<{ table: string; rows: number; bytes: number }[]> {
  const type = map.shardKey.type;
  const { stats, present } = await pools.withShard(source, (c) => tenantStats(c, tables, tenants, type));
  const empty = tenants.filter((t) => !present.has(t));
  if (empty.length > 0)
    throw refuse(
      `${empty.length > 1 ? `tenants ${empty.join(', ')} have` : `tenant ${empty[0]} has`} no rows on ${source}`,
      'NO_ROWS',
      'check the tenant id with `shardctl locate`',
    );
  const conflicts = await pools.withShard(target, (c) => existingKeys(c, tables, tenants, type));
  if (conflicts.length > 0) {
    throw refuse(
      `${tenants.length > 1 ? `tenants ${tenants.join(', ')} already have` : `tenant ${tenant} already has`} rows on ${target}: ${conflicts.map((c) => `${c.table} (${c.keys.join(', ')}${c.more ? ', ...' : ''})`).join('; ')}; nothing was copied`,
      'TARGET_HAS_ROWS',
      'find out where these rows come from (shardctl verify --tenant ' + tenant + ') and remove them before moving',
      conflicts,
    );
  }
  return stats;
}

/** What a caller asks of the mode and capture of a move. */
export interface ModeChoice {
  mode?: MoveMode;
  capture?: 'logical' | 'trigger';
  allowOffline?: boolean;
}

/**
 * Why logical replication cannot carry this move: the servers' problems, and tables that hold the
 * tenant in different columns (one publication row filter names one column).
 */
async function logicalProblems({ map, pools, source, target }: ShardPair, tables: TenantTable[]): Promise<string[]> {
  const columns = [...new Set(tables.map((t) => t.keyColumn))];
  const problems = await pools.withShard(source, (s) =>
    pools.withShard(target, (t) => onlineProblems(s, t, tables, columns[0] ?? map.shardKey.column, { source, target })),
  );
  if (columns.length > 1)
    problems.push(
      `the tenant tables hold the tenant in different columns (${tables.map((t) => `${t.table}.${t.keyColumn}`).join(', ')}): a publication filters every table by one column`,
    );
  return [...new Set(problems)];
}

/**
 * Online unless asked otherwise, by logical replication where the servers allow it, else by the
 * change-log triggers (which need nothing but ordinary connections). `capture: 'logical'` refuses where
 * logical replication is impossible (or moves fenced with `allowOffline`).
 */
async function chooseMode(
  pair: ShardPair,
  tables: TenantTable[],
  options: ModeChoice,
): Promise<{ mode: MoveMode; problems: string[]; reason: string }> {
  const { tenant, source, target } = pair;
  if (options.mode === 'fenced') return { mode: 'fenced', problems: [], reason: 'a fenced move was asked for' };
  if (options.mode === 'trigger' || options.capture === 'trigger')
    return { mode: 'trigger', problems: [], reason: 'the trigger capture was asked for (--capture trigger)' };
  if (pair.tenants.length > 1) return groupCapture(pair, options);
  const problems = await logicalProblems(pair, tables);
  if (problems.length === 0)
    return { mode: 'online', problems, reason: `logical replication is available from ${source} to ${target}` };
  if (options.capture !== 'logical')
    return {
      mode: 'trigger',
      problems,
      reason: `logical replication is not available (${problems.join('; ')}): change-log triggers capture the writes`,
    };
  if (!options.allowOffline) {
    throw refuse(
      `tenant ${tenant} cannot move online by logical replication from ${source} to ${target}: ${problems.join('; ')}`,
      'ONLINE_UNSUPPORTED',
      "fix the above, or leave out --capture logical (the trigger capture needs none of it), or pass --allow-offline to move fenced: the tenant's writes are then rejected for the whole copy",
      problems,
      ExitCode.Refused,
    );
  }
  return { mode: 'fenced', problems, reason: `logical replication is not available and --allow-offline was given` };
}

/** A group move: the trigger capture (one publication row filter would name one tenant), or fenced. */
function groupCapture(pair: ShardPair, options: ModeChoice): { mode: MoveMode; problems: string[]; reason: string } {
  const problem = 'a group move captures the writes of several tenants: logical replication publishes one';
  if (options.capture === 'logical' && !options.allowOffline)
    throw refuse(
      `tenants ${pair.tenants.join(', ')} cannot move together by logical replication: ${problem}`,
      'ONLINE_UNSUPPORTED',
      'leave out --capture logical (the trigger capture moves groups), or move the tenants one by one',
      [problem],
      ExitCode.Refused,
    );
  if (options.capture === 'logical')
    return { mode: 'fenced', problems: [problem], reason: `${problem}, and --allow-offline was given` };
  return { mode: 'trigger', problems: [problem], reason: `${problem}: change-log triggers capture them all` };
}

async function existingKeys(
  c: PoolClient,
  tables: TenantTable[],
  tenants: string[],
  type: string,
): Promise<{ table: string; keys: string[]; more: boolean }[]> {
  const out = [];
  for (const t of tables) {
    const pk = t.primaryKey.map(quoteIdent);
    const r = await c.query<{ k: string }>(
      `SELECT ROW(${pk.join(', ')})::text AS k FROM ${quoteTable(t.table)} WHERE ${anyTenant(t.keyColumn, type)} ORDER BY ${pk.join(', ')} LIMIT 21`,
      [tenants],
    );
    if (r.rows.length > 0)
      out.push({ table: t.table, keys: r.rows.slice(0, 20).map((x) => x.k), more: r.rows.length > 20 });
  }
  return out;
}
