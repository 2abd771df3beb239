/**
 * Pull-up: a construct that needs every shard's rows together (a window over all rows, DISTINCT ON,
 * string_agg, percentiles, GROUPING SETS, ...) over one distributed table. Each shard returns the
 * table's rows that pass the WHERE clause; PostgreSQL then runs the query itself over them on one shard
 * (read only), the table replaced by a CTE of the pulled-up rows cast back to their types and
 * collations, so every semantic is PostgreSQL's own.
 */
import type { SelectStmt } from '@pgsql/types';
import { refuse, shardQuery } from './plan-common.js';
import type { PlanQueryInput, PullupPlan } from './plan-types.js';
import type { Rel } from './route-query.js';
import { as, clone, kind, walk, type Node } from './sql-ast.js';

/** Name of the CTE that stands for the pulled-up table in the final query. */
export const PULLED = '__shardctl_rows';

/** Whether the query is one distributed table (no join, CTE, sub-query or lock): then it can be pulled up. */
export function pullable(sel: SelectStmt, rels: Rel[]): boolean {
  const from = sel.fromClause ?? [];
  if (from.length !== 1 || !as(from[0], 'RangeVar') || rels.length !== 1 || rels[0]!.reference) return false;
  if (sel.withClause || sel.lockingClause || (sel.op && sel.op !== 'SETOP_NONE')) return false;
  // The deparser drops WITH TIES: the final query would not say it.
  if (sel.limitOption === 'LIMIT_OPTION_WITH_TIES') return false;
  let nested = false;
  walk(sel, (n) => {
    if (kind(n) === 'SubLink' || kind(n) === 'RangeSubselect') nested = true;
  });
  return !nested;
}

/**
 * The pull-up plan of a query that `pullable` accepts, for the construct the merging planners refused.
 *
 * @example
 * planPullup(sel, input, shards, routing, 'window function').shardSql // 'SELECT * FROM orders WHERE paid'
 */
export function planPullup(
  sel: SelectStmt,
  input: PlanQueryInput,
  shards: string[],
  routing: string,
  construct: string,
): PullupPlan {
  const rv = as(sel.fromClause![0], 'RangeVar')!;
  const alias = rv.alias?.aliasname ?? rv.relname ?? '';
  const shardSel: SelectStmt = {
    targetList: [{ ResTarget: { val: { ColumnRef: { fields: [{ A_Star: {} }] } } } }],
    fromClause: [clone(sel.fromClause![0]!)],
    ...(sel.whereClause ? { whereClause: clone(sel.whereClause) } : {}),
    limitOption: 'LIMIT_OPTION_DEFAULT',
    op: 'SETOP_NONE',
  };
  const final: SelectStmt = {
    ...clone(sel),
    fromClause: [{ RangeVar: { relname: PULLED, inh: true, relpersistence: 'p', alias: { aliasname: alias } } }],
    whereClause: undefined,
  };
  if (input.params.length > 0 && usesParams(final))
    throw refuse(`${construct} with parameters outside WHERE`, 'across shards: write the values into the query');
  const server = shards[0]!;
  return {
    kind: 'pullup',
    shards,
    routing,
    ...shardQuery({ SelectStmt: shardSel }, input.params),
    visible: -1,
    final,
    relation: rv.schemaname ? `${rv.schemaname}.${rv.relname}` : (rv.relname ?? ''),
    construct,
    steps: [
      `${construct} needs every shard's rows together: each shard returns the rows of ${rv.relname} that pass the WHERE clause (at most --max-rows in all)`,
      `PostgreSQL runs the query itself on ${server} (read only) over the pulled-up rows, cast back to their types and collations, as a CTE standing for ${rv.relname}`,
    ],
  };
}

function usesParams(n: Node | SelectStmt): boolean {
  let found = false;
  walk(n, (x) => {
    if (kind(x) === 'ParamRef') found = true;
  });
  return found;
}
