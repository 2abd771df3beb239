/**
 * Derived subplans (as Citus's recursive planning): a sub-query in the outermost FROM (not LATERAL) or a
 * CTE of the outermost WITH whose shards' results would not add up to its own (it aggregates, cuts or
 * ranks across tenants) is a query of its own. It is answered first through the same engine, and its
 * rows take its place as a typed relation, `SELECT u.c0 AS name, ... FROM unnest('{...}'::type[], ...)`,
 * each column cast back to its type and collation. Then the outer query is planned again. Why it is
 * exact: at the outermost level such a sub-query reads no outer column, so it has one result for the
 * whole statement, the one it has when run alone; each value is PostgreSQL's text output re-read by the
 * type's input (exact for the built-in types). Types whose text does not survive that (arrays inside an
 * array literal, anonymous records, bit strings) leave the refusal as it was.
 */
import type { CommonTableExpr, RangeSubselect, SelectStmt } from '@pgsql/types';
import { shardQuery } from './plan-common.js';
import type { Row } from './query-types.js';
import { as, clone, parseSql, walk, type Node } from './sql-ast.js';

/** Which derived table a refusal named: a CTE or a sub-query in FROM, by name. */
export interface DerivedTarget {
  kind: 'cte' | 'from';
  name: string;
}

/** One column of a derived table's answer: its output name, type (as a cast names it) and collation. */
export interface DerivedColumn {
  name: string;
  type: string;
  /** Quoted, as pg_collation_for gives it; absent for the default or a type without collation. */
  collation?: string;
}

/**
 * The derived table a refusal names as answerable on its own (plan-colocated.ts puts it in the details).
 *
 * @example
 * derivedOf(err) // { kind: 'cte', name: 's' }
 */
export function derivedOf(e: unknown): DerivedTarget | undefined {
  const d = (e as { code?: string; details?: { derived?: DerivedTarget } }).details?.derived;
  return (e as { code?: string }).code === 'REFUSED' && d && typeof d.name === 'string' ? d : undefined;
}

/** The sub-queries in the outermost FROM, through joins (not into other sub-queries). */
function fromSubselects(sel: SelectStmt): RangeSubselect[] {
  const out: RangeSubselect[] = [];
  const visit = (n: Node | undefined): void => {
    const sub = as(n, 'RangeSubselect');
    if (sub) out.push(sub);
    const j = as(n, 'JoinExpr');
    if (j) {
      visit(j.larg);
      visit(j.rarg);
    }
  };
  for (const f of sel.fromClause ?? []) visit(f);
  return out;
}

function ctesOf(sel: SelectStmt): CommonTableExpr[] {
  return (sel.withClause?.ctes ?? []).map((c) => as(c, 'CommonTableExpr')).filter((c) => c !== undefined);
}

/** The node holding the derived table's SELECT, when it runs alone as it runs in the statement. */
function holderOf(sel: SelectStmt, t: DerivedTarget): { body: SelectStmt; set: (s: SelectStmt) => void } | undefined {
  if (t.kind === 'cte') {
    if (sel.withClause?.recursive) return undefined;
    const c = ctesOf(sel).find((x) => x.ctename === t.name);
    const body = as(c?.ctequery, 'SelectStmt');
    return c && body ? { body, set: (s) => void (c.ctequery = { SelectStmt: s }) } : undefined;
  }
  const matches = fromSubselects(sel).filter((s) => !s.lateral && (s.alias?.aliasname ?? '') === t.name);
  const sub = matches.length === 1 ? matches[0]! : undefined;
  const body = as(sub?.subquery, 'SelectStmt');
  return sub && body ? { body, set: (s) => void (sub.subquery = { SelectStmt: s }) } : undefined;
}

/** Whether a SELECT names a CTE of the statement: run alone, that name would mean another relation. */
function readsCtes(body: SelectStmt, sel: SelectStmt): boolean {
  const names = new Set(ctesOf(sel).map((c) => c.ctename));
  let reads = false;
  walk(body, (n) => {
    const rv = as(n, 'RangeVar');
    if (rv && !rv.schemaname && names.has(rv.relname)) reads = true;
  });
  return reads;
}

