import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { comparatorFor, rowComparator } from '../../src/query/merge-compare.js';
import { concatCursors, mergeCursors } from '../../src/query/merge-stream.js';
import type { ShardCursor } from '../../src/query/shard-session.js';

type Row = (string | null)[];

/** A cursor over batches in memory; `failAt` makes the read of that batch fail as a shard would. */
function fakeCursor(shard: string, batches: Row[][], failAt?: number): ShardCursor {
  let read = 0;
  const c = {
    shard,
    fields: [],
    buffer: batches[0] ?? [],
    pos: 0,
    done: batches.length <= 1,
    byteOrderDefault: true,
    async next() {
      read++;
      if (read === failAt) throw new Error(`shard ${shard}: boom`);
      c.buffer = batches[read] ?? [];
      c.pos = 0;
      c.done = read >= batches.length - 1;
    },
    async close() {
      c.done = true;
    },
  };
  return c;
}

const cmp = rowComparator([{ col: 0, desc: false, nullsFirst: false, cmp: comparatorFor(20, undefined, true, []) }]);

/** Sorted rows of one shard, cut into batches of random sizes. */
const shard = fc
  .tuple(fc.array(fc.integer({ min: -50, max: 50 }), { maxLength: 30 }), fc.integer({ min: 1, max: 7 }))
  .map(([keys, size]) => {
    const rows: Row[] = keys.sort((a, b) => a - b).map((k, i) => [String(k), `r${i}`]);
    const batches: Row[][] = [];
    for (let i = 0; i < rows.length; i += size) batches.push(rows.slice(i, i + size));
    return batches.length ? batches : [[]];
  });

async function all(gen: AsyncGenerator<Row[]>): Promise<Row[]> {
  const out: Row[] = [];
  for await (const b of gen) out.push(...b);
  return out;
}

describe('k-way stream merge', () => {
  it('yields every row of sorted shards in order, with the window applied and hidden columns dropped', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(shard, { minLength: 1, maxLength: 4 }), fc.nat(10), async (shards, skip) => {
        const cursors = shards.map((b, i) => fakeCursor(`s${i}`, b));
        const got = await all(mergeCursors(cursors, cmp, { skip, limit: Infinity, visible: 1 }));
        const keys = shards
          .flat(2)
          .map((r) => Number(r[0]))
          .sort((a, b) => a - b);
        expect(got.map((r) => Number(r[0]))).toEqual(keys.slice(skip));
        expect(got.every((r) => r.length === 1)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('takes runs of one shard in exactly the order of choosing the smallest row one at a time (ties in shard order)', async () => {
    /** The reference: every row chosen alone, the first shard winning a tie. */
    const oneByOne = (shards: Row[][][]): Row[] => {
      const rows = shards.map((b, i) => b.flat().map((r) => [r[0]!, `s${i}${r[1]}`]));
      const pos = rows.map(() => 0);
      const out: Row[] = [];
      for (;;) {
        let best = -1;
        for (let i = 0; i < rows.length; i++)
          if (pos[i]! < rows[i]!.length && (best < 0 || cmp(rows[i]![pos[i]!]!, rows[best]![pos[best]!]!) < 0))
            best = i;
        if (best < 0) return out;
        out.push(rows[best]![pos[best]!++]!);
      }
    };
    await fc.assert(
      fc.asyncProperty(fc.array(shard, { minLength: 1, maxLength: 4 }), async (shards) => {
        const tagged = shards.map((b, i) => b.map((rows) => rows.map((r) => [r[0]!, `s${i}${r[1]}`])));
        const got = await all(
          mergeCursors(
            tagged.map((b, i) => fakeCursor(`s${i}`, b)),
            cmp,
            { skip: 0, limit: Infinity, visible: 2 },
          ),
        );
        expect(got).toEqual(oneByOne(shards));
      }),
      { numRuns: 300 },
    );
  });

  it("ends with the shard's error whichever batch fails", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(shard, { minLength: 2, maxLength: 4 }), fc.nat(), async (shards, pick) => {
        const failing = shards.map((b, i) => [b, i] as const).filter(([b]) => b.length > 1);
        fc.pre(failing.length > 0);
        const [batches, index] = failing[pick % failing.length]!;
        const failAt = 1 + (pick % (batches.length - 1));
        const cursors = () => shards.map((b, i) => fakeCursor(`s${i}`, b, i === index ? failAt : undefined));
        await expect(all(mergeCursors(cursors(), cmp, { skip: 0, limit: Infinity, visible: 2 }))).rejects.toThrow(
          `shard s${index}: boom`,
        );
        await expect(all(concatCursors(cursors(), { skip: 0, limit: Infinity, visible: 2 }))).rejects.toThrow(
          `shard s${index}: boom`,
        );
      }),
      { numRuns: 100 },
    );
  });

  it('appends shards one after the other and stops reading at the limit', async () => {
    const cursors = [fakeCursor('a', [[['1'], ['2']], [['3']]]), fakeCursor('b', [[['4'], ['5']]], 1)];
    // b's next() would fail: the limit is reached before it is called
    expect(await all(concatCursors(cursors, { skip: 1, limit: 3, visible: Infinity }))).toEqual([['2'], ['3'], ['4']]);
  });
});
