import type { SelectStmt } from '@pgsql/types';
import { ExitCode, ShardctlError } from '../errors.js';
import { collectAggregates } from './plan-aggregates.js';
import { limitOf, refuse, targetsOf, WRITE_HINT, type Target } from './plan-common.js';
import { expandStars, selectsStar } from './plan-star.js';
import { planGrouping } from './plan-grouping.js';
import { planConcat, planOrdered, type MultiShard } from './plan-rows.js';
import { planPullup, pullable } from './plan-pullup.js';
import { colocate, refuseColocatedOuter, refuseKeptReference, type Colocation } from './plan-colocated.js';
import type { PlanQueryInput, QueryPlan, SinglePlan } from './plan-types.js';
import { relations, route, type Rel } from './route-query.js';
import { as, clone, kind, parseSql, walk, type Node } from './sql-ast.js';

export type { MergeKind, QueryPlan, PlanQueryInput, SinglePlan, ConcatPlan, FinalPlan, SortKey } from './plan-types.js';
export { functionNames } from './plan-aggregates.js';

/** Parses the one statement of a query; a syntax error carries PostgreSQL's cursor position. */
function parseOne(sql: string): Node {
  let stmts: Node[];
  try {
    stmts = parseSql(sql);
  } catch (e) {
    const err = e as { message: string; sqlDetails?: { cursorPosition?: number } };
    const pos = err.sqlDetails?.cursorPosition;
    throw new ShardctlError(`syntax error: ${err.message}${pos !== undefined ? ` at position ${pos + 1}` : ''}`, {
      code: 'SYNTAX',
      exitCode: ExitCode.Usage,
      ...(pos !== undefined ? { pg: { position: pos + 1 } } : {}),
    });
  }
  if (stmts.length !== 1) throw refuse(`${stmts.length} statements`, 'in one query: send one SELECT');
  return stmts[0]!;
}

/** The SELECT of a statement, or a refusal of anything that writes or locks. */
function readOnlySelect(stmt: Node): SelectStmt {
  const sel = as(stmt, 'SelectStmt');
  if (!sel)
    throw refuse(
      `${kind(stmt)?.replace(/Stmt$/, '').toUpperCase() ?? 'statement'}`,
      'is not a SELECT: shardctl query only reads (nothing was sent)',
      WRITE_HINT,
    );
  if (sel.intoClause) throw refuse('SELECT INTO', 'writes a table (nothing was sent)', WRITE_HINT);
  let writes = false;
  walk(stmt, (n) => {
    if (['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt'].includes(kind(n) ?? '')) writes = true;
  });
  if (writes) throw refuse('a data-modifying statement inside the query', 'writes (nothing was sent)', WRITE_HINT);
  if (sel.lockingClause) throw refuse('FOR UPDATE/SHARE', 'locks rows: shardctl query runs read-only', WRITE_HINT);
  return sel;
}

/**
 * Plans a query over the shards, or refuses it with the construct named. Single-shard queries (by
 * --tenant, --shard with one shard, or a WHERE that pins the shard key to one shard) run unchanged.
 * Multi-shard queries run a rewritten SQL on each shard and combine the rows with a final query that
 * PostgreSQL itself runs over them (types, NULL order, collation and numeric arithmetic stay exact).
 * A pure function of its input: what the shards' catalogs say comes in as `input.aggregates`.
 *
 * @example
 * const plan = planQuery({ sql: 'SELECT count(*) FROM users', params: [], map, locate });
 * plan.shardSql // 'SELECT count(*) AS __c0 FROM users'
 */