/**
 * The SQL (and its parameters, renumbered) of the derived table a refusal named, when it can run alone:
 * at the outermost level, not LATERAL, not recursive, reading no CTE of the statement.
 *
 * @example
 * derivedQuery(sel, { kind: 'from', name: 'x' }, []) // { sql: 'SELECT customer, count(*) AS n FROM orders GROUP BY customer', params: [] }
 */
export function derivedQuery(
  sel: SelectStmt,
  t: DerivedTarget,
  params: unknown[],
): { sql: string; params: unknown[] } | undefined {
  const h = holderOf(sel, t);
  if (!h || readsCtes(h.body, sel)) return undefined;
  const q = shardQuery({ SelectStmt: h.body }, params);
  return { sql: q.shardSql, params: q.params };
}

function quoted(v: string): string {
  return `'${v.replace(/'/g, "''")}'`;
}

function ident(v: string): string {
  return `"${v.replace(/"/g, '""')}"`;
}

function arrayText(rows: Row[], i: number): string {
  const items = rows.map((r) => (r[i] === null || r[i] === undefined ? 'NULL' : `"${r[i].replace(/[\\"]/g, '\\$&')}"`));
  return `{${items.join(',')}}`;
}

/**
 * The type a column's values are re-read as, or undefined when their text would not survive the array
 * literal: `character` alone means char(1) in a cast (bpchar keeps every character).
 */
function castType(type: string): string | undefined {
  if (type.endsWith(']') || /^(record|bit|unknown)$/.test(type)) return undefined;
  return type === 'character' ? 'bpchar' : type;
}

/**
 * The statement with the derived table replaced by its answer; undefined when a column's type cannot be
 * re-read exactly (the refusal stands).
 *
 * @example
 * substituteDerived(sel, { kind: 'cte', name: 's' }, [{ name: 'n', type: 'bigint' }], [['3']])
 * // WITH s AS (SELECT u.c0 AS n FROM unnest('{"3"}'::bigint[]) AS u (c0)) SELECT ...
 */
export function substituteDerived(
  sel: SelectStmt,
  t: DerivedTarget,
  columns: DerivedColumn[],
  rows: Row[],
): SelectStmt | undefined {
  const types = columns.map((c) => castType(c.type));
  if (columns.length === 0 || types.some((x) => x === undefined)) return undefined;
  const arrays = columns.map((_, i) => `${quoted(arrayText(rows, i))}::${types[i]}[]`);
  const list = columns.map((c, i) => `u.c${i}${c.collation ? ` COLLATE ${c.collation}` : ''} AS ${ident(c.name)}`);
  const names = columns.map((_, i) => `c${i}`);
  const values = as(
    parseSql(`SELECT ${list.join(', ')} FROM unnest(${arrays.join(', ')}) AS u(${names.join(', ')})`)[0],
    'SelectStmt',
  )!;
  const out = clone(sel);
  const h = holderOf(out, t);
  if (!h) return undefined;
  h.set(values);
  return out;
}

/**
 * SQL reading the type and collation of each of a query's `width` columns without running it (LIMIT 0:
 * parse and plan only). pg_collation_for raises on a type without collations: CASE guards it.
 *
 * @example
 * derivedTypesSql('SELECT customer, count(*) FROM orders GROUP BY 1', 2) // SELECT t0.t AS t0, t0.c AS c0, ...
 */
export function derivedTypesSql(sql: string, width: number): string {
  const one = (i: number) => {
    const alias = Array.from({ length: i + 1 }, (_, k) => `c${k}`).join(', ');
    const value = `(SELECT s.c${i} FROM (${sql}) AS s(${alias}) LIMIT 0)`;
    return `(SELECT x.t::text AS t, CASE WHEN y.typcollation <> 0 THEN pg_collation_for(${value}) END AS c
FROM (SELECT pg_typeof(${value}) AS t) x JOIN pg_type y ON y.oid = x.t) t${i}`;
  };
  const cols = Array.from({ length: width }, (_, i) => `t${i}.t AS t${i}, t${i}.c AS c${i}`);
  return `SELECT ${cols.join(', ')} FROM ${Array.from({ length: width }, (_, i) => one(i)).join(' CROSS JOIN ')}`;
}
