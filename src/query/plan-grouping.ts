import type { FuncCall, SelectStmt, SortBy } from '@pgsql/types';
import { mergeNode, shardColumn } from './merge-ops.js';
import {
  collationOf,
  outputName,
  refuse,
  refuseRowValued,
  resolveSortExpr,
  resTarget,
  ungrouped,
} from './plan-common.js';
import { finalPlanBase, type MultiShard } from './plan-rows.js';
import type { FinalPlan } from './plan-types.js';
import {
  as,
  clone,
  columnName,
  columnQualifier,
  deparse,
  funcCall,
  funcName,
  intConst,
  rewrite,
  shape,
  str,
  typeCast,
} from './sql-ast.js';
import type { Node } from './sql-ast.js';

/** The shard query's select list as it grows: each added expression becomes column `__c<i>`. */
class ShardColumns {
  readonly targets: Node[] = [];
  /** Shard column -> the column holding its collation. */
  readonly collations: Record<number, number> = {};

  /** `s`: the statement whose FROM says which bare names are whole rows. */
  constructor(private readonly s: SelectStmt) {}

  add(val: Node): number {
    refuseRowValued(val, this.s);
    const i = this.targets.length;
    this.targets.push(resTarget(val, `__c${i}`));
    return i;
  }

  /** Adds `val` and, next to it, its collation (for text keys compared in the final query). */
  addCollated(val: Node): number {
    const i = this.add(val);
    this.collations[i] = this.add(collationOf(val));
    return i;
  }

  expr(i: number): Node {
    return as(this.targets[i], 'ResTarget')!.val!;
  }
}

/** The partial aggregates asked of the shards and how the final query merges each original call. */
interface Partials {
  /** shape of an aggregate call -> its final expression (over MergeOp nodes). */
  finals: Map<string, Node>;
  /** count(DISTINCT x): the shard columns holding the distinct values, by shape of x and its FILTER. */
  distinct: { shape: string; cols: number[] }[];
}

/** The leaves of a row constructor, nested ones flattened: `(a, (b, c))` -> a, b, c. */
function rowLeaves(n: Node): Node[] {
  const row = as(n, 'RowExpr');
  return row ? (row.args ?? []).flatMap(rowLeaves) : [n];
}

/** The row constructor `n` again, its leaves replaced by the shard columns `cols` (in order). */
function rebuildRow(n: Node, cols: number[]): Node {
  const row = as(n, 'RowExpr');
  if (!row) return shardColumn(cols.shift()!);
  return { RowExpr: { ...row, args: (row.args ?? []).map((a) => rebuildRow(a, cols)) } };
}

/**
 * count(DISTINCT x): shards return their distinct x per group; the final query counts them. A row
 * `count(DISTINCT (a, (b, c)))` travels as its leaf fields, one shard column each, and is rebuilt as the
 * same row constructor in the final query (a whole record would come back as an anonymous composite,
 * which PostgreSQL cannot read from text). The rebuilt row is never NULL, as the original is not: a row
 * whose fields are all NULL still counts once, as on one server.
 */
function distinctCount(f: FuncCall, cols: ShardColumns, partials: Partials): Node {
  const arg = f.args![0]!;
  const row = as(arg, 'RowExpr');
  if (row && f.agg_filter) throw refuse('count(DISTINCT (...)) with FILTER', 'across shards cannot be merged exactly');
  const key = shape(arg) + shape(f.agg_filter ?? null);
  let d = partials.distinct.find((x) => x.shape === key);
  if (!d) {
    const val = f.agg_filter ? { CaseExpr: { args: [{ CaseWhen: { expr: f.agg_filter, result: arg } }] } } : arg;
    d = { shape: key, cols: row ? rowLeaves(arg).map((a) => cols.add(a)) : [cols.add(val)] };
    partials.distinct.push(d);
  }
  const value = row ? rebuildRow(arg, [...d.cols]) : shardColumn(d.cols[0]!);
  return funcCall('count', [value], { agg_distinct: true });
}

/** The final expression of one mergeable aggregate call, adding its partials to the shard columns. */
function mergeOf(f: FuncCall, cols: ShardColumns, partials: Partials): Node {
  const name = funcName(f);
  const partial = (fn: string, args: Node[] | undefined, extra: Partial<FuncCall> = {}) =>
    cols.add({ FuncCall: { ...f, funcname: [str(fn)], args, ...extra, agg_distinct: false } });
  if (f.agg_distinct) return distinctCount(f, cols, partials);
  if (name === 'count') {
    const p = partial('count', f.args ?? [], f.agg_star ? { agg_star: true } : {});
    return typeCast({ CoalesceExpr: { args: [funcCall('sum', [shardColumn(p)]), intConst(0)] } }, 'int8');
  }
  // sum(int2/int4) is bigint, sum(int8) numeric: the final sum keeps the partials' type.
  if (name === 'sum') return mergeNode({ op: 'sum', col: partial('sum', f.args) });
  if (name === 'avg') return mergeNode({ op: 'avg', sum: partial('sum', f.args), count: partial('count', f.args) });
  const fn = name === 'every' ? 'bool_and' : name;
  const p = partial(fn, f.args);
  // min/max of text: the final min/max must compare under the column's collation, as the shards did.
  if (fn === 'min' || fn === 'max') cols.collations[p] = cols.add(collationOf(cols.expr(p)));
  return funcCall(fn, [shardColumn(p)]);
}

