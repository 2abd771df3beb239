import type { Shard, ShardMap } from '../config/shard-map.js';
import { forEachShard } from '../db/for-each-shard.js';
import type { ShardPools } from '../db/shard-pools.js';
import { quoteTable } from '../db/sql.js';

/** One shard's copy of a reference table, summarised. */
export interface ReferenceCopy {
  shard: string;
  rows: number;
  /** md5 over the sorted md5s of the rows' text forms. */
  checksum: string;
}

/** A finding of the reference content check, in verify's finding shape (kind `reference-drift`). */
export interface ReferenceFinding {
  kind: 'reference-drift';
  shard: string;
  table: string;
  message: string;
  details: { copies: ReferenceCopy[]; majority: ReferenceCopy | null };
}

const SUMMARY_SQL = (t: string) =>
  `SELECT count(*)::int AS rows, coalesce(md5(string_agg(h, '' ORDER BY h)), md5('')) AS checksum
     FROM (SELECT md5(x::text) AS h FROM ${quoteTable(t)} x) s`;

/**
 * Compares the reference tables of the map between shards (row count and checksum per shard) and names
 * the odd shard(s): those that differ from the copy most shards hold. Without a majority every shard is
 * named. A table missing on a shard is left to the schema check. Reads only.
 *
 * @example
 * await referenceFindings(map, pools, map.shards) // [{ kind: 'reference-drift', shard: 'shard-2', table: 'plans', ... }]
 */
export async function referenceFindings(
  map: ShardMap,
  pools: ShardPools,
  shards: Shard[],
): Promise<ReferenceFinding[]> {
  const findings: ReferenceFinding[] = [];
  for (const table of map.reference) {
    const results = await forEachShard(shards, (s) =>
      pools.withShard(s.name, async (c) => {
        const exists = await c.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [quoteTable(table)]);
        if (!exists.rows[0]?.t) return undefined;
        const r = await c.query<{ rows: number; checksum: string }>(SUMMARY_SQL(table));
        return { shard: s.name, rows: r.rows[0]!.rows, checksum: r.rows[0]!.checksum };
      }),
    );
    const copies = results.flatMap((r) => (r.status === 'ok' && r.value ? [r.value] : []));
    findings.push(...judge(table, copies));
  }
  return findings;
}

function judge(table: string, copies: ReferenceCopy[]): ReferenceFinding[] {
  const groups = new Map<string, ReferenceCopy[]>();
  for (const c of copies) groups.set(c.checksum, [...(groups.get(c.checksum) ?? []), c]);
  if (groups.size <= 1) return [];
  const sorted = [...groups.values()].sort((a, b) => b.length - a.length);
  const majority = sorted[0]!.length > copies.length / 2 ? sorted[0]![0]! : null;
  const odd = majority ? copies.filter((c) => c.checksum !== majority.checksum) : copies;
  return odd.map((c) => ({
    kind: 'reference-drift',
    shard: c.shard,
    table,
    message: majority
      ? `reference table ${table} differs on ${c.shard} (${c.rows} rows, checksum ${c.checksum.slice(0, 8)}) from the other shards (${majority.rows} rows, checksum ${majority.checksum.slice(0, 8)}); repair: shardctl verify --fix --from ${majority.shard}`
      : `reference table ${table} differs between every shard (here ${c.rows} rows, checksum ${c.checksum.slice(0, 8)}), no majority; repair: shardctl verify --fix --from SHARD (the shard whose copy is right)`,
    details: { copies, majority },
  }));
}
