/**
 * Subplans (as Citus's): a sub-query that reads none of the outer query's columns is a query of its own.
 * It is planned and answered first, through the same engine (so it may itself be merged, pulled up, or
 * hold subplans), and its result takes its place in the outer query as a typed literal: a scalar value,
 * an array for `IN`/`op ANY`/`op ALL`/`ARRAY(...)`, a boolean for `EXISTS`. Then the outer query is
 * planned. Why it is exact: a non-correlated sub-query has one value for the whole statement, the one
 * it has when run alone; the literal is that value in PostgreSQL's text output re-read by the type's
 * input (exact for the built-in types), with the sub-query's collation, and `x = ANY(array)` has the
 * NULL semantics of `x IN (sub-query)` (NULL when no element matches and one is NULL, so `NOT IN` over
 * a list holding a NULL yields no row).
 */
import type { SelectStmt, SubLink } from '@pgsql/types';
import { ExitCode, ShardctlError } from '../errors.js';
import { shardQuery } from './plan-common.js';
import type { Row } from './query-types.js';
import { as, clone, kind, parseSql, rewrite, str, stringOf, walk, type Node } from './sql-ast.js';

/** The answer of a sub-query run alone, with its result type as PostgreSQL names it. */
export interface SubplanAnswer {
  rows: Row[];
  /** Result columns. */
  width: number;
  /** format_type of the single column; undefined for EXISTS. */
  type?: string;
  /** Its collation when it is not the default (quoted, as pg_collation_for gives it). */
  collation?: string;
  /** For --explain: how the sub-query itself is planned. */
  how: string;
}

/** A sub-query to run first: its SQL and parameters, and what becomes of its answer. */
export interface Subplan {
  form: 'scalar' | 'IN/ANY' | 'ALL' | 'EXISTS' | 'ARRAY';
  sql: string;
  params: unknown[];
}

/** Evaluates a subplan through the engine (or, for --explain, only plans it: `rows` empty). */
export type Evaluate = (sub: Subplan) => Promise<SubplanAnswer | 'correlated'>;

const FORMS: Record<string, Subplan['form']> = {
  EXPR_SUBLINK: 'scalar',
  ANY_SUBLINK: 'IN/ANY',
  ALL_SUBLINK: 'ALL',
  EXISTS_SUBLINK: 'EXISTS',
  ARRAY_SUBLINK: 'ARRAY',
};

/** Names a sub-query can qualify its own columns with: its relations' aliases and names, its CTEs. */
function ownNames(sub: Node): Set<string> {
  const names = new Set<string>();
  walk(sub, (n) => {
    const rv = as(n, 'RangeVar');
    if (rv) {
      names.add(rv.alias?.aliasname ?? rv.relname ?? '');
      if (rv.relname) names.add(rv.relname);
    }
    const alias = as(n, 'RangeSubselect')?.alias ?? as(n, 'RangeFunction')?.alias;
    if (alias?.aliasname) names.add(alias.aliasname);
    const cte = as(n, 'CommonTableExpr');
    if (cte?.ctename) names.add(cte.ctename);
    const j = as(n, 'JoinExpr');
    if (j?.alias?.aliasname) names.add(j.alias.aliasname);
  });
  return names;
}

/**
 * Whether a sub-query visibly reads an outer column (a qualifier that is none of its own relations).
 * An unqualified outer column is caught when the sub-query, run alone, fails with undefined_column.
 */
function visiblyCorrelated(sub: Node): boolean {
  const own = ownNames(sub);
  let outer = false;
  walk(sub, (n) => {
    const f = as(n, 'ColumnRef')?.fields ?? [];
    if (f.length >= 2 && !own.has(stringOf(f[f.length - 2]) ?? '')) outer = true;
  });
  return outer;
}

/** The sub-queries to run first: outermost, of a form with a literal for their answer, not correlated. */
function subplanLinks(stmt: Node): SubLink[] {
  const found: SubLink[] = [];
  walk(stmt, (n) => {
    const s = as(n, 'SubLink');
    if (!s) return undefined;
    const form = FORMS[s.subLinkType ?? ''];
    const single = !s.testexpr || kind(s.testexpr) !== 'RowExpr';
    if (form && single && s.subselect && !visiblyCorrelated(s.subselect)) found.push(s);
    return 'skip';
  });
  return found;
}

/** The SQL of a sub-query to run alone; EXISTS needs one row at most. */
function subplanOf(s: SubLink, params: unknown[]): Subplan {
  const form = FORMS[s.subLinkType ?? '']!;
  const sel = clone(as(s.subselect, 'SelectStmt')!);
  if (form === 'EXISTS' && !sel.limitCount && !sel.limitOffset) {
    sel.limitCount = { A_Const: { ival: { ival: 1 } } };
    sel.limitOption = 'LIMIT_OPTION_COUNT';
  }
  const q = shardQuery({ SelectStmt: sel }, params);
  return { form, sql: q.shardSql, params: q.params };
}

function quoted(v: string): string {
  return `'${v.replace(/'/g, "''")}'`;
}