function partialsOf(aggs: Node[], cols: ShardColumns): Partials {
  const partials: Partials = { finals: new Map(), distinct: [] };
  for (const a of aggs) {
    const key = shape(a);
    if (!partials.finals.has(key)) partials.finals.set(key, mergeOf(as(a, 'FuncCall')!, cols, partials));
  }
  return partials;
}

/**
 * The group key an expression is: the same expression, else the same column (`o.customer` is `customer`);
 * two columns qualified by different tables are different (`o.id` is not `t.id`, as `SELECT *` over a join has both).
 */
function groupKeyOf(x: Node, groupExprs: Node[]): number {
  const exact = groupExprs.findIndex((g) => shape(g) === shape(x));
  if (exact >= 0 || !as(x, 'ColumnRef')) return exact;
  return groupExprs.findIndex((g) => {
    if (!as(g, 'ColumnRef') || columnName(g) !== columnName(x)) return false;
    const [qg, qx] = [columnQualifier(g), columnQualifier(x)];
    return qg === undefined || qx === undefined || qg === qx;
  });
}

/** Rewrites an original expression for the final query: aggregates by their merge, group keys by their column. */
function finalExpr(n: Node, groupExprs: Node[], groupCols: number[], partials: Partials): Node {
  return rewrite(n, (x) => {
    const merged = as(x, 'FuncCall') ? partials.finals.get(shape(x)) : undefined;
    if (merged) return clone(merged);
    const gi = groupKeyOf(x, groupExprs);
    if (gi >= 0 && !as(x, 'A_Const')) return shardColumn(groupCols[gi]!);
    if (as(x, 'ColumnRef')) throw ungrouped(x);
    return undefined;
  });
}

/** Turns the statement copy into the shard query: grouped by the keys (and distinct arguments), nothing after. */
function toShardGrouping(s: SelectStmt, groupExprs: Node[], cols: ShardColumns, partials: Partials): void {
  const shardGroup = [
    ...groupExprs.map(clone),
    ...partials.distinct.flatMap((d) => d.cols.map((c) => clone(cols.expr(c)))),
  ];
  s.groupClause = shardGroup.length > 0 ? shardGroup : undefined;
  s.targetList = cols.targets;
  s.havingClause = undefined;
  s.sortClause = undefined;
  s.limitCount = undefined;
  s.limitOffset = undefined;
  s.limitOption = 'LIMIT_OPTION_DEFAULT';
  s.distinctClause = undefined;
}

/** ORDER BY of the final query: positions and output names mean the same there (same select list). */
function finalSortOf(sortClause: Node[], names: Set<string | undefined>, toFinal: (n: Node) => Node): Node[] {
  return sortClause.map((item) => {
    const sb = as(item, 'SortBy') as SortBy;
    const node = sb.node!;
    const keep =
      as(node, 'A_Const')?.ival !== undefined ||
      (as(node, 'ColumnRef')?.fields?.length === 1 && names.has(columnName(node)));
    return { SortBy: { ...sb, node: keep ? node : toFinal(node) } };
  });
}

/**
 * Aggregates and GROUP BY: partial aggregates per shard, combined by a final GROUP BY in PostgreSQL.
 *
 * @example
 * planGrouping(m, aggs).shardSql // 'SELECT plan AS __c0, ..., sum(total) AS __c2, count(total) AS __c3 ...'
 */
export function planGrouping(m: MultiShard, aggs: Node[]): FinalPlan {
  const { s, targets } = m;
  const distinct = Array.isArray(s.distinctClause) && s.distinctClause.length > 0;
  let groupExprs = (s.groupClause ?? []).map((g) => resolveSortExpr(g, targets));
  if (distinct && groupExprs.length === 0 && aggs.length === 0) groupExprs = targets.map((t) => t.val);
  const cols = new ShardColumns(s);
  const groupCols = groupExprs.map((g) => cols.add(g));
  for (const [k, g] of groupExprs.entries()) cols.collations[groupCols[k]!] = cols.add(collationOf(g));
  const partials = partialsOf(aggs, cols);
  const { havingClause, sortClause = [] } = s;
  toShardGrouping(s, groupExprs, cols, partials);
  const toFinal = (n: Node) => finalExpr(n, groupExprs, groupCols, partials);
  const columns = targets.map((t) => t.name ?? outputName(t.val));
  const finalSort = finalSortOf(sortClause, new Set(targets.map((t) => t.name).filter(Boolean)), toFinal);
  const keys = groupExprs.length ? groupExprs.map((g) => deparse(g)).join(', ') : '(one group)';
  return {
    ...finalPlanBase(m, columns, {
      targetList: targets.map((t, i) => resTarget(toFinal(t.val), columns[i]!)),
      ...(groupExprs.length > 0 ? { groupClause: groupCols.map(shardColumn) } : {}),
      ...(havingClause ? { havingClause: toFinal(havingClause) } : {}),
      ...(finalSort.length ? { sortClause: finalSort } : {}),
      ...(distinct ? { distinctClause: [{} as Node] } : {}),
    }),
    collations: cols.collations,
    steps: [
      `every shard groups its rows by ${keys} and returns partial aggregates (avg as sum and count${partials.distinct.length ? ', count(DISTINCT) as the distinct values' : ''})`,
      'PostgreSQL combines the partials in a final query over the returned rows: GROUP BY again, sum of counts, sums, min/max of min/max, avg = sum / sum of counts (numeric, exact), then HAVING, ORDER BY, LIMIT/OFFSET',
    ],
  };
}
