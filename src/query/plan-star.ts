/**
 * `SELECT *` and `t.*` across shards: the planner needs the select list spelled out (sort keys and
 * group keys travel as extra columns next to it), so each star becomes the columns PostgreSQL would
 * put there. What a relation's columns are comes from a shard's catalog (`prepare-query.ts` reads
 * them); this module is pure and takes them as data.
 */
import type { JoinExpr, RangeVar, SelectStmt } from '@pgsql/types';
import { ExitCode, ShardctlError } from '../errors.js';
import { refuse, type Target } from './plan-common.js';
import { as, columnRef, kind, parseSql, stringOf, type Node } from './sql-ast.js';

/** A relation as the query names it: schema (if written) and name, identifiers already case-folded. */
export interface RelationName {
  schema: string | undefined;
  name: string;
}

/**
 * Columns of relations, in `pg_attribute` order without dropped and system columns, by
 * {@link relationKey}. A relation the catalog does not know is absent.
 */
export type StarColumns = ReadonlyMap<string, readonly string[]>;

/**
 * The key of a relation in {@link StarColumns}.
 *
 * @example
 * relationKey({ schema: undefined, name: 'users' }) // '[null,"users"]'
 */
export function relationKey(r: RelationName): string {
  return JSON.stringify([r.schema ?? null, r.name]);
}

/** A FROM item a star expands over: the name its columns are qualified with, and those columns. */
interface StarItem {
  rv: RangeVar;
  /** The qualifier that reaches the item's columns: its alias, else its (schema-qualified) name. */
  qualifier: string[];
  columns: string[];
}

function hasStar(t: Node): boolean {
  return as(as(t, 'ResTarget')?.val, 'ColumnRef')?.fields?.some((f) => kind(f) === 'A_Star') ?? false;
}

/**
 * Whether a SELECT's own select list holds `*` or `t.*` (not inside expressions: `count(*)` is no star).
 *
 * @example
 * selectsStar(as(parseSql('SELECT * FROM users')[0], 'SelectStmt')!) // true
 */
export function selectsStar(sel: SelectStmt): boolean {
  return (sel.targetList ?? []).some(hasStar);
}

function rangeVarsOf(n: Node | undefined, out: RangeVar[]): RangeVar[] {
  const rv = as(n, 'RangeVar');
  if (rv) out.push(rv);
  const j = as(n, 'JoinExpr');
  if (j) {
    rangeVarsOf(j.larg, out);
    rangeVarsOf(j.rarg, out);
  }
  return out;
}

/**
 * The relations whose columns a query's `*` needs: those of its FROM when its select list has a star,
 * else none (also for SQL that does not parse: the planner reports that).
 *
 * @example
 * starRelations('SELECT * FROM app.users u JOIN plans p ON ...') // [{ schema: 'app', name: 'users' }, { schema: undefined, name: 'plans' }]
 */
export function starRelations(sql: string): RelationName[] {
  let sel: SelectStmt | undefined;
  try {
    const stmts = parseSql(sql);
    sel = stmts.length === 1 ? as(stmts[0], 'SelectStmt') : undefined;
  } catch {
    return [];
  }
  if (!sel || !selectsStar(sel)) return [];
  const rvs = (sel.fromClause ?? []).flatMap((f) => rangeVarsOf(f, []));
  return rvs.map((rv) => ({ schema: rv.schemaname, name: rv.relname ?? '' }));
}

/** The FROM items in the order PostgreSQL expands `*` over them: left to right, joins left then right. */
function starItems(from: Node[], columns: StarColumns, shard: string): StarItem[] {
  const items: StarItem[] = [];
  const visit = (n: Node): void => {
    const j: JoinExpr | undefined = as(n, 'JoinExpr');
    if (j) {
      if (j.usingClause?.length || j.isNatural)
        throw refuse(
          `SELECT * over a JOIN ... ${j.isNatural ? 'NATURAL' : 'USING'}`,
          'across shards: name the columns (the merged join columns are not expanded)',
        );
      if (j.alias) throw refuse('SELECT * over an aliased JOIN', 'across shards: name the columns');
      visit(j.larg!);
      visit(j.rarg!);
      return;
    }
    const rv = as(n, 'RangeVar');
    if (!rv) throw refuse(`SELECT * over ${kind(n) ?? 'a FROM item'}`, 'across shards: name the columns');
    const name = { schema: rv.schemaname, name: rv.relname ?? '' };
    const cols = columns.get(relationKey(name));
    if (!cols)
      throw new ShardctlError(
        `shard ${shard}: relation "${name.schema ? `${name.schema}.` : ''}${name.name}" does not exist`,
        {
          code: 'PG_ERROR',
          exitCode: ExitCode.Failed,
          shard,
          pg: { code: '42P01' },
        },
      );
    // FROM t AS a (x, y) renames the first columns.
    const renamed = (rv.alias?.colnames ?? []).map((c) => stringOf(c) ?? '');
    const qualifier = rv.alias?.aliasname
      ? [rv.alias.aliasname]
      : [...(rv.schemaname ? [rv.schemaname] : []), name.name];
    items.push({ rv, qualifier, columns: cols.map((c, i) => renamed[i] ?? c) });
  };
  for (const f of from) visit(f);
  return items;
}

/** The items a `t.*` (or `s.t.*`) names, matched as PostgreSQL does: by alias, else by (schema and) name. */
function itemsNamed(items: StarItem[], qualifier: string[]): StarItem[] {
  const rel = qualifier[qualifier.length - 1];
  const schema = qualifier.length > 1 ? qualifier[qualifier.length - 2] : undefined;
  const found = items.filter((it) =>
    it.rv.alias?.aliasname
      ? schema === undefined && it.rv.alias.aliasname === rel
      : it.rv.relname === rel && (schema === undefined || it.rv.schemaname === schema),
  );
  if (found.length === 0)
    throw new ShardctlError(`missing FROM-clause entry for table "${rel}"`, {
      code: 'PG_ERROR',
      exitCode: ExitCode.Failed,
      pg: { code: '42P01' },
    });
  return found.slice(0, 1);
}

/**
 * The select list with every `*` and `t.*` replaced by the columns it stands for, in PostgreSQL's order,
 * each an unnamed qualified column reference (its output name is the column's, duplicates included).
 * USING/NATURAL joins, aliased joins and functions in FROM are refused by name.
 *
 * @example
 * expandStars(sel, targets, columns, 'shard-0').map((t) => deparse(t.val)) // ['users.tenant_id', 'users.id', ...]
 */
export function expandStars(sel: SelectStmt, targets: Target[], columns: StarColumns, shard: string): Target[] {
  const items = starItems(sel.fromClause ?? [], columns, shard);
  if (items.length === 0 && targets.some((t) => hasStar({ ResTarget: { val: t.val } })))
    throw new ShardctlError('SELECT * with no tables specified is not valid', {
      code: 'PG_ERROR',
      exitCode: ExitCode.Failed,
      pg: { code: '42601' },
    });
  return targets.flatMap((t) => {
    const fields = as(t.val, 'ColumnRef')?.fields;
    if (!fields?.some((f) => kind(f) === 'A_Star')) return [t];
    const qualifier = fields.slice(0, -1).map((f) => stringOf(f) ?? '');
    const over = qualifier.length === 0 ? items : itemsNamed(items, qualifier);
    return over.flatMap((it) => it.columns.map((c) => ({ name: undefined, val: columnRef(...it.qualifier, c) })));
  });
}
