/**
 * Pull-up: a construct that needs every shard's rows together (a window over all rows, DISTINCT ON,
 * string_agg, percentiles, GROUPING SETS, set operations across shards, joins not on the shard key, ...).
 * Each reference to a distributed table becomes a part: every shard returns the columns of that table
 * the query uses (projection push-down), filtered by the conjuncts that only concern that reference
 * (predicate push-down). PostgreSQL then runs the user's statement itself on one shard (read only), each
 * reference replaced by a CTE of its pulled-up rows cast back to their types and collations, so every
 * semantic is PostgreSQL's own.
 */
import type { SelectStmt } from '@pgsql/types';
import { refuse, shardQuery } from './plan-common.js';
import { relationKey, type RelationName } from './plan-star.js';
import type { PlanQueryInput, PullupPart, PullupPlan } from './plan-types.js';
import { as, clone, columnRef, conjuncts, deparse, funcName, kind, stringOf, walk, type Node } from './sql-ast.js';

/** Name of the CTE that stands for the first pulled-up reference in the final query (then `_2`, `_3`...). */
export const PULLED = '__shardctl_rows';

/** The column a part returns when the query uses none of its table's columns (`count(*)`). */
export const ROW_MARK = '__shardctl_row';

// Functions whose value differs per call: a conjunct calling one stays in the final query.
const VOLATILE = new Set(['random', 'nextval', 'setval', 'currval', 'clock_timestamp', 'timeofday', 'gen_random_uuid']);

/**
 * Whether the query can be pulled up: no CTE, sub-query or lock anywhere (those are planned elsewhere
 * or refused), no WITH TIES (the deparser drops it), and at least one distributed table.
 *
 * @example
 * pullable(as(parseSql('SELECT o.id FROM orders o JOIN tenants t ON t.name = o.customer')[0], 'SelectStmt')!, map) // true
 */
export function pullable(sel: SelectStmt, reference: readonly string[]): boolean {
  if (sel.limitOption === 'LIMIT_OPTION_WITH_TIES') return false;
  let nested = false;
  let distributed = false;
  walk(sel, (n, key) => {
    if (key === 'withClause' || key === 'lockingClause') nested = true;
    if (kind(n) === 'SubLink' || kind(n) === 'RangeSubselect') nested = true;
    const rv = as(n, 'RangeVar');
    if (rv && !isReference(rv, reference)) distributed = true;
  });
  return !nested && distributed;
}

function isReference(rv: { schemaname?: string; relname?: string }, reference: readonly string[]): boolean {
  const name = rv.relname ?? '';
  return reference.includes(name) || (!!rv.schemaname && reference.includes(`${rv.schemaname}.${name}`));
}

/** A distributed reference being pulled up, while its SELECT is rewritten. */
interface Pending {
  rv: Node;
  name: RelationName;
  alias: string;
  /** On the nullable side of an outer join: WHERE conjuncts may not be applied before the join. */
  nullable: boolean;
  pushed: Node[];
  cte: string;
  /** Columns the final query reads ('*': every one). */
  used: Set<string>;
}

/** The relations of one SELECT level, in FROM order (distributed ones as pending parts). */
interface Level {
  parts: Pending[];
  count: number;
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
  const pending: Pending[] = [];
  const final = clone(sel);
  pullSelect(final, input.map.reference, pending);
  if (input.params.length > 0 && usesParams(final))
    throw refuse(`${construct} with parameters outside WHERE`, 'across shards: write the values into the query');
  const parts = pending.map((p) => partOf(p, input));
  const server = shards[0]!;
  return {
    kind: 'pullup',
    shards,
    routing,
    shardSql: parts.map((p) => p.shardSql).join(';\n'),
    params: parts.length === 1 ? parts[0]!.params : [],
    visible: -1,
    final,
    parts,
    construct,
    steps: [
      ...parts.map(
        (p) =>
          `${construct} needs every shard's rows together: each shard returns ${p.columns ? `the columns ${p.columns.join(', ') || '(none)'}` : 'every column'} of ${p.relation}${p.pushed ? ` that pass ${p.pushed}` : ''} (pull-up; predicates and columns pushed down)`,
      ),
      `PostgreSQL runs the query itself on ${server} (read only) over the pulled-up rows, cast back to their types and collations, as ${parts.length === 1 ? `a CTE standing for ${parts[0]!.relation}` : 'CTEs standing for the tables'}: at most --max-rows rows in all go there`,
    ],
  };
}

