/* eslint-disable @typescript-eslint/no-explicit-any */
import type { ShardMap } from '../config/shard-map.js';
import { ExitCode, ShardctlError } from '../errors.js';
import { constValue, relations, route, type Rel } from './route-query.js';
import {
  as,
  clone,
  columnName,
  columnRef,
  deparse,
  funcCall,
  funcName,
  intConst,
  kind,
  parseSql,
  rewrite,
  shape,
  typeCast,
  walk,
  type Node,
} from './sql-ast.js';

/** How shard results become the answer. */
export type MergeKind = 'single' | 'concat' | 'final';

/** A query plan: what each shard runs and how the results merge. */
export interface QueryPlan {
  kind: MergeKind;
  /** Shards asked, in map order. */
  shards: string[];
  /** Why these shards (routing). */
  routing: string;
  /** SQL sent to every shard. */
  shardSql: string;
  params: unknown[];
  /** Columns of the shard result shown to the user (the rest are hidden helpers). */
  visible: number;
  /** concat: window applied in the client. */
  offset?: bigint;
  limit?: bigint;
  /** final: the combine query over all shard rows, with `__c<i>` standing for shard column i. */
  final?: Node;
  /** Shard-result columns whose collation (pg_collation_for) decides how the final query orders them: column index -> collation column index. */
  collations?: Record<number, number>;
  /** Plain ordered queries: the sort keys (shard column, direction, NULL order) for a streaming merge. */
  sortKeys?: { col: number; desc: boolean; nullsFirst: boolean }[];
  /** Merge steps, for --explain. */
  steps: string[];
}

/** Inputs of {@link planQuery}. */
export interface PlanQueryInput {
  sql: string;
  params: unknown[];
  map: ShardMap;
  /** Shard of a tenant key (directory applied). */
  locate: (tenant: string) => string;
  /** Only these shards (--shard). */
  shards?: string[];
  /** Only this tenant's shard (--tenant). */
  tenant?: string;
}

function refuse(construct: string, why: string): ShardctlError {
  return new ShardctlError(`refused: ${construct} ${why}`, {
    code: 'REFUSED',
    exitCode: ExitCode.Refused,
    hint: 'answer it on one shard with --tenant ID or --shard NAME, or rewrite the query',
    details: { construct },
  });
}

const MERGEABLE_AGGS = new Set(['count', 'sum', 'min', 'max', 'avg', 'bool_and', 'bool_or', 'every']);

/**
 * Plans a query over the shards, or refuses it with the construct named. Single-shard queries (by
 * --tenant, --shard with one shard, or a WHERE that pins the shard key to one shard) run unchanged.
 * Multi-shard queries run a rewritten SQL on each shard and combine the rows with a final query that
 * PostgreSQL itself runs over them (types, NULL order, collation and numeric arithmetic stay exact).
 *
 * @example
 * const plan = planQuery({ sql: 'SELECT count(*) FROM users', params: [], map, locate });
 * plan.shardSql // 'SELECT count(*) AS "__p0" FROM users'
 */
