import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ShardMap } from '../config/shard-map.js';
import { forEachShard, type ShardResult } from '../db/for-each-shard.js';
import { ShardPools, type LockHolder } from '../db/shard-pools.js';
import { ExitCode } from '../errors.js';
import { compareIds, nextMigrationName, readMigrationFolder, type MigrationFile } from './migration-files.js';
import { findDrift, migrateLockHolder, readLedgerRows, type AppliedMigration, type Drift } from './migrate-shards.js';

/** The state of one migration on one shard. */
export type MigrationCell = 'applied' | 'pending' | 'checksum-changed' | 'file-missing' | 'out-of-order';

/** One shard's migration state. */
export interface ShardMigrationStatus {
  /** null when shardctl never migrated the shard (no ledger). */
  ledger: AppliedMigration[] | null;
  /** Last applied id, or null. */
  version: string | null;
  pending: string[];
  drift: Drift[];
  /** id -> state, for every file and every ledger entry. */
  cells: Record<string, MigrationCell>;
  /** A migrate run holding the lock right now. */
  lockedBy?: LockHolder;
}

/** Result of {@link migrationStatus}. */
export interface MigrationStatusReport {
  files: { id: string; file: string; noTransaction: boolean }[];
  shards: ShardResult<ShardMigrationStatus>[];
  /** One line: "3 of 4 shards at 0007, shard-2 at 0005". */
  summary: string;
  /** What `migrate status --check` exits with: 0 up to date, 4 pending, 3 drift, 5 unreachable. */
  exitCode: number;
}

/**
 * The fleet's migration state, shard by migration (reads only).
 *
 * @example
 * const { summary, exitCode } = await migrationStatus(map);
 */
export async function migrationStatus(
  map: ShardMap,
  options: { timeoutMs?: number } = {},
): Promise<MigrationStatusReport> {
  const files = await readMigrationFolder(map.migrations);
  const pools = await ShardPools.open(map, {
    connectTimeoutMs: options.timeoutMs ?? 5000,
    maxPerShard: 1,
    readOnly: true,
  });
  try {
    const shards = await forEachShard(map.shards, (s) =>
      pools.withShard(s.name, async (c) => {
        const ledger = await readLedgerRows(c);
        const drift = findDrift(ledger ?? [], files);
        const applied = new Set((ledger ?? []).map((e) => e.id));
        const cells: Record<string, MigrationCell> = {};
        for (const f of files) cells[f.id] = applied.has(f.id) ? 'applied' : 'pending';
        for (const d of drift) cells[d.id] = d.kind;
        const holder = await migrateLockHolder(c);
        const version = ledger && ledger.length ? ledger[ledger.length - 1]!.id : null;
        return {
          ledger,
          version,
          pending: files.filter((f) => !applied.has(f.id)).map((f) => f.id),
          drift,
          cells,
          ...(holder ? { lockedBy: holder } : {}),
        };
      }),
    );
    return {
      files: files.map((f) => ({ id: f.id, file: f.file, noTransaction: f.noTransaction })),
      shards,
      summary: summarise(shards, files),
      exitCode: exitOf(shards),
    };
  } finally {
    await pools.close();
  }
}

function summarise(shards: ShardResult<ShardMigrationStatus>[], files: MigrationFile[]): string {
  const latest = files.length ? files[files.length - 1]!.id : null;
  const ok = shards.flatMap((s) => (s.status === 'ok' ? [{ shard: s.shard, ...s.value }] : []));
  const groups = new Map<string, string[]>();
  for (const s of ok) {
    const k = s.version ?? 'none';
    groups.set(k, [...(groups.get(k) ?? []), s.shard]);
  }
  const ranked = [...groups].sort(
    (a, b) => b[1].length - a[1].length || (a[0] === 'none' ? 1 : b[0] === 'none' ? -1 : compareIds(b[0], a[0])),
  );
  // A fleet where nothing is applied anywhere says so, with what would run, instead of "at none".
  if (ranked.length === 1 && ranked[0]![0] === 'none' && ok.length === shards.length && latest)
    return `nothing applied on ${shards.length} shard${shards.length === 1 ? '' : 's'}; ${files.length} file${files.length === 1 ? '' : 's'} pending (latest ${latest})`;
  const parts = ranked.map(([v, names], i) =>
    v === 'none'
      ? `${i === 0 ? `${names.length} of ${shards.length} shards` : names.join(', ')} with nothing applied`
      : i === 0
        ? `${names.length} of ${shards.length} shards at ${v}`
        : `${names.join(', ')} at ${v}`,
  );
  const down = shards.filter((s) => s.status === 'failed').map((s) => s.shard);
  if (down.length) parts.push(`${down.join(', ')} unreachable`);
  const drift = ok.filter((s) => s.drift.length).map((s) => s.shard);
  if (drift.length) parts.push(`drift on ${drift.join(', ')}`);
  return `${parts.join(', ')}${latest ? ` (latest file ${latest})` : ' (no migration files)'}`;
}

function exitOf(shards: ShardResult<ShardMigrationStatus>[]): number {
  if (shards.some((s) => s.status !== 'ok')) return ExitCode.Partial;
  const ok = shards.flatMap((s) => (s.status === 'ok' ? [s.value] : []));
  if (ok.some((s) => s.drift.length > 0)) return ExitCode.Drift;
  if (ok.some((s) => s.pending.length > 0)) return ExitCode.Pending;
  return ExitCode.Ok;
}

/**
 * Writes a new, empty migration file with the next id.
 *
 * @example
 * await createMigration(map, 'add invoice index') // '/app/migrations/0008_add_invoice_index.sql'
 */
export async function createMigration(
  map: ShardMap,
  name: string,
  options: { noTransaction?: boolean } = {},
): Promise<string> {
  const files = await readMigrationFolder(map.migrations);
  const file = path.join(map.migrations, nextMigrationName(files, name));
  const header = options.noTransaction
    ? '-- shardctl:no-transaction\n-- One statement, run outside a transaction (for CREATE INDEX CONCURRENTLY and the like).\n'
    : `-- ${name}\n`;
  await writeFile(file, header, { flag: 'wx' });
  return file;
}
