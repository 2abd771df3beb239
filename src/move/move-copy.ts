import type { ShardPools } from '../db/shard-pools.js';
import { copyTenant, type CopyOptions, type CopyStats } from './copy-tenant.js';
import { resolveCopyTransactions } from './copy-prepared.js';
import { readMove, recordCopyCommit, tenantsOf, type MoveRecord } from './move-journal.js';
import type { MoveRun } from './move-run.js';
import { copyTenantParallel, parallelCopyRefusal } from './parallel-copy.js';
import { DEFAULT_COPY_STREAMS } from './plan-move.js';
import type { TenantTable } from './tenant-tables.js';

/** Below this many rows (all tables together) a move copies in one stream. */
export const MIN_PARALLEL_ROWS = 10_000;

/**
 * Settles what an interrupted parallel copy of the move left prepared on the target, as the journal
 * decided (see {@link resolveCopyTransactions}). Every copy attempt and every abort starts with it.
 *
 * @example
 * await settleCopyTransactions(pools, 'shard-0', move); // nothing left in pg_prepared_xacts for the move
 */
export async function settleCopyTransactions(pools: ShardPools, catalog: string, m: MoveRecord): Promise<void> {
  // The decision as the journal holds it now (the run's copy of the record predates the last attempt).
  const fresh = (await pools.withShard(catalog, (c) => readMove(c, m.id))) ?? m;
  const attempt = typeof fresh.stats.copyCommit === 'string' ? fresh.stats.copyCommit : undefined;
  await pools.withShard(m.target, (c) => resolveCopyTransactions(c, m.id, attempt));
}

/**
 * The move's copy of its tenants from source to target: in parallel streams where the target allows it
 * (`--copy-streams`, default {@link DEFAULT_COPY_STREAMS}; one for fewer than {@link MIN_PARALLEL_ROWS} rows), else in one target transaction, saying why in
 * the stats. Used by every capture (fenced, logical, trigger) and by group moves; `options.snapshot` is
 * the source snapshot a capture's change stream starts from.
 *
 * @example
 * const stats = await copyForMove(r, tables, { snapshot }); stats.streams // 4
 */
export async function copyForMove(r: MoveRun, tables: TenantTable[], options: CopyOptions = {}): Promise<CopyStats> {
  const m = r.move;
  await settleCopyTransactions(r.pools, r.map.catalog, m);
  const asked = Math.max(1, Math.floor(r.options.copyStreams ?? DEFAULT_COPY_STREAMS));
  // More streams than tables only when a table is big enough to be split into key ranges.
  const splits = m.plan.tables.some((t) => t.rows >= 20_000);
  const streams = splits ? asked : Math.min(asked, tables.length);
  if (streams === 1) return copyOneStream(r, tables, options);
  // A small tenant copies in well under a second: more sessions and a two-phase commit would cost more.
  const rows = m.plan.tables.reduce((a, t) => a + t.rows, 0);
  if (rows < MIN_PARALLEL_ROWS)
    return { ...(await copyOneStream(r, tables, options)), singleStreamReason: `a small copy (${rows} rows)` };
  const check = await r.pools.withShard(m.target, (c) => parallelCopyRefusal(c, tables, streams));
  if ('reason' in check) return { ...(await copyOneStream(r, tables, options)), singleStreamReason: check.reason };
  const names = [
    ...Array<string>(streams).fill(m.source),
    ...Array<string>(streams).fill(m.target),
    ...(options.snapshot ? [] : [m.source]),
  ];
  return r.pools.withClients(names, (clients) =>
    copyTenantParallel(
      clients.slice(0, streams),
      clients.slice(streams, 2 * streams),
      clients[2 * streams],
      tables,
      tenantsOf(m),
      r.key,
      {
        ...options,
        moveId: m.id,
        plannedRows: Object.fromEntries(m.plan.tables.map((t) => [t.table, t.rows])),
        outerKeys: check.outerKeys,
        decide: (attempt) => r.pools.withShard(r.map.catalog, (c) => recordCopyCommit(c, m.id, attempt)),
      },
    ),
  );
}

/** Today's copy: one source snapshot, one target transaction. */
async function copyOneStream(r: MoveRun, tables: TenantTable[], options: CopyOptions): Promise<CopyStats> {
  const m = r.move;
  const stats = await r.pools.withClients([m.source, m.target], ([src, dst]) =>
    copyTenant(src!, dst!, tables, tenantsOf(m), r.key, options),
  );
  return { ...stats, streams: 1 };
}
