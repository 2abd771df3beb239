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

/** One output column of a FROM item: its name and the expression that reaches it from the select list. */
interface StarColumn {
  name: string;
  val: Node;
}

function pgError(message: string, sqlState: string, shard?: string): ShardctlError {
  // Worded and coded as PostgreSQL words it, like the errors the shards themselves return.
  return new ShardctlError(`${shard ? `shard ${shard}: ` : ''}${message} (SQLSTATE ${sqlState})`, {
    code: 'PG_ERROR',
    exitCode: ExitCode.Failed,
    ...(shard ? { shard } : {}),
    pg: { code: sqlState },
  });
}

/** A table, view or partitioned table of FROM, with its columns as the catalog lists them. */
function rangeVarItem(rv: RangeVar, columns: StarColumns, shard: string): StarItem {
  const name = { schema: rv.schemaname, name: rv.relname ?? '' };
  const cols = columns.get(relationKey(name));
  if (!cols)
    throw pgError(`relation "${name.schema ? `${name.schema}.` : ''}${name.name}" does not exist`, '42P01', shard);
  // FROM t AS a (x, y) renames the first columns.
  const renamed = (rv.alias?.colnames ?? []).map((c) => stringOf(c) ?? '');
  const qualifier = rv.alias?.aliasname ? [rv.alias.aliasname] : [...(rv.schemaname ? [rv.schemaname] : []), name.name];
  return { rv, qualifier, columns: cols.map((c, i) => renamed[i] ?? c) };
}

/** The one column of a join side named `name`, as PostgreSQL requires of a USING/NATURAL column. */
function joinColumn(side: StarColumn[], name: string, which: 'left' | 'right'): number {
  const at = side.flatMap((c, i) => (c.name === name ? [i] : []));
  if (at.length === 0)
    throw pgError(`column "${name}" specified in USING clause does not exist in ${which} table`, '42703');
  if (at.length > 1) throw pgError(`common column name "${name}" appears more than once in ${which} table`, '42702');
  return at[0]!;
}

/**
 * The columns of a USING/NATURAL join as PostgreSQL lists them: the merged columns first (in USING
 * order, or the left side's order for NATURAL), then the rest of the left side, then the rest of the
 * right. A merged column is the left value (INNER, LEFT), the right (RIGHT), or the first non-null
 * (FULL); COALESCE over both is each of these (the other side is NULL or equal there) and resolves their
 * common type as the merged column does.
 */
function mergedJoin(j: JoinExpr, left: StarColumn[], right: StarColumn[]): StarColumn[] {
  const names = j.isNatural
    ? left.map((c) => c.name).filter((n) => right.some((r) => r.name === n))
    : (j.usingClause ?? []).map((u) => stringOf(u) ?? '');
  const pairs = names.map((n) => [joinColumn(left, n, 'left'), joinColumn(right, n, 'right')] as const);
  const merged = pairs.map(([l, r], k) => {
    const args = j.jointype === 'JOIN_RIGHT' ? [right[r]!.val, left[l]!.val] : [left[l]!.val, right[r]!.val];
    return { name: names[k]!, val: { CoalesceExpr: { args } } as Node };
  });
  const [usedLeft, usedRight] = [new Set(pairs.map((p) => p[0])), new Set(pairs.map((p) => p[1]))];
  return [...merged, ...left.filter((_, i) => !usedLeft.has(i)), ...right.filter((_, i) => !usedRight.has(i))];
}

/**
 * The FROM items a star can name (tables, views, partitioned tables; joins left then right), and the
 * columns a bare `*` stands for, in PostgreSQL's order.
 */
function fromOf(from: Node[], columns: StarColumns, shard: string): { items: StarItem[]; all: StarColumn[] } {
  const items: StarItem[] = [];
  const visit = (n: Node): StarColumn[] => {
    const j: JoinExpr | undefined = as(n, 'JoinExpr');
    if (j) {
      if (j.alias) throw refuse('SELECT * over an aliased JOIN', 'across shards: name the columns');
      const [left, right] = [visit(j.larg!), visit(j.rarg!)];
      return j.usingClause?.length || j.isNatural ? mergedJoin(j, left, right) : [...left, ...right];
    }
    const rv = as(n, 'RangeVar');
    if (!rv) throw refuse(`SELECT * over ${kind(n) ?? 'a FROM item'}`, 'across shards: name the columns');
    const item = rangeVarItem(rv, columns, shard);
    items.push(item);
    return item.columns.map((c) => ({ name: c, val: columnRef(...item.qualifier, c) }));
  };
  const all = from.flatMap(visit);
  return { items, all };
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
  if (found.length === 0) throw pgError(`missing FROM-clause entry for table "${rel}"`, '42P01');
  return found.slice(0, 1);
}

/**
 * The select list with every `*` and `t.*` replaced by the columns it stands for, in PostgreSQL's order,
 * each an unnamed qualified column reference (its output name is the column's, duplicates included);
 * the merged columns of USING/NATURAL joins first, as PostgreSQL puts them. Aliased joins and
 * functions or sub-queries in FROM are refused by name.
 *
 * @example
 * expandStars(sel, targets, columns, 'shard-0').map((t) => deparse(t.val)) // ['users.tenant_id', 'users.id', ...]
 */
export function expandStars(sel: SelectStmt, targets: Target[], columns: StarColumns, shard: string): Target[] {
  const { items, all } = fromOf(sel.fromClause ?? [], columns, shard);
  return targets.flatMap((t) => {
    const fields = as(t.val, 'ColumnRef')?.fields;
    if (!fields?.some((f) => kind(f) === 'A_Star')) return [t];
    const qualifier = fields.slice(0, -1).map((f) => stringOf(f) ?? '');
    if (qualifier.length === 0) {
      if (items.length === 0) throw pgError('SELECT * with no tables specified is not valid', '42601');
      // A merged USING column is named as PostgreSQL names it; a plain column is a qualified reference.
      return all.map((c) => ({ name: as(c.val, 'CoalesceExpr') ? c.name : undefined, val: c.val }));
    }
    return itemsNamed(items, qualifier).flatMap((it) =>
      it.columns.map((c) => ({ name: undefined, val: columnRef(...it.qualifier, c) })),
    );
  });
}
