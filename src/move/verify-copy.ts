import type { TenantTable } from './tenant-tables.js';

/** Row count and checksum per table, as {@link tenantChecksums} computes them. */
export type TableChecksums = Record<string, { rows: string; sum: string }>;

/**
 * Compares the checksums of the source and the target table by table. Returns the mismatches in words
 * (`undefined` when both sides agree); the fenced and the online copy are both judged by it.
 *
 * @example
 * checksumMismatch(tables, { 'public.t': { rows: '2', sum: '9' } }, { 'public.t': { rows: '1', sum: '4' } })
 * // 'public.t: source 2 rows (checksum 9), target 1 rows (checksum 4)'
 */
export function checksumMismatch(
  tables: TenantTable[],
  source: TableChecksums,
  target: TableChecksums,
): string | undefined {
  const bad = tables.filter((t) => {
    const a = source[t.table]!;
    const b = target[t.table]!;
    return a.rows !== b.rows || a.sum !== b.sum;
  });
  if (bad.length === 0) return undefined;
  return bad
    .map((t) => {
      const a = source[t.table]!;
      const b = target[t.table]!;
      return `${t.table}: source ${a.rows} rows (checksum ${a.sum}), target ${b.rows} rows (checksum ${b.sum})`;
    })
    .join('; ');
}
