import { crashPoint } from '../crash-points.js';
import { fromDriverError } from '../errors.js';
import { copyErrorShard, tenantChecksums, type CopyProgress } from './copy-tenant.js';
import { copyForMove } from './move-copy.js';
import { fenceTenant } from './fence.js';
import { tenantsLabel, tenantsOf } from './move-journal.js';
import { JournaledFailure, type Capture, type MoveRun, type Next, type StepTable } from './move-run.js';
import { refuse } from './plan-move.js';
import { checksumMismatch } from './verify-copy.js';

function fencing(r: MoveRun): string {
  return `fencing ${tenantsLabel(r.move)} on ${r.move.source}`;
}

async function fence(r: MoveRun): Promise<Next> {
  const m = r.move;
  r.emit({ phase: 'fenced', message: fencing(r) });
  const tables = await r.tables();
  await r.pools.withShard(m.source, (c) =>
    fenceTenant(c, {
      tenant: tenantsOf(m),
      moveId: m.id,
      target: m.target,
      tables,
      waitMs: r.options.waitMs ?? 30_000,
      shard: m.source,
    }),
  );
  crashPoint('after-fence');
  return { state: 'copying', entry: { message: 'copying' } };
}

/** Copies the tenant's rows from the fenced source into one target transaction. */
async function copy(r: MoveRun): Promise<Next> {
  const m = r.move;
  const tables = await r.tables();
  const totalRows = m.plan.tables.reduce((a, t) => a + t.rows, 0);
  const totalBytes = m.plan.tables.reduce((a, t) => a + t.bytes, 0);
  const onProgress = (p: CopyProgress) =>
    r.emit({
      phase: 'copying',
      table: p.table,
      ...(p.rows >= 0 ? { rows: p.rows } : {}),
      bytes: p.bytes,
      totalRows,
      totalBytes,
    });
  const stats = await copyForMove(r, tables, {
    onProgress,
    ...(r.options.maxBytesPerSecond ? { maxBytesPerSecond: r.options.maxBytesPerSecond } : {}),
  }).catch((e: unknown) => Promise.reject(fromDriverError(e, { shard: copyErrorShard(e, m) })));
  crashPoint('after-copy');
  return {
    state: 'copied',
    entry: { stats: { copy: stats }, message: `copied ${stats.rows} rows, ${stats.bytes} bytes in ${stats.ms} ms` },
  };
}

/** Checksums both sides; a mismatch fails the move so that a resume copies again. */
async function verify(r: MoveRun): Promise<Next> {
  const m = r.move;
  r.emit({ phase: 'copied', message: 'verifying' });
  const tables = await r.tables();
  const [a, b] = await Promise.all([
    r.pools.withShard(m.source, (c) => tenantChecksums(c, tables, tenantsOf(m), r.key)),
    r.pools.withShard(m.target, (c) => tenantChecksums(c, tables, tenantsOf(m), r.key)),
  ]);
  const detail = checksumMismatch(tables, a, b);
  if (detail !== undefined) {
    const error = refuse(
      `move ${m.id}: verification failed, not switched: ${detail}`,
      'VERIFY_FAILED',
      `the tenant stays on ${m.source} (still fenced): \`shardctl rebalance --resume ${m.id}\` copies again, \`--abort ${m.id}\` undoes the move`,
    );
    // Redo the copy on resume: the target's rows are not trusted.
    throw new JournaledFailure(error, {
      state: 'failed',
      entry: { failedIn: 'copying', error: `verification failed: ${detail}`, message: 'verification failed' },
    });
  }
  return {
    state: 'verified',
    entry: {
      stats: { verify: Object.fromEntries(tables.map((t) => [t.table, a[t.table]])) },
      message: 'source and target agree',
    },
  };
}

/**
 * The fenced move's steps up to `verified`: the tenant's writes are rejected from the fence to the switch.
 *
 * @example
 * const next = await FENCED_STEPS.copying.run(r); // { state: 'copied', entry: { stats, message } }
 */
export const FENCED_STEPS: StepTable<'planned' | 'fenced' | 'copying' | 'copied'> = {
  planned: { run: async (r) => ({ state: 'fenced', entry: { message: fencing(r) } }) },
  fenced: { run: fence },
  copying: { run: copy },
  copied: { run: verify },
};

/** Fenced capture: no change capture at all, the source is fenced for the whole copy. */
export const FENCED_CAPTURE: Capture = { steps: FENCED_STEPS, fencedThroughCopy: true };