export function planQuery(input: PlanQueryInput): QueryPlan {
  const { map } = input;
  let stmts: Node[];
  try {
    stmts = parseSql(input.sql);
  } catch (e) {
    const err = e as { message: string; sqlDetails?: { cursorPosition?: number } };
    throw new ShardctlError(
      `syntax error: ${err.message}${err.sqlDetails?.cursorPosition !== undefined ? ` at position ${err.sqlDetails.cursorPosition + 1}` : ''}`,
      {
        code: 'SYNTAX',
        exitCode: ExitCode.Usage,
        ...(err.sqlDetails?.cursorPosition !== undefined
          ? { pg: { position: err.sqlDetails.cursorPosition + 1 } }
          : {}),
      },
    );
  }
  if (stmts.length !== 1) throw refuse(`${stmts.length} statements`, 'in one query: send one SELECT');
  const stmt = stmts[0];
  const sel = as(stmt, 'SelectStmt');
  if (!sel)
    throw refuse(
      `${kind(stmt)?.replace(/Stmt$/, '').toUpperCase() ?? 'statement'}`,
      'is not a SELECT: shardctl query only reads (nothing was sent)',
    );
  if (sel.intoClause) throw refuse('SELECT INTO', 'writes a table (nothing was sent)');
  let writes = false;
  walk(stmt, (n) => {
    if (['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt'].includes(kind(n) ?? '')) writes = true;
  });
  if (writes) throw refuse('a data-modifying statement inside the query', 'writes (nothing was sent)');
  if (sel.lockingClause) throw refuse('FOR UPDATE/SHARE', 'locks rows: shardctl query runs read-only');

  const all = map.shards.map((s) => s.name);
  // Explicit targets first.
  if (input.tenant !== undefined) {
    const s = input.locate(input.tenant);
    return single(input, [s], `--tenant ${input.tenant} lives on ${s}`);
  }
  if (input.shards) {
    const known = new Set(all);
    for (const s of input.shards)
      if (!known.has(s))
        throw new ShardctlError(`unknown shard "${s}"; the map has ${all.join(', ')}`, {
          code: 'UNKNOWN_SHARD',
          exitCode: ExitCode.Usage,
        });
    if (input.shards.length === 1) return single(input, input.shards, `--shard ${input.shards[0]}`);
  }
  const candidates = input.shards ? all.filter((s) => input.shards!.includes(s)) : all;

  if (sel.op && sel.op !== 'SETOP_NONE') {
    const r = routeSetOp(sel, input);
    if (r && r.length === 1) return single(input, r, 'every branch pins the shard key to one shard');
    throw refuse(`set operation ${sel.op.replace('SETOP_', '')}`, 'across shards cannot be merged exactly');
  }
  const rels = relations(sel, map);
  const routed = route(sel, rels, input);
  if (routed.reference) return single(input, [candidates[0]!], 'only reference tables: any shard answers');
  if (!routed.shards && routed.why === 'join not on the shard key')
    throw refuse(
      'join not on the shard key',
      'cannot be answered shard by shard: rows on different shards would have to meet',
    );
  if (!routed.shards && routed.why === 'subquery in FROM')
    throw refuse('sub-query in FROM', 'across shards cannot be pushed down');
  if (routed.shards) {
    const targets = candidates.filter((s) => routed.shards!.includes(s));
    if (targets.length === 1) return single(input, targets, routed.why);
    if (targets.length === 0)
      return {
        ...single(input, [candidates[0]!], routed.why),
        shards: [],
        steps: ['no shard owns the tenants asked for: empty result'],
      };
    return multi(sel, input, targets, routed.why, rels);
  }
  return multi(sel, input, candidates, 'the shard key is not pinned: every shard', rels);
}

function single(input: PlanQueryInput, shards: string[], why: string): QueryPlan {
  return {
    kind: 'single',
    shards,
    routing: why,
    shardSql: input.sql,
    params: input.params,
    visible: -1,
    steps: [`run unchanged on ${shards.join(', ')}`],
  };
}

function routeSetOp(sel: any, input: PlanQueryInput): string[] | undefined {
  const branches: any[] = [];
  const collect = (s: any) => {
    if (s.op && s.op !== 'SETOP_NONE') {
      collect(s.larg);
      collect(s.rarg);
    } else branches.push(s);
  };
  collect(sel);
  let shards: Set<string> | undefined;
  for (const b of branches) {
    const r = route(b, relations(b, input.map), input);
    if (!r.shards) return undefined;
    shards = new Set(shards ? [...shards].filter((s) => r.shards!.includes(s)) : r.shards);
  }
  return shards ? [...shards] : undefined;
}

function limitOf(n: Node, params: unknown[], what: string): bigint | undefined {
  if (!n) return undefined;
  if (as(n, 'A_Const')?.isnull) return undefined;
  const v = constValue(n, params);
  if (v === undefined || !/^\d+$/.test(v))
    throw refuse(`${what} with an expression`, 'cannot be split across shards: use a constant');
  return BigInt(v);
}

