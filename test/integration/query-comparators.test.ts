import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { comparatorFor, rowComparator, type KeyComparator } from '../../src/query/merge-compare.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';

// The streaming k-way merge compares PostgreSQL's text output in the client. For every type it streams,
// its comparator must order rows exactly as PostgreSQL's ORDER BY does on the same values.
let cluster: TestCluster;
let defaultByteOrder: boolean;
/** libc's C.UTF-8 (an external server's default, say): code-point order, which the merge does not assume. */
let defaultLibcCUtf8: boolean;
/** PostgreSQL's code-point order: pg_c_utf8 from 17; before, "C" of a UTF-8 database (byte order is code-point order). */
let codePointOrder: string;

beforeAll(async () => {
  cluster = await createTestCluster({ shards: 1 });
  // datlocale exists from PostgreSQL 17 (the builtin provider too): by name, 15 and 16 answer null.
  const [d] = await cluster.sql<{ p: string; c: string; l: string | null }>(
    0,
    "SELECT datlocprovider AS p, datcollate AS c, to_jsonb(d) ->> 'datlocale' AS l FROM pg_database d WHERE datname = current_database()",
  );
  const [v] = await cluster.sql<{ n: number }>(0, "SELECT current_setting('server_version_num')::int AS n");
  codePointOrder = v!.n >= 170000 ? 'pg_c_utf8' : 'C';
  defaultByteOrder =
    (d!.p === 'c' && ['C', 'POSIX'].includes(d!.c)) || (d!.p === 'b' && ['C', 'C.UTF-8'].includes(d!.l ?? ''));
  defaultLibcCUtf8 = d!.p === 'c' && /^C\.utf-?8$/i.test(d!.c);
});
afterAll(() => cluster?.drop());

type KeyType = 'int8' | 'numeric' | 'text';
const OID: Record<KeyType, number> = { int8: 20, numeric: 1700, text: 25 };

interface KeySpec {
  type: KeyType;
  desc: boolean;
  nulls: 'first' | 'last' | 'default';
}

// Few distinct values make ties, so later keys decide; extremes test the exact (BigInt / digit) paths.
const int8 = fc
  .oneof(
    fc.bigInt({ min: -3n, max: 3n }),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    fc.constantFrom(-(2n ** 63n), 2n ** 63n - 1n, 999_999_999_999_999n, 1_000_000_000_000_000n),
  )
  .map(String);
const numeric = fc.oneof(
  fc.tuple(fc.bigInt({ min: -(10n ** 20n), max: 10n ** 20n }), fc.integer({ min: 0, max: 8 })).map(([n, scale]) => {
    const digits = (n < 0n ? -n : n).toString().padStart(scale + 1, '0');
    const int = digits.slice(0, digits.length - scale);
    const frac = digits.slice(digits.length - scale);
    return `${n < 0n ? '-' : ''}${int}${scale ? `.${frac}` : ''}`;
  }),
  fc.constantFrom('0', '-0.000', '1.10', '1.1', '-1', '0.5', '-0.5', '100', '99.999', 'NaN'),
);
const text = fc.oneof(
  fc.string({ unit: fc.constantFrom('a', 'A', 'b', 'B', 'é', 'É', 'z', ' ', '-', '_', '日', '🚀', 'Ä', 'ß', '0') }),
  fc.string({ unit: 'grapheme', maxLength: 6 }),
);
const VALUES: Record<KeyType, fc.Arbitrary<string>> = { int8, numeric, text };

const keySpec: fc.Arbitrary<KeySpec> = fc.record({
  type: fc.constantFrom<KeyType>('int8', 'numeric', 'text'),
  desc: fc.boolean(),
  nulls: fc.constantFrom<KeySpec['nulls']>('first', 'last', 'default'),
});

const rowsFor = (keys: KeySpec[]) =>
  fc.array(fc.tuple(...keys.map((k) => fc.option(VALUES[k.type], { nil: null, freq: 5 }))), { maxLength: 40 });

/**
 * PostgreSQL's order of the rows (as input indexes, ties broken by input position), and the rows as
 * PostgreSQL prints them: the text a shard sends, which is what the merge compares.
 */
