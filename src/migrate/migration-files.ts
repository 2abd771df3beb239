import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, type ConfigProblem } from '../errors.js';

/** One migration file. */
export interface MigrationFile {
  /** The number before the first `_`: `0007`, or a timestamp such as `20261124101500`. */
  id: string;
  /** The rest of the name without `.sql`. */
  name: string;
  /** File name. */
  file: string;
  /** Absolute path. */
  path: string;
  /** sha256 of the file's bytes, as recorded in the ledger. */
  checksum: string;
  sql: string;
  /** First line is `-- shardctl:no-transaction`: run outside a transaction (one statement). */
  noTransaction: boolean;
}

/** File names: `<digits>_<name>.sql`, name of letters, digits, `_`, `-` and `.`. */
export const MIGRATION_NAME = /^(\d+)_([A-Za-z0-9][A-Za-z0-9_.-]*)\.sql$/;

/** Orders ids numerically (zero-padded numbers and timestamps alike), then as text. */
export function compareIds(a: string, b: string): number {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Reads the migration folder: `<id>_<name>.sql` files in id order with their checksum and directive.
 * Other `.sql` files, duplicate ids and a missing folder are errors (exit code 2) naming each file;
 * files that are not `.sql` (a README) are ignored. An empty folder gives an empty list.
 *
 * @example
 * const files = await readMigrationFolder('./migrations'); files[0].id // '0001'
 */
export async function readMigrationFolder(dir: string): Promise<MigrationFile[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError(dir, [
      {
        line: 0,
        column: 0,
        path: '',
        message:
          code === 'ENOENT' ? 'migrations folder not found (set migrations: in the shard map)' : (e as Error).message,
      },
    ]);
  }
  const problems: ConfigProblem[] = [];
  const files: MigrationFile[] = [];
  const seen = new Map<string, string>();
  for (const file of names.sort()) {
    if (!file.endsWith('.sql')) continue;
    const m = MIGRATION_NAME.exec(file);
    if (!m) {
      problems.push({
        line: 0,
        column: 0,
        path: file,
        message:
          'badly named migration: use <id>_<name>.sql, for example 0008_add_invoice_index.sql (shardctl migrate create NAME writes one)',
      });
      continue;
    }
    const id = m[1]!;
    const dup = [...seen].find(([other]) => compareIds(other, id) === 0 || BigInt(other) === BigInt(id));
    if (dup) {
      problems.push({ line: 0, column: 0, path: file, message: `duplicate migration id ${id} (also ${dup[1]})` });
      continue;
    }
    seen.set(id, file);
    const full = path.join(dir, file);
    const bytes = await readFile(full);
    const sql = bytes.toString('utf8');
    files.push({
      id,
      name: m[2]!,
      file,
      path: full,
      checksum: createHash('sha256').update(bytes).digest('hex'),
      sql,
      noTransaction: /^--\s*shardctl:no-transaction\s*$/m.test(sql.split('\n', 1)[0] ?? ''),
    });
  }
  if (problems.length > 0) throw new ConfigError(dir, problems);
  return files.sort((a, b) => compareIds(a.id, b.id));
}

/**
 * Line and column (1-based) of a 1-based character position in a text, as PostgreSQL reports
 * positions in the SQL it was sent.
 *
 * @example
 * lineColumn('select 1;\nselec 2', 11) // { line: 2, column: 1 }
 */
export function lineColumn(text: string, position: number): { line: number; column: number } {
  const chars = [...text];
  let line = 1;
  let column = 1;
  for (let i = 0; i < Math.min(position - 1, chars.length); i++) {
    if (chars[i] === '\n') {
      line++;
      column = 1;
    } else column++;
  }
  return { line, column };
}

/**
 * The name of the next migration file: the next id (same width as the last one, at least 4 digits)
 * and the name made safe.
 *
 * @example
 * nextMigrationName(files, 'Add invoice index') // '0008_add_invoice_index.sql'
 */
export function nextMigrationName(files: MigrationFile[], name: string): string {
  const safe = name
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '');
  if (!safe) throw new Error('empty migration name');
  const last = files[files.length - 1];
  const width = Math.max(4, last?.id.length ?? 4);
  const next = last ? (BigInt(last.id) + 1n).toString() : '1';
  return `${next.padStart(width, '0')}_${safe}.sql`;
}