function multi(sel: any, input: PlanQueryInput, shards: string[], routing: string, rels: Rel[]): QueryPlan {
  const s = clone(sel);
  const steps: string[] = [];
  if (s.withClause) throw refuse('WITH (CTE)', 'across shards cannot be pushed down');
  let hasWindow = false;
  let hasSubLink = false;
  walk(s, (n) => {
    if (as(n, 'FuncCall')?.over) hasWindow = true;
    if (as(n, 'SubLink')) hasSubLink = true;
  });
  if (hasWindow) throw refuse('window function', 'across shards cannot be merged exactly');
  if (hasSubLink) throw refuse('sub-query', 'across shards cannot be pushed down');
  if (rels.some((r) => r.name === '(subquery)'))
    throw refuse('sub-query in FROM', 'across shards cannot be pushed down');
  if (routing.startsWith('join not on the shard key'))
    throw refuse('join not on the shard key', 'cannot be answered shard by shard');
  if (
    Array.isArray(s.distinctClause) &&
    s.distinctClause.length > 0 &&
    Object.keys(s.distinctClause[0] ?? {}).length > 0
  )
    throw refuse('DISTINCT ON', 'across shards cannot be merged exactly');
  if ((s.groupClause ?? []).some((g: Node) => ['GroupingSet'].includes(kind(g) ?? '')))
    throw refuse('GROUPING SETS/ROLLUP/CUBE', 'across shards cannot be merged exactly');
  const offset = limitOf(s.limitOffset, input.params, 'OFFSET');
  const limit = limitOf(s.limitCount, input.params, 'LIMIT');
  if (s.limitOption === 'LIMIT_OPTION_WITH_TIES')
    throw refuse('FETCH ... WITH TIES', 'across shards cannot be merged exactly');

  // Targets, with * kept only for plain queries.
  const targets: { name: string | undefined; val: Node }[] = (s.targetList ?? []).map((t: any) => ({
    name: t.ResTarget.name,
    val: t.ResTarget.val,
  }));
  const hasStar = targets.some((t) => as(t.val, 'ColumnRef')?.fields?.some((f: Node) => kind(f) === 'A_Star'));
  const aggs: any[] = [];
  walk(s.targetList, (n) => collectAgg(n, aggs));
  walk(s.havingClause, (n) => collectAgg(n, aggs));
  walk(s.sortClause, (n) => collectAgg(n, aggs));
  const grouped =
    aggs.length > 0 ||
    (s.groupClause ?? []).length > 0 ||
    s.havingClause ||
    (Array.isArray(s.distinctClause) && s.distinctClause.length > 0);

  if (!grouped) {
    if (!s.sortClause?.length) {
      // Plain rows: every shard answers; the window is applied in the client.
      if (limit !== undefined || offset !== undefined) {
        s.limitCount = limit !== undefined ? intConst(Number((offset ?? 0n) + limit)) : undefined;
        s.limitOffset = undefined;
      }
      steps.push(
        `every shard returns its rows${limit !== undefined ? ` (LIMIT ${(offset ?? 0n) + limit})` : ''}`,
        `the client concatenates them${offset ? `, skips ${offset}` : ''}${limit !== undefined ? `, keeps ${limit}` : ''} (no ORDER BY: any order is a correct order)`,
      );
      return {
        kind: 'concat',
        shards,
        routing,
        ...shardQuery({ SelectStmt: s }, input.params),
        visible: -1,
        ...(offset !== undefined ? { offset } : {}),
        ...(limit !== undefined ? { limit } : {}),
        steps,
      };
    }
    if (hasStar)
      throw refuse('SELECT * with ORDER BY', 'across shards: name the columns so the sort keys can travel with them');
    // Ordered rows: each shard sorts and cuts at offset+limit; the final query sorts all of them.
    const visible = targets.length;
    const shardTargets = targets.map((t, i) => resTarget(t.val, `__c${i}`));
    const finalSort: Node[] = [];
    const collations: Record<number, number> = {};
    const sortKeys: { col: number; desc: boolean; nullsFirst: boolean }[] = [];
    s.sortClause.forEach((sb: any) => {
      const expr = resolveSortExpr(sb.SortBy.node, targets);
      const idx = shardTargets.length;
      shardTargets.push(resTarget(expr, `__c${idx}`));
      shardTargets.push(resTarget(collationOf(expr), `__c${idx + 1}`));
      collations[idx] = idx + 1;
      if (sb.SortBy.useOp) throw refuse('ORDER BY ... USING', 'across shards cannot be merged exactly');
      const desc = sb.SortBy.sortby_dir === 'SORTBY_DESC';
      sortKeys.push({
        col: idx,
        desc,
        nullsFirst:
          sb.SortBy.sortby_nulls === 'SORTBY_NULLS_FIRST' || (sb.SortBy.sortby_nulls !== 'SORTBY_NULLS_LAST' && desc),
      });
      finalSort.push({ SortBy: { ...sb.SortBy, node: columnRef(`__c${idx}`) } });
    });
    s.targetList = shardTargets;
    // Shards sort by the hidden key columns: output names are what ORDER BY may use after the rename.
    s.sortClause = finalSort.map((x) => clone(x));
    if (limit !== undefined) s.limitCount = intConst(Number((offset ?? 0n) + limit));
    s.limitOffset = undefined;
    const final = {
      SelectStmt: {
        targetList: targets.map((t, i) => resTarget(columnRef(`__c${i}`), t.name ?? outputName(t.val, i))),
        sortClause: finalSort,
        ...(limit !== undefined ? { limitCount: intConst(Number(limit)), limitOption: 'LIMIT_OPTION_COUNT' } : {}),
        ...(offset !== undefined ? { limitOffset: intConst(Number(offset)) } : {}),
        op: 'SETOP_NONE',
      },
    };
    if (limit !== undefined) {
      steps.push(
        `every shard sorts its rows and returns the first ${(offset ?? 0n) + limit}, with the sort keys and their collation as hidden columns`,
        'PostgreSQL sorts all of them again in a final query over the returned rows (same types, NULL order and collation), then applies LIMIT/OFFSET; hidden columns are dropped',
      );
    } else {
      steps.push(
        'every shard sorts its rows and streams them through a cursor, with the sort keys and their collation as hidden columns',
        `the client merges the sorted streams (k-way), comparing keys as PostgreSQL does (types, NULL order; text only under byte-order collations, else refused)${offset ? `, skips ${offset}` : ''}; hidden columns are dropped`,
      );
    }
    return {
      kind: 'final',
      shards,
      routing,
      ...shardQuery({ SelectStmt: s }, input.params),
      visible,
      final,
      collations,
      ...(limit === undefined ? { sortKeys } : {}),
      ...(offset !== undefined ? { offset } : {}),
      steps,
    };
  }
  if (hasStar) throw refuse('SELECT * with GROUP BY or aggregates', 'across shards: name the columns');
  return grouping(s, input, shards, routing, targets, aggs, offset, limit, steps);
}

