/**
 * Comparators of the streaming merge: PostgreSQL's ORDER BY on text values, reproduced in the client
 * for the types whose order it can reproduce exactly; any other key is sorted by PostgreSQL instead.
 */
import { ExitCode, ShardctlError } from '../errors.js';
import type { SortKey } from './plan-types.js';
import type { Row } from './query-types.js';

const INT = new Set([20, 21, 23, 26]);
const NUM = 1700;
const FLOAT = new Set([700, 701]);
const TEXT = new Set([25, 1043, 1042, 19]);
const TIME = new Set([1082, 1114, 1184]); // date, timestamp, timestamptz (ISO text in UTC)
const ORDERED_AS_TEXT = new Set([2950, 16]); // uuid (lowercase hex), bool (f < t)
const BYTE_ORDER_COLLATIONS = new Set(['"C"', '"POSIX"', '"ucs_basic"', '"pg_c_utf8"']);

/** Compares two values of one type: negative, zero or positive. */
export type ValueComparator = (a: string, b: string) => number;

function compareNumeric(a: string, b: string): number {
  if (a === b) return 0;
  if (a === 'NaN' || b === 'NaN') return a === 'NaN' ? 1 : -1;
  const [an, bn] = [a.startsWith('-'), b.startsWith('-')];
  if (an !== bn) return an ? -1 : 1;
  const sign = an ? -1 : 1;
  const [ai, af = ''] = (an ? a.slice(1) : a).split('.');
  const [bi, bf = ''] = (bn ? b.slice(1) : b).split('.');
  const ia = ai!.replace(/^0+(?=\d)/, '');
  const ib = bi!.replace(/^0+(?=\d)/, '');
  if (ia.length !== ib.length) return sign * (ia.length - ib.length);
  if (ia !== ib) return sign * (ia < ib ? -1 : 1);
  const w = Math.max(af.length, bf.length);
  const fa = af.padEnd(w, '0');
  const fb = bf.padEnd(w, '0');
  return fa === fb ? 0 : sign * (fa < fb ? -1 : 1);
}

function compareInt(a: string, b: string): number {
  // Up to 15 digits a double holds exactly: no BigInt on the hot path.
  if (a.length < 16 && b.length < 16) {
    const x = +a;
    const y = +b;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

function compareFloat(a: string, b: string): number {
  const x = Number(a);
  const y = Number(b);
  // PostgreSQL orders NaN above every number.
  if (Number.isNaN(x) || Number.isNaN(y)) return Number.isNaN(x) && Number.isNaN(y) ? 0 : Number.isNaN(x) ? 1 : -1;
  return x < y ? -1 : x > y ? 1 : 0;
}

function compareTime(a: string, b: string): number {
  if (a.endsWith(' BC') || b.endsWith(' BC')) throw refuseOrder('dates before Christ');
  const rank = (v: string) => (v === '-infinity' ? -1 : v === 'infinity' ? 1 : 0);
  if (rank(a) || rank(b)) return rank(a) - rank(b);
  return a < b ? -1 : a > b ? 1 : 0;
}

const encoder = new TextEncoder();
function compareBytes(a: string, b: string): number {
  return Buffer.compare(encoder.encode(a), encoder.encode(b));
}

/** The client cannot compare these keys as PostgreSQL does: the final sort must run in PostgreSQL. */
function needsFinal(what: string): ShardctlError {
  return new ShardctlError(`ORDER BY on ${what} is merged by PostgreSQL, not streamed`, { code: 'STREAM_ORDER' });
}

/**
 * The refusal of a streamed ORDER BY whose keys cannot be merged exactly.
 *
 * @example
 * throw refuseOrder('text whose collation differs between shards');
 */
export function refuseOrder(what: string): ShardctlError {
  return new ShardctlError(
    `refused: ORDER BY on ${what} across shards without LIMIT cannot be merged exactly while streaming`,
    {
      code: 'REFUSED',
      exitCode: ExitCode.Refused,
      hint: 'add a LIMIT (the final sort then runs in PostgreSQL), sort by a byte-order collation (COLLATE "C"), or use --tenant/--shard',
    },
  );
}

/**
 * A comparator for one sort key's type (as PostgreSQL orders its text output), or an error with code
 * STREAM_ORDER when the client cannot reproduce PostgreSQL's order (then PostgreSQL sorts instead).
 * `collation` is the key's `pg_collation_for` (quoted), `defaultByteOrder` whether "default" is C-like,
 * `values` the keys seen so far (dates BC are not streamed).
 *
 * @example
 * comparatorFor(1700, undefined, true, [])('10.5', '9') // > 0
 */
export function comparatorFor(
  typeOid: number,
  collation: string | undefined,
  defaultByteOrder: boolean,
  values: (string | null)[],
): ValueComparator {
  if (INT.has(typeOid)) return compareInt;
  if (typeOid === NUM) return compareNumeric;
  if (FLOAT.has(typeOid)) return compareFloat;
  if (TIME.has(typeOid)) {
    if (values.some((v) => v !== null && / BC$/.test(v))) throw needsFinal('dates before Christ');
    return compareTime;
  }
  if (ORDERED_AS_TEXT.has(typeOid)) return (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  if (TEXT.has(typeOid)) {
    const byteOrder =
      collation === undefined ||
      BYTE_ORDER_COLLATIONS.has(collation) ||
      (collation === '"default"' && defaultByteOrder);
    if (!byteOrder) throw needsFinal(`text under collation ${collation}`);
    return compareBytes;
  }
  throw needsFinal(`type oid ${typeOid}`);
}

/** A sort key with the comparator of its type. */
export interface KeyComparator extends SortKey {
  cmp: ValueComparator;
}

/**
 * Compares rows as ORDER BY does: key by key, NULLs first or last, descending keys reversed.
 *
 * @example
 * rows.sort(rowComparator([{ col: 0, desc: false, nullsFirst: false, cmp: comparatorFor(20, undefined, true, []) }]));
 */
export function rowComparator(keys: KeyComparator[]): (a: Row, b: Row) => number {
  return (a, b) => {
    for (const k of keys) {
      const x = a[k.col] ?? null;
      const y = b[k.col] ?? null;
      if (x === null || y === null) {
        if (x === y) continue;
        return (x === null) === k.nullsFirst ? -1 : 1;
      }
      const c = k.cmp(x, y);
      if (c !== 0) return k.desc ? -c : c;
    }
    return 0;
  };
}
