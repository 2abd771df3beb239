import type { SelectStmt, SortBy } from '@pgsql/types';
import { shardColumn } from './merge-ops.js';
import {
  collationOf,
  outputName,
  refuse,
  refuseRowValued,
  resolveSortExpr,
  resTarget,
  shardQuery,
  type Target,
} from './plan-common.js';
import type { ConcatPlan, FinalPlan, PlanQueryInput, SortKey } from './plan-types.js';
import { as, clone, columnRef, intConst, type Node } from './sql-ast.js';

/** What every multi-shard planner works on: the statement copy being rewritten for the shards, and more. */
export interface MultiShard {
  /** The SELECT to rewrite into the shard query (a copy: planners may change it). */
  s: SelectStmt;
  input: PlanQueryInput;
  shards: string[];
  routing: string;
  targets: Target[];
  offset: bigint | undefined;
  limit: bigint | undefined;
}

/**
 * Plain rows without ORDER BY: every shard answers (cut at offset+limit); the client appends the
 * rows and applies the window.
 *
 * @example
 * planConcat(m).shardSql // 'SELECT id FROM users LIMIT 15'
 */
export function planConcat(m: MultiShard): ConcatPlan {
  const { s, offset, limit } = m;
  if (limit !== undefined || offset !== undefined) {
    s.limitCount = limit !== undefined ? intConst(Number((offset ?? 0n) + limit)) : undefined;
    s.limitOffset = undefined;
  }
  const steps = [
    `every shard returns its rows${limit !== undefined ? ` (LIMIT ${(offset ?? 0n) + limit})` : ''}`,
    `the client concatenates them${offset ? `, skips ${offset}` : ''}${limit !== undefined ? `, keeps ${limit}` : ''} (no ORDER BY: any order is a correct order)`,
  ];
  return {
    kind: 'concat',
    shards: m.shards,
    routing: m.routing,
    ...shardQuery({ SelectStmt: s }, m.input.params),
    visible: -1,
    ...(offset !== undefined ? { offset } : {}),
    ...(limit !== undefined ? { limit } : {}),
    steps,
  };
}

/** The hidden sort-key columns of an ordered query, appended to the shard select list. */
interface SortColumns {
  shardSort: Node[];
  finalSort: Node[];
  collations: Record<number, number>;
  sortKeys: SortKey[];
}

function sortColumns(s: SelectStmt, targets: Target[], shardTargets: Node[]): SortColumns {
  const out: SortColumns = { shardSort: [], finalSort: [], collations: {}, sortKeys: [] };
  for (const item of s.sortClause ?? []) {
    const sb = as(item, 'SortBy') as SortBy;
    const expr = resolveSortExpr(sb.node!, targets);
    refuseRowValued(expr, s);
    const idx = shardTargets.length;
    shardTargets.push(resTarget(expr, `__c${idx}`), resTarget(collationOf(expr), `__c${idx + 1}`));
    out.collations[idx] = idx + 1;
    if (sb.useOp) throw refuse('ORDER BY ... USING', 'across shards cannot be merged exactly');
    const desc = sb.sortby_dir === 'SORTBY_DESC';
    const nullsFirst = sb.sortby_nulls === 'SORTBY_NULLS_FIRST' || (sb.sortby_nulls !== 'SORTBY_NULLS_LAST' && desc);
    out.sortKeys.push({ col: idx, desc, nullsFirst });
    // Shards sort by the hidden key columns: output names are what ORDER BY may use after the rename.
    out.shardSort.push({ SortBy: { ...sb, node: columnRef(`__c${idx}`) } });
    out.finalSort.push({ SortBy: { ...sb, node: shardColumn(idx) } });
  }
  return out;
}

function orderedSteps(offset: bigint | undefined, limit: bigint | undefined): string[] {
  if (limit !== undefined)
    return [
      `every shard sorts its rows and returns the first ${(offset ?? 0n) + limit}, with the sort keys and their collation as hidden columns`,
      'PostgreSQL sorts all of them again in a final query over the returned rows (same types, NULL order and collation), then applies LIMIT/OFFSET; hidden columns are dropped',
    ];
  return [
    'every shard sorts its rows and streams them through a cursor, with the sort keys and their collation as hidden columns',
    `the client merges the sorted streams (k-way), comparing keys as PostgreSQL does (types, NULL order; text only under byte-order collations, else refused)${offset ? `, skips ${offset}` : ''}; hidden columns are dropped`,
  ];
}

/**
 * Ordered rows: each shard sorts and cuts at offset+limit, with the sort keys and their collations as
 * hidden columns; without LIMIT the client merges the sorted streams, with one a final query sorts again.
 *
 * @example
 * planOrdered(m).shardSql // 'SELECT id AS __c0, email AS __c1, pg_collation_for(email::text) AS __c2 ...'
 */
export function planOrdered(m: MultiShard): FinalPlan {
  const { s, targets, offset, limit } = m;
  // With LIMIT the final query reads the select list back from text; a streamed row passes through as it is.
  if (limit !== undefined) for (const t of targets) refuseRowValued(t.val, s);
  const shardTargets = targets.map((t, i) => resTarget(t.val, `__c${i}`));
  const keys = sortColumns(s, targets, shardTargets);
  s.targetList = shardTargets;
  s.sortClause = keys.shardSort.map((x) => clone(x));
  if (limit !== undefined) s.limitCount = intConst(Number((offset ?? 0n) + limit));
  s.limitOffset = undefined;
  const columns = targets.map((t) => t.name ?? outputName(t.val));
  return {
    ...finalPlanBase(m, columns, {
      targetList: columns.map((name, i) => resTarget(shardColumn(i), name)),
      sortClause: keys.finalSort,
    }),
    collations: keys.collations,
    ...(limit === undefined ? { sortKeys: keys.sortKeys } : {}),
    ...(offset !== undefined ? { offset } : {}),
    steps: orderedSteps(offset, limit),
  };
}

/**
 * What every final plan shares: the shards it asks, the SQL they get, and the final query with its output
 * names. LIMIT and OFFSET are the user's own, applied once by the final query as one server would.
 *
 * @example
 * return { ...finalPlanBase(m, columns, { targetList, sortClause }), collations, steps };
 */
export function finalPlanBase(
  m: MultiShard,
  columns: string[],
  final: Omit<SelectStmt, 'limitCount' | 'limitOption' | 'limitOffset' | 'op'>,
): Pick<FinalPlan, 'kind' | 'shards' | 'routing' | 'shardSql' | 'params' | 'visible' | 'final' | 'columns'> {
  return {
    kind: 'final',
    shards: m.shards,
    routing: m.routing,
    ...shardQuery({ SelectStmt: m.s }, m.input.params),
    visible: m.targets.length,
    final: {
      ...final,
      ...(m.limit !== undefined ? { limitCount: intConst(Number(m.limit)), limitOption: 'LIMIT_OPTION_COUNT' } : {}),
      ...(m.offset !== undefined ? { limitOffset: intConst(Number(m.offset)) } : {}),
      op: 'SETOP_NONE',
    },
    columns,
  };
}