/** The collation of an expression (through a text cast: pg_collation_for raises on non-collatable types). */
function collationOf(expr: Node): Node {
  return funcCall('pg_collation_for', [typeCast(clone(expr), 'text')]);
}

/**
 * Deparses a shard query and keeps only the parameters it still uses, renumbered (LIMIT $2 turned into
 * a constant leaves $2 unused, and PostgreSQL cannot type an unused parameter).
 */
function shardQuery(stmt: Node, params: unknown[]): { shardSql: string; params: unknown[] } {
  const used = new Set<number>();
  walk(stmt, (n) => {
    const p = as(n, 'ParamRef');
    if (p) used.add(p.number);
  });
  const order = [...used].sort((a, b) => a - b);
  const renumber = new Map(order.map((n, i) => [n, i + 1]));
  const out = rewrite(stmt, (n) =>
    as(n, 'ParamRef')
      ? { ParamRef: { ...as(n, 'ParamRef'), number: renumber.get(as(n, 'ParamRef').number) } }
      : undefined,
  );
  return { shardSql: deparse(out), params: order.map((n) => params[n - 1]) };
}

function resTarget(val: Node, name: string): Node {
  return { ResTarget: { name, val } };
}

function outputName(val: Node, i: number): string {
  const c = columnName(val);
  if (c) return c;
  const f = as(val, 'FuncCall');
  if (f) return funcName(f);
  return i >= 0 ? '?column?' : '?column?';
}

let aggregateNames: Set<string> = new Set();