/** Rewrites one SELECT (or set-operation tree) in place: distributed references become CTE names. */
function pullSelect(s: SelectStmt, reference: readonly string[], out: Pending[]): void {
  if (s.op && s.op !== 'SETOP_NONE') {
    pullSelect(s.larg!, reference, out);
    pullSelect(s.rarg!, reference, out);
    return;
  }
  const level: Level = { parts: [], count: 0 };
  if (s.fromClause) s.fromClause = s.fromClause.map((f) => pullFrom(f, false, level, reference, out));
  const kept = conjuncts(s.whereClause).filter((q) => {
    const target = level.parts.find((p) => !p.nullable && concerns(q, p, level));
    if (target) target.pushed.push(q);
    return !target;
  });
  s.whereClause = andOf(kept);
  noteUsed(s, level);
}

/** A FROM item with its distributed tables replaced; inner-join and nullable-side ON conjuncts pushed. */
function pullFrom(n: Node, nullable: boolean, level: Level, reference: readonly string[], out: Pending[]): Node {
  const rv = as(n, 'RangeVar');
  if (rv) {
    level.count++;
    if (isReference(rv, reference)) return n;
    const alias = rv.alias?.aliasname ?? rv.relname ?? '';
    const cte = out.length === 0 ? PULLED : `${PULLED}_${out.length + 1}`;
    const p: Pending = {
      rv: clone(n),
      name: { schema: rv.schemaname, name: rv.relname ?? '' },
      alias,
      nullable,
      pushed: [],
      cte,
      used: new Set(),
    };
    out.push(p);
    level.parts.push(p);
    return { RangeVar: { relname: cte, inh: true, relpersistence: 'p', alias: { aliasname: alias } } };
  }
  const j = as(n, 'JoinExpr');
  if (!j) {
    level.count++;
    return n;
  }
  const t = j.jointype;
  const before = level.parts.length;
  const larg = pullFrom(j.larg!, nullable || t === 'JOIN_RIGHT' || t === 'JOIN_FULL', level, reference, out);
  const middle = level.parts.length;
  const rarg = pullFrom(j.rarg!, nullable || t === 'JOIN_LEFT' || t === 'JOIN_FULL', level, reference, out);
  // An ON conjunct may filter an input before the join when that input's rows it rejects could never
  // appear in the result: either side of an inner join, the nullable side of an outer join.
  const sides =
    t === 'JOIN_INNER'
      ? level.parts.slice(before)
      : t === 'JOIN_LEFT'
        ? level.parts.slice(middle)
        : t === 'JOIN_RIGHT'
          ? level.parts.slice(before, middle)
          : [];
  let quals = j.quals;
  if (quals && sides.length > 0) {
    const kept = conjuncts(quals).filter((q) => {
      const target = sides.find((p) => concerns(q, p, { parts: sides, count: 2 }));
      if (target) target.pushed.push(q);
      return !target;
    });
    quals = andOf(kept) ?? { A_Const: { boolval: { boolval: true } } };
  }
  return { JoinExpr: { ...j, larg, rarg, ...(quals ? { quals } : {}) } };
}

