/** Merges of cursors in the client: appended (plain rows) or k-way by sort keys (ordered rows). */
import { BATCH, type ShardCursor } from './shard-session.js';
import type { Row } from './query-types.js';

/** The window applied after merging. */
export interface StreamWindow {
  /** Rows skipped first. */
  skip: number;
  /** Most rows kept (Infinity: all). */
  limit: number;
  /** Columns kept of each row (the rest are hidden sort keys). */
  visible: number;
}

/**
 * The shards' rows one cursor after the other, in batches, with the window applied.
 *
 * @example
 * for await (const batch of concatCursors(cursors, { skip: 5, limit: 10, visible: Infinity })) out.push(...batch);
 */
export async function* concatCursors(cursors: ShardCursor[], window: StreamWindow): AsyncGenerator<Row[]> {
  let skip = window.skip;
  let left = window.limit;
  for (const c of cursors) {
    for (;;) {
      let rows = c.buffer.slice(c.pos);
      c.pos = c.buffer.length;
      if (skip > 0) {
        const n = Math.min(skip, rows.length);
        skip -= n;
        rows = rows.slice(n);
      }
      if (rows.length > left) rows = rows.slice(0, left);
      left -= rows.length;
      if (rows.length > 0) yield rows;
      if (left <= 0 || c.done) break;
      await c.next();
    }
    if (left <= 0) return;
  }
}

/** The cursor whose current row sorts first (other than `but`); ties keep shard order (any order of equal keys is correct). */
function smallest(
  live: ShardCursor[],
  compare: (a: Row, b: Row) => number,
  but?: ShardCursor,
): ShardCursor | undefined {
  let best: ShardCursor | undefined;
  for (const c of live) {
    if (c === but || c.pos >= c.buffer.length) continue;
    if (!best || compare(c.buffer[c.pos]!, best.buffer[best.pos]!) < 0) best = c;
  }
  return best;
}

/**
 * The k-way merge of sorted cursors: repeatedly the smallest current row, in batches (one promise per
 * batch, not per row, on the hot path of an export), with the window applied and hidden columns dropped.
 *
 * @example
 * for await (const batch of mergeCursors(cursors, rowComparator(keys), { skip: 0, limit: Infinity, visible: 2 }))
 *   write(batch);
 */
export async function* mergeCursors(
  cursors: ShardCursor[],
  compare: (a: Row, b: Row) => number,
  window: StreamWindow,
): AsyncGenerator<Row[]> {
  let skip = window.skip;
  const { visible } = window;
  const live = cursors.filter((c) => c.buffer.length > 0 || !c.done);
  for (const c of live) if (c.pos >= c.buffer.length && !c.done) await c.next();
  let out: Row[] = [];
  for (let best = smallest(live, compare); best; best = smallest(live, compare)) {
    // A run: rows of `best` are taken while it would be chosen again, i.e. while they sort before the
    // runner-up's current row (or equal to it, when `best` comes first in shard order): one comparison
    // per row instead of one per cursor, and the same order as choosing row by row.
    const runner = smallest(live, compare, best);
    const first = runner !== undefined && live.indexOf(best) < live.indexOf(runner);
    for (;;) {
      const row = best.buffer[best.pos++]!;
      if (best.pos >= best.buffer.length && !best.done) {
        if (out.length > 0) {
          yield out;
          out = [];
        }
        await best.next();
      }
      if (skip > 0) skip--;
      else {
        out.push(row.length > visible ? row.slice(0, visible) : row);
        if (out.length >= BATCH) {
          yield out;
          out = [];
        }
      }
      if (best.pos >= best.buffer.length) break;
      if (runner) {
        const c = compare(best.buffer[best.pos]!, runner.buffer[runner.pos]!);
        if (c > 0 || (c === 0 && !first)) break;
      }
    }
  }
  if (out.length > 0) yield out;
}
