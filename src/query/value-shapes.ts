/**
 * What the rows' type oids do not say on their own: the attributes of composite (row) types, the
 * element type of arrays of them, the base type of domains. Read from a shard's catalog only for
 * result columns whose type is not one of PostgreSQL's common built-in ones, so that JSON output can
 * render a row value as an object whose members keep their types.
 */
import type { ShardPools } from '../db/shard-pools.js';
import type { QueryField, ValueShape } from './query-types.js';

/** The anonymous record type and its array: PostgreSQL sends no field types for them. */
const RECORD = 2249;
const RECORD_ARRAY = 2287;

/**
 * Built-in scalars and arrays rendered from their oid alone (numbers, booleans, json, text-like,
 * dates, and the arrays of those): no catalog read for them.
 */
const PLAIN = new Set([
  16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 142, 650, 700, 701, 869, 1042, 1043, 1082, 1083, 1114, 1184, 1186, 1266,
  1560, 1562, 1700, 2950, 3802, 199, 1000, 1001, 1002, 1003, 1005, 1007, 1009, 1014, 1015, 1016, 1021, 1022, 1028, 1115,
  1182, 1183, 1185, 1187, 1231, 1270, 2951, 3807,
]);

// Every type reachable from the given ones (array elements, composite attributes, domain bases),
// each with what rendering needs.
const TYPES_SQL = `
WITH RECURSIVE t(oid) AS (
  SELECT unnest($1::oid[])
  UNION
  SELECT n.x FROM t JOIN pg_type y ON y.oid = t.oid
  CROSS JOIN LATERAL (
    SELECT y.typelem WHERE y.typinput = 'array_in'::regproc
    UNION ALL SELECT y.typbasetype WHERE y.typtype = 'd'
    UNION ALL SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = y.typrelid AND y.typtype = 'c' AND a.attnum > 0 AND NOT a.attisdropped
  ) n(x)
)
SELECT y.oid::int AS oid, y.typtype AS kind, CASE WHEN y.typinput = 'array_in'::regproc THEN y.typelem::int ELSE 0 END AS elem,
  y.typbasetype::int AS base,
  (SELECT json_agg(json_build_array(a.attname, a.atttypid::int) ORDER BY a.attnum) FROM pg_attribute a
    WHERE y.typtype = 'c' AND a.attrelid = y.typrelid AND a.attnum > 0 AND NOT a.attisdropped) AS attrs
FROM pg_type y WHERE y.oid IN (SELECT oid FROM t)`;

interface TypeRow {
  oid: number;
  kind: string;
  elem: number;
  base: number;
  attrs: [string, number][] | null;
}

/** Whether a column's values render from its oid alone. */
function plain(typeOid: number): boolean {
  return PLAIN.has(typeOid);
}

/** The shape of one type from the catalog rows (a type the catalog does not list renders as its oid says). */
function shapeOf(oid: number, types: Map<number, TypeRow>): ValueShape {
  if (oid === RECORD) return { kind: 'record' };
  if (oid === RECORD_ARRAY) return { kind: 'array', element: { kind: 'record' } };
  const t = types.get(oid);
  if (!t) return { kind: 'scalar', typeOid: oid };
  if (t.kind === 'd') return shapeOf(t.base, types);
  if (t.kind === 'c')
    return { kind: 'composite', attributes: (t.attrs ?? []).map(([name, a]) => ({ name, shape: shapeOf(a, types) })) };
  if (t.elem !== 0) return { kind: 'array', element: shapeOf(t.elem, types) };
  return { kind: 'scalar', typeOid: oid };
}

/**
 * The fields with `shape` set where their type needs more than its oid to be rendered (composites,
 * arrays of them, domains, anonymous records), read in one round trip from `shard`'s catalog; no
 * round trip when every column is a common built-in type.
 *
 * @example
 * await withValueShapes(router.pools, 'shard-0', [{ name: 'addr', typeOid: 16402 }])
 * // [{ name: 'addr', typeOid: 16402, shape: { kind: 'composite', attributes: [{ name: 'city', shape: { kind: 'scalar', typeOid: 25 } }] } }]
 */
export async function withValueShapes(pools: ShardPools, shard: string, fields: QueryField[]): Promise<QueryField[]> {
  const asked = [
    ...new Set(fields.map((f) => f.typeOid).filter((o) => !plain(o) && o !== RECORD && o !== RECORD_ARRAY)),
  ];
  const types = new Map<number, TypeRow>();
  if (asked.length > 0) {
    const rows = await pools.withShard(shard, async (c) => (await c.query<TypeRow>(TYPES_SQL, [asked])).rows);
    for (const r of rows) types.set(r.oid, r);
  }
  return fields.map((f) => {
    if (plain(f.typeOid)) return f;
    const shape = shapeOf(f.typeOid, types);
    return shape.kind === 'scalar' && shape.typeOid === f.typeOid ? f : { ...f, shape };
  });
}
