import type { FuncCall } from '@pgsql/types';
import { refuse } from './plan-common.js';
import { as, funcName, parseSql, walk, type Node } from './sql-ast.js';

/** Aggregates whose partial results merge exactly. */
const MERGEABLE_AGGS = new Set(['count', 'sum', 'min', 'max', 'avg', 'bool_and', 'bool_or', 'every']);

/** Built-in aggregates that cannot merge, known without asking a catalog. */
const UNMERGEABLE_AGGS = new Set([
  'string_agg',
  'array_agg',
  'json_agg',
  'jsonb_agg',
  'json_object_agg',
  'jsonb_object_agg',
  'stddev',
  'stddev_pop',
  'stddev_samp',
  'variance',
  'var_pop',
  'var_samp',
  'percentile_cont',
  'percentile_disc',
  'mode',
  'corr',
  'covar_pop',
  'covar_samp',
  'regr_slope',
  'bit_and',
  'bit_or',
  'bit_xor',
  'xmlagg',
  'any_value',
  'range_agg',
  'range_intersect_agg',
  'bool_xor',
]);

/**
 * Collects the mergeable aggregate calls under `root` into `out`, refusing those that cannot merge:
 * built-in ones, any name the shards' catalogs call an aggregate (`aggregates`), and calls whose form
 * (ORDER BY, DISTINCT on anything but count) cannot merge.
 *
 * @example
 * const aggs: Node[] = [];
 * collectAggregates(sel.targetList, new Set(), aggs);
 */
export function collectAggregates(root: unknown, aggregates: ReadonlySet<string>, out: Node[]): void {
  walk(root, (n) => {
    // A sub-query's aggregates are its own (plan-colocated.ts refuses one over the outer query's columns).
    if (as(n, 'SubLink')) return 'skip';
    const f = as(n, 'FuncCall');
    // A window call is no aggregate of the query (its arguments may hold some).
    if (!f || f.over) return;
    const name = funcName(f);
    if (!MERGEABLE_AGGS.has(name)) {
      if (
        UNMERGEABLE_AGGS.has(name) ||
        aggregates.has(name) ||
        f.agg_star ||
        f.agg_order ||
        f.agg_filter ||
        f.agg_distinct
      )
        throw refuse(`aggregate ${name}()`, 'across shards cannot be merged exactly');
      return;
    }
    if (f.agg_order) throw refuse(`aggregate ${name}() with ORDER BY`, 'across shards cannot be merged exactly');
    if (f.agg_distinct && name !== 'count')
      throw refuse(`${name}(DISTINCT ...)`, 'across shards cannot be merged exactly');
    if (f.agg_distinct && (f.args ?? []).length !== 1)
      throw refuse('count(DISTINCT with several arguments)', 'across shards cannot be merged exactly');
    out.push(n);
    return 'skip';
  });
}

/**
 * Whether a call is an aggregate: a built-in one, one the shards' catalogs name, or a call only an
 * aggregate can be (`*`, ORDER BY, DISTINCT, FILTER, WITHIN GROUP). Window calls are not.
 *
 * @example
 * isAggregateCall(as(parsed('count(*)'), 'FuncCall')!, new Set()) // true
 */
export function isAggregateCall(f: FuncCall, aggregates: ReadonlySet<string>): boolean {
  if (f.over) return false;
  const name = funcName(f);
  if (MERGEABLE_AGGS.has(name) || UNMERGEABLE_AGGS.has(name) || aggregates.has(name)) return true;
  return !!(f.agg_star || f.agg_order || f.agg_distinct || f.agg_filter || f.agg_within_group);
}

/**
 * Function names used by a query, to ask the shards which of them are aggregates.
 *
 * @example
 * functionNames('SELECT my_agg(x), lower(y) FROM t') // ['my_agg', 'lower']
 */
export function functionNames(sql: string): string[] {
  const names = new Set<string>();
  for (const stmt of parseSql(sql))
    walk(stmt, (n) => {
      const f = as(n, 'FuncCall');
      if (f) names.add(funcName(f));
    });
  return [...names];
}
