import type { PoolClient } from 'pg';
import type { ShardPools } from '../db/shard-pools.js';
import type { ShardMap } from '../config/shard-map.js';
import { ExitCode, ShardctlError } from '../errors.js';
import { parseTenant, tenantText } from '../placement/tenant-key.js';
import { createRouter } from '../router/create-router.js';
import { readLedger } from '../catalog/ledger.js';
import { quoteIdent, quoteTable } from '../db/sql.js';
import type { OnlineEvent, OnlineOptions } from './online-types.js';
import { inFlightMove, type MoveMode, type MoveRecord, type MoveState } from './move-journal.js';
import { onlineProblems } from './replication.js';
import { readTenantTables, type TenantTable } from './tenant-tables.js';

/** What a move will do, shown before anything changes (`--dry-run` prints it and stops). */
export interface MovePreview {
  tenant: string;
  source: string;
  target: string;
  /** Tenant tables in copy order (parents first) with the tenant's rows and bytes. */
  tables: { table: string; rows: number; bytes: number }[];
  rows: number;
  bytes: number;
  /** Rough duration in seconds (copy, verify, cleanup), from rows and bytes. */
  estimateSeconds: number;
  /** How the move will run: `online` (writes pause only for the switch) or `fenced`. */
  mode: MoveMode;
  /** Why an online move is impossible between these servers (set when an online move fell back to fenced). */
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
  /** Where the servers cannot move online, move fenced instead of refusing. Default false. */
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
   * tombstone while the rows are there, but would match nothing once they are gone. Default 2500
   * (routers check the directory every 2000 ms by default).
   */
  cleanupGraceMs?: number;
  /** Fleet plan this move belongs to. */
  planId?: number;
  /** Throttle the copy to this many bytes per second (`--max-rate`). Default: no limit. */
  maxBytesPerSecond?: number;
}

/** Result of a move command. */
export interface MoveResult {
  move: MoveRecord;
  preview?: MovePreview;
}

async function tenantStats(
  c: PoolClient,
  tables: TenantTable[],
  tenant: string,
  map: ShardMap,
): Promise<{ table: string; rows: number; bytes: number }[]> {
  const out = [];
  for (const t of tables) {
    const r = await c.query<{ n: string; b: string }>(
      `SELECT count(*)::text AS n, coalesce(sum(pg_column_size(x.*)), 0)::text AS b FROM ${quoteTable(t.table)} x WHERE ${quoteIdent(map.shardKey.column)} = $1`,
      [tenant],
    );
    out.push({ table: t.table, rows: Number(r.rows[0]!.n), bytes: Number(r.rows[0]!.b) });
  }
  return out;
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
  options: { timeoutMs?: number; mode?: MoveMode; allowOffline?: boolean } = {},
): Promise<MovePreview> {
  const tenant = tenantText(parseTenant(tenantValue, map.shardKey.type));
  if (!map.shards.some((s) => s.name === to)) {
    throw refuse(
      `unknown target shard "${to}"; the map has ${map.shards.map((s) => s.name).join(', ')}`,
      'UNKNOWN_SHARD',
      undefined,
      undefined,
      ExitCode.Usage,
    );
  }
  const router = await createRouter(map, { pool: { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 2 } });
  try {
    const source = router.locate(tenant).shard;
    if (source === to)
      throw refuse(
        `tenant ${tenant} already lives on ${to}`,
        'SAME_SHARD',
        'pick another --to shard',
        undefined,
        ExitCode.Usage,
      );
    const pair: ShardPair = { map, pools: router.pools, tenant, source, target: to };
    await refuseInFlight(pair);
    const tables = await checkSchemas(pair);
    const stats = await checkRows(pair, tables);
    const rows = stats.reduce((a, s) => a + s.rows, 0);
    const bytes = stats.reduce((a, s) => a + s.bytes, 0);
    const { mode, problems } = await chooseMode(pair, tables, options);
    return {
      tenant,
      source,
      target: to,
      tables: stats,
      rows,
      bytes,
      estimateSeconds: Math.ceil(rows / 150_000 + bytes / 40_000_000 + 1),
      mode,
      ...(problems.length > 0 ? { onlineProblems: problems } : {}),
    };
  } finally {
    await router.close();
  }
}

/** The two shards of a planned move and the tenant, for the preflight checks. */
interface ShardPair {
  map: ShardMap;
  pools: ShardPools;
  tenant: string;
  source: string;
  target: string;
}

async function refuseInFlight({ map, pools, tenant }: ShardPair): Promise<void> {
  const inflight = await pools.withShard(map.catalog, (c) => inFlightMove(c, tenant));
  if (inflight) {
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
  { map, pools, tenant, source, target }: ShardPair,
  tables: TenantTable[],
): Promise<{ table: string; rows: number; bytes: number }[]> {
  const stats = await pools.withShard(source, (c) => tenantStats(c, tables, tenant, map));
  if (stats.reduce((a, s) => a + s.rows, 0) === 0)
    throw refuse(`tenant ${tenant} has no rows on ${source}`, 'NO_ROWS', 'check the tenant id with `shardctl locate`');
  const conflicts = await pools.withShard(target, (c) => existingKeys(c, tables, tenant, map));
  if (conflicts.length > 0) {
    throw refuse(
      `tenant ${tenant} already has rows on ${target}: ${conflicts.map((c) => `${c.table} (${c.keys.join(', ')}${c.more ? ', ...' : ''})`).join('; ')}; nothing was copied`,
      'TARGET_HAS_ROWS',
      'find out where these rows come from (shardctl verify --tenant ' + tenant + ') and remove them before moving',
      conflicts,
    );
  }
  return stats;
}

/** Online unless asked otherwise; where the servers cannot, refused, or fenced with `allowOffline`. */
async function chooseMode(
  { map, pools, tenant, source, target }: ShardPair,
  tables: TenantTable[],
  options: { mode?: MoveMode; allowOffline?: boolean },
): Promise<{ mode: MoveMode; problems: string[] }> {
  const mode: MoveMode = options.mode ?? 'online';
  if (mode !== 'online') return { mode, problems: [] };
  const problems = await pools.withShard(source, (s) =>
    pools.withShard(target, (t) => onlineProblems(s, t, tables, map.shardKey.column, { source, target })),
  );
  if (problems.length > 0 && !options.allowOffline) {
    throw refuse(
      `tenant ${tenant} cannot move online from ${source} to ${target}: ${problems.join('; ')}`,
      'ONLINE_UNSUPPORTED',
      "fix the above, or pass --allow-offline (or --offline) to move fenced: the tenant's writes are then rejected for the whole copy",
      problems,
      ExitCode.Refused,
    );
  }
  return { mode: problems.length > 0 ? 'fenced' : mode, problems };
}

async function existingKeys(
  c: PoolClient,
  tables: TenantTable[],
  tenant: string,
  map: ShardMap,
): Promise<{ table: string; keys: string[]; more: boolean }[]> {
  const out = [];
  for (const t of tables) {
    const pk = t.primaryKey.map(quoteIdent);
    const r = await c.query<{ k: string }>(
      `SELECT ROW(${pk.join(', ')})::text AS k FROM ${quoteTable(t.table)} WHERE ${quoteIdent(map.shardKey.column)} = $1 ORDER BY ${pk.join(', ')} LIMIT 21`,
      [tenant],
    );
    if (r.rows.length > 0)
      out.push({ table: t.table, keys: r.rows.slice(0, 20).map((x) => x.k), more: r.rows.length > 20 });
  }
  return out;
}