export function planQuery(input: PlanQueryInput): QueryPlan {
  const stmt = parseOne(input.sql);
  const sel = readOnlySelect(stmt);
  const all = input.map.shards.map((s) => s.name);
  if (input.tenant !== undefined) {
    if (input.ruleUnproven)
      throw refuse(
        `--tenant ${input.tenant}`,
        "on a fleet whose placement rule the catalog has not recorded: the map's rule may not be where the rows are",
        'record the rule with `shardctl adopt` (or `shardctl rebalance --freeze`), or name the shard with --shard NAME',
      );
    const s = input.locate(input.tenant);
    return single(input, [s], `--tenant ${input.tenant} lives on ${s}`);
  }
  if (input.shards) {
    for (const s of input.shards)
      if (!all.includes(s))
        throw new ShardctlError(`unknown shard "${s}"; the map has ${all.join(', ')}`, {
          code: 'UNKNOWN_SHARD',
          exitCode: ExitCode.Usage,
        });
    if (input.shards.length === 1) return single(input, input.shards, `--shard ${input.shards[0]}`);
  }
  const candidates = input.shards ? all.filter((s) => input.shards!.includes(s)) : all;
  if (sel.op && sel.op !== 'SETOP_NONE') return planSetOp(sel, input, candidates);
  const rels = relations(sel, input.map);
  // Sub-queries, CTEs, LATERAL and windows tied by the shard key run whole on every shard.
  const colo = colocate(sel, input);
  const routed = colo?.routing ?? route(sel, rels, input);
  const multi = (shards: string[], routing: string) => multiShard(sel, input, shards, routing, rels, colo);
  switch (routed.kind) {
    case 'reference':
      return single(input, [candidates[0]!], 'only reference tables: any shard answers');
    case 'unsplittable':
      if (routed.construct === 'join not on the shard key' && pullable(sel, input.map.reference))
        return planPullup(sel, input, candidates, 'rows on different shards must meet: every shard', routed.construct);
      throw routed.construct === 'join not on the shard key'
        ? refuse(routed.construct, 'cannot be answered shard by shard: rows on different shards would have to meet')
        : refuse(routed.construct, 'across shards cannot be pushed down');
    case 'scatter':
      return multi(candidates, 'the shard key is not pinned: every shard');
    case 'pinned': {
      // An unrecorded rule may not be where the rows are (the map grew since they were placed): every
      // shard is asked, which stays exact because a tenant's rows are only on the shard that holds them.
      if (input.ruleUnproven && routed.unconnected && pullable(sel, input.map.reference))
        return planPullup(sel, input, candidates, UNPROVEN, 'join not on the shard key');
      if (input.ruleUnproven && routed.unconnected)
        throw refuse('join not on the shard key', `cannot be answered shard by shard: ${UNPROVEN}`);
      if (input.ruleUnproven) return multi(candidates, `${routed.why} by the map; ${UNPROVEN}`);
      const targets = candidates.filter((s) => routed.shards.includes(s));
      if (targets.length === 1) return single(input, targets, routed.why);
      if (targets.length > 1) return multi(targets, routed.why);
      const empty = single(input, [candidates[0]!], routed.why);
      return { ...empty, shards: [], steps: ['no shard owns the tenants asked for: empty result'] };
    }
  }
}

/** A set operation: on one shard when every branch pins the same one, else pulled up (or refused). */
function planSetOp(sel: SelectStmt, input: PlanQueryInput, candidates: string[]): QueryPlan {
  const r = input.ruleUnproven ? undefined : routeSetOp(sel, input);
  if (r && r.length === 1) return single(input, r, 'every branch pins the shard key to one shard');
  const construct = `set operation ${sel.op!.replace('SETOP_', '')}${sel.all ? ' ALL' : ''}`;
  if (pullable(sel, input.map.reference))
    return planPullup(sel, input, candidates, 'the branches span shards: every shard', construct);
  throw refuse(`set operation ${sel.op!.replace('SETOP_', '')}`, 'across shards cannot be merged exactly');
}

/** Why a pinned query is asked of every shard on a fleet whose rule is not recorded. */
const UNPROVEN =
  'the placement rule is not recorded in the catalog (`shardctl adopt` records it), so every shard is asked';