function arrayText(rows: Row[]): string {
  const items = rows.map((r) => (r[0] === null || r[0] === undefined ? 'NULL' : `"${r[0].replace(/[\\"]/g, '\\$&')}"`));
  return `{${items.join(',')}}`;
}

function expr(sql: string): Node {
  const sel = as(parseSql(`SELECT ${sql}`)[0], 'SelectStmt')!;
  return as(sel.targetList![0], 'ResTarget')!.val!;
}

function shapeError(message: string, sqlState: string): ShardctlError {
  return new ShardctlError(`${message} (SQLSTATE ${sqlState})`, {
    code: 'PG_ERROR',
    exitCode: ExitCode.Usage,
    pg: { code: sqlState },
  });
}

/** The literal (or expression over the test expression) that replaces a sub-query, from its answer. */
function literalFor(s: SubLink, form: Subplan['form'], a: SubplanAnswer, explain: boolean): Node {
  if (form === 'EXISTS') return { A_Const: { boolval: { boolval: explain || a.rows.length > 0 } } };
  if (a.width !== 1) throw shapeError('subquery must return only one column', '42601');
  if (a.type?.endsWith(']') && form !== 'scalar') throw refusedArrays(form);
  const collate = a.collation ? ` COLLATE ${a.collation}` : '';
  if (form === 'scalar') {
    if (a.rows.length > 1) throw shapeError('more than one row returned by a subquery used as an expression', '21000');
    const v = a.rows[0]?.[0];
    return expr(`${v === undefined || v === null ? 'NULL' : quoted(v)}::${a.type}${collate}`);
  }
  const array = expr(`${quoted(arrayText(a.rows))}::${a.type}[]${collate}`);
  if (form === 'ARRAY') return array;
  return {
    A_Expr: {
      kind: form === 'ALL' ? 'AEXPR_OP_ALL' : 'AEXPR_OP_ANY',
      name: s.operName ?? [str('=')],
      lexpr: s.testexpr!,
      rexpr: array,
    },
  };
}

function refusedArrays(form: string): ShardctlError {
  return new ShardctlError(
    `refused: sub-query (${form}) returning arrays across shards cannot be substituted exactly`,
    {
      code: 'REFUSED',
      exitCode: ExitCode.Refused,
      details: { construct: `sub-query (${form}) returning arrays` },
    },
  );
}

/**
 * Runs a statement's non-correlated sub-queries first (through `evaluate`) and puts their answers in
 * their place; correlated ones are left for the planner (push-down by the shard key, or a refusal).
 * With `explain`, sub-queries are only planned: their place holds a NULL (true for EXISTS).
 *
 * @example
 * const { stmt, steps } = await substituteSubplans(parsed, [], evaluate, false);
 * // WHERE amount > (SELECT avg(amount) FROM orders)  ->  WHERE amount > '1234.5'::numeric
 */
export async function substituteSubplans(
  stmt: Node,
  params: unknown[],
  evaluate: Evaluate,
  explain: boolean,
): Promise<{ stmt: Node; steps: string[] }> {
  const links = subplanLinks(stmt);
  if (links.length === 0) return { stmt, steps: [] };
  const steps: string[] = [];
  // Independent sub-queries run in parallel: their round trips do not wait on each other.
  const answers = await Promise.all(
    links.map(async (s) => {
      const sub = subplanOf(s, params);
      return { s, sub, answer: await evaluate(sub) };
    }),
  );
  const replacements = new Map<SubLink, Node>();
  for (const [i, { s, sub, answer }] of answers.entries()) {
    if (answer === 'correlated') continue;
    const placeholder = explain && sub.form !== 'EXISTS' ? null : undefined;
    replacements.set(
      s,
      placeholder === null ? explainPlaceholder(s, sub.form) : literalFor(s, sub.form, answer, explain),
    );
    steps.push(
      `subplan ${i + 1} (${sub.form}, not correlated): ${sub.sql}, ${answer.how}; run first, ${explain ? 'its answer is substituted' : `its ${answer.rows.length} row(s) substituted`} as a ${sub.form === 'EXISTS' ? 'boolean' : sub.form === 'scalar' ? 'typed literal' : 'typed array'} (at most --max-rows rows)`,
    );
  }
  const out = rewrite(stmt, (n) => {
    const s = as(n, 'SubLink');
    return s ? replacements.get(s) : undefined;
  });
  return { stmt: out, steps };
}

function explainPlaceholder(s: SubLink, form: Subplan['form']): Node {
  const nul: Node = { A_Const: { isnull: true } };
  if (form === 'scalar' || form === 'ARRAY') return nul;
  return {
    A_Expr: {
      kind: form === 'ALL' ? 'AEXPR_OP_ALL' : 'AEXPR_OP_ANY',
      name: s.operName ?? [str('=')],
      lexpr: s.testexpr!,
      rexpr: nul,
    },
  };
}

/** Whether a statement holds a sub-query expression at all (the cheap test before any lookup). */
export function hasSubLinks(stmt: Node | SelectStmt): boolean {
  let found = false;
  walk(stmt, (n) => {
    if (kind(n) === 'SubLink') found = true;
  });
  return found;
}
