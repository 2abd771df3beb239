import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { PoolClient } from 'pg';

/** One row of a shard's migration ledger. */
export interface LedgerEntry {
  id: string;
  name: string;
  checksum: string;
}

/** A migration file and the checksum of its bytes. */
export interface MigrationFileSum {
  id: string;
  file: string;
  checksum: string;
}

/**
 * Reads `shardctl.migrations` of a shard; `null` when the shard has no ledger (migrated by other tools).
 *
 * @example
 * await readLedger(client) // [{ id: '0001', name: 'create_plans', checksum: '9f2c...' }]
 */
export async function readLedger(client: PoolClient): Promise<LedgerEntry[] | null> {
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass('shardctl.migrations')::text AS t");
  if (!exists.rows[0]?.t) return null;
  const r = await client.query<LedgerEntry>('SELECT id, name, checksum FROM shardctl.migrations ORDER BY id');
  return r.rows;
}

/**
 * Lists the migration files of a folder (`<id>_<name>.sql`) with the sha256 of their bytes, the
 * checksum the ledger records. A missing folder gives `null` (nothing to compare against).
 *
 * @example
 * await readMigrationFiles('./migrations') // [{ id: '0001', file: '0001_create_plans.sql', checksum: '...' }]
 */
export async function readMigrationFiles(dir: string): Promise<MigrationFileSum[] | null> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return null;
  }
  const out: MigrationFileSum[] = [];
  for (const file of names.sort()) {
    const m = /^(\d+)_.+\.sql$/.exec(file);
    if (!m) continue;
    const bytes = await readFile(path.join(dir, file));
    out.push({ id: m[1]!, file, checksum: createHash('sha256').update(bytes).digest('hex') });
  }
  return out;
}