function single(input: PlanQueryInput, shards: string[], why: string): SinglePlan {
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

/** The one shard every branch of a set operation is pinned to, if there is one. */
function routeSetOp(sel: SelectStmt, input: PlanQueryInput): string[] | undefined {
  const branches: SelectStmt[] = [];
  const collect = (s: SelectStmt) => {
    if (s.op && s.op !== 'SETOP_NONE') {
      if (s.larg) collect(s.larg);
      if (s.rarg) collect(s.rarg);
    } else branches.push(s);
  };
  collect(sel);
  let shards: Set<string> | undefined;
  for (const b of branches) {
    const r = route(b, relations(b, input.map), input);
    if (r.kind !== 'pinned') return undefined;
    shards = new Set(shards ? [...shards].filter((s) => r.shards.includes(s)) : r.shards);
  }
  return shards ? [...shards] : undefined;
}

/** Constructs no multi-shard plan can merge exactly, refused by name (those a co-located query pushes down aside). */
function refuseUnmergeable(s: SelectStmt, rels: Rel[], colocated: boolean): void {
  if (!colocated) refuseNested(s, rels);
  const distinctOn = s.distinctClause?.[0];
  if (distinctOn && Object.keys(distinctOn).length > 0)
    throw refuse('DISTINCT ON', 'across shards cannot be merged exactly');
  if ((s.groupClause ?? []).some((g) => kind(g) === 'GroupingSet'))
    throw refuse('GROUPING SETS/ROLLUP/CUBE', 'across shards cannot be merged exactly');
}

function refuseNested(s: SelectStmt, rels: Rel[]): void {
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
}

/** A query every one of several shards answers in part: plain rows, ordered rows, or groups. */
function multiShard(
  sel: SelectStmt,
  input: PlanQueryInput,
  shards: string[],
  routing: string,
  rels: Rel[],
  colo: Colocation | undefined,
): QueryPlan {
  try {
    const plan = merged(sel, input, shards, routing, rels, colo);
    return colo
      ? { ...plan, steps: [`push down: the query runs whole on every shard (${colo.why})`, ...plan.steps] }
      : plan;
  } catch (e) {
    // What no merge of partial results answers exactly, PostgreSQL answers over the pulled-up rows.
    const construct = ((e as ShardctlError).details as { construct?: unknown } | undefined)?.construct;
    if ((e as ShardctlError).code !== 'REFUSED' || typeof construct !== 'string' || !pullable(sel, input.map.reference))
      throw e;
    return planPullup(sel, input, shards, routing, construct);
  }
}

/** A multi-shard plan that merges the shards' partial results: concat, ordered, or grouped. */
function merged(
  sel: SelectStmt,
  input: PlanQueryInput,
  shards: string[],
  routing: string,
  rels: Rel[],
  colo: Colocation | undefined,
): QueryPlan {
  const s = clone(sel);
  refuseUnmergeable(s, rels, !!colo);
  if (!colo) refuseKeptReference(s, input.map);
  const offset = limitOf(s.limitOffset, input.params, 'OFFSET');
  const limit = limitOf(s.limitCount, input.params, 'LIMIT');
  if (s.limitOption === 'LIMIT_OPTION_WITH_TIES')
    throw refuse('FETCH ... WITH TIES', 'across shards cannot be merged exactly');
  const hasStar = selectsStar(s);
  const aggs: Node[] = [];
  const aggregates = input.aggregates ?? new Set<string>();
  for (const part of [s.targetList, s.havingClause, s.sortClause]) collectAggregates(part, aggregates, aggs);
  const grouped =
    aggs.length > 0 ||
    (s.groupClause ?? []).length > 0 ||
    !!s.havingClause ||
    (Array.isArray(s.distinctClause) && s.distinctClause.length > 0);
  if (colo) refuseColocatedOuter(s, grouped, hasStar, colo);
  if (!grouped && !s.sortClause?.length)
    return planConcat({ s, input, shards, routing, targets: targetsOf(s), offset, limit });
  // Sort and group keys travel as extra columns after the select list: a star must be spelled out first.
  const targets = hasStar ? starTargets(s, input, grouped) : targetsOf(s);
  const m: MultiShard = { s, input, shards, routing, targets, offset, limit };
  return grouped ? planGrouping(m, aggs) : planOrdered(m);
}

/** The select list with `*` and `t.*` expanded from the catalog's columns, or the refusal without them. */
function starTargets(s: SelectStmt, input: PlanQueryInput, grouped: boolean): Target[] {
  if (!input.star)
    throw grouped
      ? refuse('SELECT * with GROUP BY or aggregates', 'across shards: name the columns')
      : refuse('SELECT * with ORDER BY', 'across shards: name the columns so the sort keys can travel with them');
  if (input.star.failure) throw input.star.failure;
  return expandStars(s, targetsOf(s), input.star.columns, input.star.shard);
}