async function postgresOrder(
  keys: KeySpec[],
  rows: (string | null)[][],
  collation: string,
): Promise<{ order: number[]; printed: (string | null)[][] }> {
  const cols = keys.map((_, i) => `k${i}`);
  const arrays = keys.map((k, i) => `$${i + 1}::${k.type}[]`);
  const order = keys.map((k, i) => {
    // v.k: the input column (the bare name would be the text output column of the same name)
    const expr = k.type === 'text' && collation !== 'default' ? `v.k${i} COLLATE "${collation}"` : `v.k${i}`;
    return `${expr} ${k.desc ? 'DESC' : 'ASC'}${k.nulls === 'default' ? '' : ` NULLS ${k.nulls.toUpperCase()}`}`;
  });
  const select = ['(i - 1)::int AS i', ...cols.map((c) => `${c}::text AS ${c}`)].join(', ');
  const sql = `SELECT ${select} FROM unnest(${arrays.join(', ')}) WITH ORDINALITY AS v(${cols.join(', ')}, i) ORDER BY ${[...order, 'v.i'].join(', ')}`;
  const params = keys.map((_, i) => rows.map((r) => r[i] ?? null));
  const got = await cluster.sql<Record<string, string | null> & { i: number }>(0, sql, params);
  const printed: (string | null)[][] = [];
  for (const r of got) printed[r.i] = cols.map((c) => r[c] ?? null);
  return { order: got.map((r) => r.i), printed };
}

/** The merge's order of the same rows: its comparator, ties kept in input order (a stable sort). */
function mergeOrder(keys: KeySpec[], rows: (string | null)[][], collation: string): number[] {
  const comparators: KeyComparator[] = keys.map((k, col) => ({
    col,
    desc: k.desc,
    nullsFirst: k.nulls === 'first' || (k.nulls === 'default' && k.desc),
    cmp: comparatorFor(OID[k.type], k.type === 'text' ? `"${collation}"` : undefined, defaultByteOrder, []),
  }));
  const cmp = rowComparator(comparators);
  return rows.map((_, i) => i).sort((a, b) => cmp(rows[a]!, rows[b]!));
}

/** The merge's comparator for `collation` against PostgreSQL's order under `serverCollation` (default the same). */
const property = (collation: string, serverCollation?: () => string) =>
  fc.asyncProperty(
    fc.array(keySpec, { minLength: 1, maxLength: 3 }).chain((keys) => fc.tuple(fc.constant(keys), rowsFor(keys))),
    async ([keys, rows]) => {
      const pg = await postgresOrder(keys, rows, serverCollation?.() ?? collation);
      expect(mergeOrder(keys, pg.printed, collation)).toEqual(pg.order);
    },
  );

describe('stream comparators agree with PostgreSQL ORDER BY', () => {
  it('int8, numeric, text under "C", NULLs, ASC/DESC, NULLS FIRST/LAST, several keys', async () => {
    await fc.assert(property('C'), { numRuns: 150 });
  });

  it('text under pg_c_utf8 (code point order)', async () => {
    await fc.assert(
      property('pg_c_utf8', () => codePointOrder),
      { numRuns: 60 },
    );
  });

  it("text under the database's default collation: streamed only when it is byte order, else left to PostgreSQL", async () => {
    if (defaultByteOrder) {
      await fc.assert(property('default'), { numRuns: 60 });
    } else {
      expect(() => comparatorFor(25, '"default"', false, [])).toThrow(
        expect.objectContaining({ code: 'STREAM_ORDER' }),
      );
      // a linguistic order really differs from byte order, which is why the merge must not stream it
      // (libc's C.UTF-8 does not, but what libc does with it is libc's: left to PostgreSQL as well)
      const [r] = await cluster.sql<{ lt: boolean }>(0, "SELECT 'a' < 'B' AS lt");
      expect(r!.lt).toBe(!defaultLibcCUtf8);
      expect(Buffer.compare(Buffer.from('a'), Buffer.from('B'))).toBeGreaterThan(0);
    }
  });

  it('refuses to stream keys it cannot compare as PostgreSQL does', () => {
    expect(() => comparatorFor(25, '"en-x-icu"', true, [])).toThrow(expect.objectContaining({ code: 'STREAM_ORDER' }));
    expect(() => comparatorFor(3802, undefined, true, [])).toThrow(expect.objectContaining({ code: 'STREAM_ORDER' }));
  });
});