/** Whether a conjunct reads only this reference's columns (and nothing volatile): it can run on the shards. */
function concerns(q: Node, p: Pending, level: Level): boolean {
  let refs = 0;
  let ok = true;
  walk(q, (n) => {
    const c = as(n, 'ColumnRef');
    if (c) {
      const f = c.fields ?? [];
      refs++;
      if (f.some((x) => kind(x) === 'A_Star')) ok = false;
      else if (f.length === 2) ok &&= stringOf(f[0]) === p.alias;
      else if (f.length === 1) ok &&= level.count === 1;
      else ok = false;
    }
    const fc = as(n, 'FuncCall');
    if (fc && (VOLATILE.has(funcName(fc)) || fc.over)) ok = false;
  });
  return ok && refs > 0;
}

function andOf(qs: Node[]): Node | undefined {
  if (qs.length === 0) return undefined;
  if (qs.length === 1) return qs[0];
  return { BoolExpr: { boolop: 'AND_EXPR', args: qs } };
}

/**
 * Records, for each reference of one SELECT level, the columns the rewritten level reads: qualified by
 * its alias, or unqualified (then every reference of the level that has the name keeps it). A star, a
 * whole-row reference, a NATURAL join or an aliased join keeps every column.
 */
function noteUsed(s: SelectStmt, level: Level): void {
  const of = (alias: string) => level.parts.filter((p) => p.alias === alias);
  walk(s, (n) => {
    const c = as(n, 'ColumnRef');
    if (c) {
      const f = (c.fields ?? []).map((x) => (kind(x) === 'A_Star' ? '*' : (stringOf(x) ?? '')));
      if (f.length === 1) {
        // a bare name is a column, or a whole row when it is an alias: both are kept
        for (const p of level.parts) p.used.add(f[0]!);
        for (const p of of(f[0]!)) p.used.add('*');
      } else for (const p of of(f[f.length - 2]!)) p.used.add(f[f.length - 1]!);
    }
    const j = as(n, 'JoinExpr');
    // a NATURAL join, or an aliased one whose columns are read through its alias: every column
    if (j?.isNatural || j?.alias) for (const p of level.parts) p.used.add('*');
    for (const u of j?.usingClause ?? []) for (const p of level.parts) p.used.add(stringOf(u) ?? '');
  });
}

/** A pending reference's shard query: the columns the final query uses, filtered by its pushed conjuncts. */
function partOf(p: Pending, input: PlanQueryInput): PullupPart {
  const all = input.relationColumns?.get(relationKey(p.name));
  const columns = !all || p.used.has('*') ? undefined : all.filter((c) => p.used.has(c));
  const targets: Node[] = columns
    ? columns.length > 0
      ? columns.map((c) => ({ ResTarget: { val: columnRef(p.alias, c) } }))
      : [{ ResTarget: { name: ROW_MARK, val: { A_Const: { boolval: { boolval: true } } } } }]
    : [{ ResTarget: { val: { ColumnRef: { fields: [{ A_Star: {} }] } } } }];
  const where = andOf(p.pushed);
  const shardSel: SelectStmt = {
    targetList: targets,
    fromClause: [p.rv],
    ...(where ? { whereClause: where } : {}),
    limitOption: 'LIMIT_OPTION_DEFAULT',
    op: 'SETOP_NONE',
  };
  const relation = p.name.schema ? `${p.name.schema}.${p.name.name}` : p.name.name;
  return {
    cte: p.cte,
    relation,
    table: p.name,
    ...(columns ? { columns } : {}),
    ...(where ? { pushed: deparse(where) } : {}),
    ...shardQuery({ SelectStmt: shardSel }, input.params),
  };
}

/**
 * The relations a pull-up reads, for the catalog lookup of their columns (projection push-down).
 *
 * @example
 * pulledRelations(plan) // [{ schema: undefined, name: 'orders' }]
 */
export function pulledRelations(plan: PullupPlan): RelationName[] {
  return plan.parts.map((p) => p.table);
}

function usesParams(n: Node | SelectStmt): boolean {
  let found = false;
  walk(n, (x) => {
    if (kind(x) === 'ParamRef') found = true;
  });
  return found;
}