function collectAgg(n: Node, out: any[]): 'skip' | void {
  const f = as(n, 'FuncCall');
  if (!f) return;
  const name = funcName(f);
  if (!MERGEABLE_AGGS.has(name)) {
    // Any other aggregate (built in or user defined, as the shards' catalogs say) cannot be merged.
    if (AGG_NAMES.has(name) || aggregateNames.has(name) || f.agg_star || f.agg_order || f.agg_filter || f.agg_distinct)
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
}

const AGG_NAMES = new Set([
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

/** Function names used by a query (to ask the shards which of them are aggregates). */
export function functionNames(sql: string): string[] {
  const names = new Set<string>();
  for (const stmt of parseSql(sql))
    walk(stmt, (n) => {
      const f = as(n, 'FuncCall');
      if (f) names.add(funcName(f));
    });
  return [...names];
}

/** Tells the planner which function names are aggregates in the shards' catalogs. */
export function setAggregateNames(names: Iterable<string>): void {
  aggregateNames = new Set(names);
}

function resolveSortExpr(node: Node, targets: { name: string | undefined; val: Node }[]): Node {
  const c = as(node, 'A_Const');
  if (c?.ival !== undefined) {
    const t = targets[(c.ival.ival ?? 0) - 1];
    if (!t)
      throw new ShardctlError(`ORDER BY position ${c.ival.ival} is not in the select list`, {
        code: 'SYNTAX',
        exitCode: ExitCode.Usage,
      });
    return t.val;
  }
  const name = columnName(node);
  if (name && as(node, 'ColumnRef').fields.length === 1) {
    const t = targets.find((x) => x.name === name);
    if (t) return t.val;
  }
  return node;
}

/** Aggregates and GROUP BY: partial aggregates per shard, combined by a final GROUP BY in PostgreSQL. */
function grouping(
  s: any,
  input: PlanQueryInput,
  shards: string[],
  routing: string,
  targets: { name: string | undefined; val: Node }[],
  aggs: any[],
  offset: bigint | undefined,
  limit: bigint | undefined,
  steps: string[],
): QueryPlan {
  // Group expressions, resolved from positions and aliases.
  let groupExprs: Node[] = (s.groupClause ?? []).map((g: Node) => resolveSortExpr(g, targets));
  const distinct = Array.isArray(s.distinctClause) && s.distinctClause.length > 0;
  if (distinct && groupExprs.length === 0 && aggs.length === 0) groupExprs = targets.map((t) => t.val);
  const shardTargets: Node[] = [];
  const col = (val: Node) => {
    const i = shardTargets.length;
    shardTargets.push(resTarget(val, `__c${i}`));
    return i;
  };
  const groupCols = groupExprs.map((g) => col(g));
  const collations: Record<number, number> = {};
  for (const [k, g] of groupExprs.entries()) collations[groupCols[k]!] = col(collationOf(g));
  const distinctArgs: { shape: string; col: number }[] = [];
  const finalAgg = new Map<string, Node>();
  for (const a of aggs) {
    const key = shape(a);
    if (finalAgg.has(key)) continue;
    const f = as(a, 'FuncCall');
    const name = funcName(f);
    const partial = (fn: string, args: Node[], extra: Record<string, unknown> = {}) =>
      col({ FuncCall: { ...f, funcname: [{ String: { sval: fn } }], args, ...extra, agg_distinct: false } });
    const ref = (i: number) => columnRef(`__c${i}`);
    let fin: Node;
    if (f.agg_distinct) {
      // count(DISTINCT x): shards return their distinct x per group; the final query counts them.
      const arg = f.args[0];
      let d = distinctArgs.find((x) => x.shape === shape(arg) + shape(f.agg_filter ?? null));
      if (!d) {
        d = {
          shape: shape(arg) + shape(f.agg_filter ?? null),
          col: col(f.agg_filter ? { CaseExpr: { args: [{ CaseWhen: { expr: f.agg_filter, result: arg } }] } } : arg),
        };
        distinctArgs.push(d);
      }
      fin = funcCall('count', [ref(d.col)], { agg_distinct: true });
    } else if (name === 'count') {
      fin = typeCast(
        {
          CoalesceExpr: {
            args: [
              funcCall('sum', [ref(partial('count', f.args ?? [], f.agg_star ? { agg_star: true } : {}))]),
              intConst(0),
            ],
          },
        },
        'int8',
      );
    } else if (name === 'sum') {
      // sum(int2/int4) is bigint, sum(int8) numeric: the final sum keeps the partials' type.
      const p = partial('sum', f.args);
      fin = { __sum: p };
    } else if (name === 'avg') {
      const sumCol = partial('sum', f.args);
      const cnt = partial('count', f.args);
      fin = { __avg: [sumCol, cnt] };
    } else {
      const fn = name === 'every' ? 'bool_and' : name;
      const p = partial(fn, f.args);
      // min/max of text: the final min/max must compare under the column's collation, as the shards did.
      if (fn === 'min' || fn === 'max') collations[p] = col(collationOf((shardTargets[p] as any).ResTarget.val));
      fin = funcCall(fn, [ref(p)]);
    }
    finalAgg.set(key, fin);
  }
  // Shards group by the group expressions, plus distinct arguments, so rows stay few.
  const havingOrig = s.havingClause;
  const sortOrig: Node[] = s.sortClause ?? [];
  const shardGroup = [
    ...groupExprs.map(clone),
    ...distinctArgs.map((d) => clone((shardTargets[d.col] as any).ResTarget.val)),
  ];
  s.groupClause = shardGroup.length > 0 ? shardGroup : undefined;
  s.targetList = shardTargets;
  s.havingClause = undefined;
  s.sortClause = undefined;
  s.limitCount = undefined;
  s.limitOffset = undefined;
  s.limitOption = 'LIMIT_OPTION_DEFAULT';
  s.distinctClause = undefined;
  // Final expressions: aggregates replaced by their merge, group expressions by their column.
  const toFinal = (n: Node): Node =>
    rewrite(n, (x) => {
      if (as(x, 'FuncCall') && finalAgg.has(shape(x))) return clone(finalAgg.get(shape(x)));
      const gi = groupExprs.findIndex(
        (g) => shape(g) === shape(x) || (as(x, 'ColumnRef') && as(g, 'ColumnRef') && columnName(g) === columnName(x)),
      );
      if (gi >= 0 && !as(x, 'A_Const')) return columnRef(`__c${groupCols[gi]}`);
      if (as(x, 'ColumnRef')) {
        throw new ShardctlError(
          `column ${deparse(x)} must appear in the GROUP BY clause or be used in an aggregate function`,
          { code: 'SYNTAX', exitCode: ExitCode.Usage },
        );
      }
      return undefined;
    });
  const finalTargets = targets.map((t, i) => resTarget(toFinal(t.val), t.name ?? outputName(t.val, i)));
  const names = new Set(targets.map((t) => t.name).filter(Boolean));
  const finalSort = sortOrig.map((sb: any) => {
    const node = sb.SortBy.node;
    // Positions and output names mean the same in the final query, whose select list is the original's.
    const keep =
      as(node, 'A_Const')?.ival !== undefined ||
      (as(node, 'ColumnRef')?.fields.length === 1 && names.has(columnName(node)));
    return { SortBy: { ...sb.SortBy, node: keep ? node : toFinal(node) } };
  });
  const final: any = {
    SelectStmt: {
      targetList: finalTargets,
      ...(groupExprs.length > 0 ? { groupClause: groupCols.map((c) => columnRef(`__c${c}`)) } : {}),
      ...(havingOrig ? { havingClause: toFinal(havingOrig) } : {}),
      ...(finalSort.length ? { sortClause: finalSort } : {}),
      ...(distinct ? { distinctClause: [{}] } : {}),
      ...(limit !== undefined ? { limitCount: intConst(Number(limit)), limitOption: 'LIMIT_OPTION_COUNT' } : {}),
      ...(offset !== undefined ? { limitOffset: intConst(Number(offset)) } : {}),
      op: 'SETOP_NONE',
    },
  };
  return {
    kind: 'final',
    shards,
    routing,
    ...shardQuery({ SelectStmt: s }, input.params),
    visible: targets.length,
    final,
    collations,
    steps: [
      ...steps,
      `every shard groups its rows by ${groupExprs.length ? groupExprs.map((g) => deparse(g)).join(', ') : '(one group)'} and returns partial aggregates (avg as sum and count${distinctArgs.length ? ', count(DISTINCT) as the distinct values' : ''})`,
      'PostgreSQL combines the partials in a final query over the returned rows: GROUP BY again, sum of counts, sums, min/max of min/max, avg = sum / sum of counts (numeric, exact), then HAVING, ORDER BY, LIMIT/OFFSET',
    ],
  };
}
