import type { SelectStmt } from '@pgsql/types';
import { shardKeyColumn, type ShardMap } from '../config/shard-map.js';
import { as, columnName, columnQualifier, conjuncts, operatorOf, stringOf, type Node } from './sql-ast.js';

/** A relation of a query's FROM. */
export interface Rel {
  name: string;
  alias: string;
  reference: boolean;
  /** The column holding the tenant in this relation (`shardKey.columns`, else the map's column). */
  key: string;
}

/**
 * Where a query must run, and why: on any one shard (only reference tables), on the shards owning the
 * pinned tenants, or on every candidate shard; or nowhere exact (`unsplittable`: the planner refuses).
 */
export type Routing =
  | { kind: 'reference'; why: string }
  | {
      kind: 'pinned';
      shards: string[];
      why: string;
      /** Relations not tied by the key, each pinned. */ unconnected?: true;
    }
  | { kind: 'scatter'; why: string }
  | { kind: 'unsplittable'; construct: 'join not on the shard key' | 'sub-query in FROM'; why: string };

/** What routing needs from the caller. */
export interface RouteInput {
  map: ShardMap;
  params: unknown[];
  locate: (tenant: string) => string;
}

/**
 * The relations of a SELECT's FROM, reference tables marked.
 *
 * @example
 * relations(sel, map).map((r) => r.alias) // ['u', 'p']
 */
export function relations(sel: SelectStmt, map: ShardMap): Rel[] {
  const rels: Rel[] = [];
  const refs = new Set(map.reference);
  const visit = (n: Node | undefined): void => {
    const rv = as(n, 'RangeVar');
    if (rv) {
      const relname = rv.relname ?? '';
      const full = rv.schemaname ? `${rv.schemaname}.${relname}` : relname;
      const reference = refs.has(full) || refs.has(relname);
      rels.push({ name: full, alias: rv.alias?.aliasname ?? relname, reference, key: shardKeyColumn(map, full) });
      return;
    }
    const j = as(n, 'JoinExpr');
    if (j) {
      visit(j.larg);
      visit(j.rarg);
      return;
    }
    if (as(n, 'RangeFunction')) rels.push({ name: '(function)', alias: '', reference: true, key: '' });
    const sub = as(n, 'RangeSubselect');
    if (sub) rels.push({ name: '(subquery)', alias: sub.alias?.aliasname ?? '', reference: false, key: '' });
  };
  for (const f of sel.fromClause ?? []) visit(f);
  return rels;
}

/**
 * The value of a literal or bound parameter (casts and unary minus allowed), else undefined.
 *
 * @example
 * constValue(parsedExpr('-$1::int8'), ['5']) // '-5'
 */
export function constValue(n: Node | undefined, params: unknown[]): string | undefined {
  const tc = as(n, 'TypeCast');
  if (tc) return constValue(tc.arg, params);
  const c = as(n, 'A_Const');
  if (c) {
    if (c.ival !== undefined) return String(c.ival.ival ?? 0);
    if (c.sval !== undefined) return c.sval.sval;
    if (c.fval !== undefined) return c.fval.fval;
    return undefined;
  }
  const p = as(n, 'ParamRef');
  if (p) {
    const v = params[(p.number ?? 0) - 1];
    return v === undefined || v === null ? undefined : String(v);
  }
  const neg = as(n, 'A_Expr');
  if (neg && neg.kind === 'AEXPR_OP' && !neg.lexpr && operatorOf(neg) === '-') {
    const v = constValue(neg.rexpr, params);
    return v === undefined ? undefined : v.startsWith('-') ? v.slice(1) : `-${v}`;
  }
  return undefined;
}

/** Union-find over distributed relations, with the tenants each relation is pinned to. */
class RelGroups {
  private readonly parent: Map<Rel, Rel>;
  readonly pinned = new Map<Rel, Set<string>>();

  constructor(dist: Rel[]) {
    this.parent = new Map(dist.map((r) => [r, r]));
  }

  find(r: Rel): Rel {
    const p = this.parent.get(r)!;
    return p === r ? r : this.find(p);
  }

  unite(a: Rel, b: Rel): void {
    this.parent.set(this.find(a), this.find(b));
  }

  /** Pins a relation to tenants; a second pin keeps the intersection (both conditions hold). */
  pin(r: Rel, values: string[]): void {
    const prev = this.pinned.get(r);
    this.pinned.set(r, prev ? new Set(values.filter((v) => prev.has(v))) : new Set(values));
  }
}

/** Shard-key equalities and pins, gathered from the WHERE clause and the joins of one SELECT. */
class KeyQuals {
  readonly quals: Node[];
  /** USING (col) joins: the relations on each side whose own shard-key column is `col`. */
  readonly using: [Rel[], Rel[]][] = [];

  constructor(
    private readonly dist: Rel[],
    sel: SelectStmt,
  ) {
    this.quals = [...conjuncts(sel.whereClause)];
    for (const f of sel.fromClause ?? []) this.joins(f);
  }

  /** The distributed relation whose own shard-key column this column is, if it is one. */
  relOf(n: Node | undefined): Rel | undefined {
    const name = columnName(n);
    if (name === undefined) return undefined;
    const q = columnQualifier(n);
    const rel = q
      ? this.dist.find((r) => r.alias === q || r.name === q)
      : this.dist.length === 1
        ? this.dist[0]
        : undefined;
    return rel && rel.key === name ? rel : undefined;
  }

  private isKeyEquality(q: Node): boolean {
    const e = as(q, 'A_Expr');
    return !!e && e.kind === 'AEXPR_OP' && operatorOf(e) === '=' && !!this.relOf(e.lexpr) && !!this.relOf(e.rexpr);
  }

  /** The relations under a FROM item; collects inner-join quals, outer joins' shard-key equalities, USING. */
  private joins(n: Node | undefined): Rel[] {
    const j = as(n, 'JoinExpr');
    if (!j) {
      const rv = as(n, 'RangeVar');
      return rv ? this.dist.filter((r) => r.alias === (rv.alias?.aliasname ?? rv.relname)) : [];
    }
    const l = this.joins(j.larg);
    const r = this.joins(j.rarg);
    if (j.quals && j.jointype === 'JOIN_INNER') this.quals.push(...conjuncts(j.quals));
    else if (j.quals) this.quals.push(...conjuncts(j.quals).filter((q) => this.isKeyEquality(q)));
    for (const u of j.usingClause ?? []) {
      const col = stringOf(u);
      this.using.push([l.filter((x) => x.key === col), r.filter((x) => x.key === col)]);
    }
    return [...l, ...r];
  }
}

/** Applies one qual: `key = key` ties two relations, `key = const` and `key IN (consts)` pin one. */
function applyQual(q: Node, quals: KeyQuals, groups: RelGroups, params: unknown[]): void {
  const e = as(q, 'A_Expr');
  if (!e || operatorOf(e) !== '=') return;
  if (e.kind === 'AEXPR_OP') {
    const a = quals.relOf(e.lexpr);
    const b = quals.relOf(e.rexpr);
    const right = constValue(e.rexpr, params);
    const left = constValue(e.lexpr, params);
    if (a && b) groups.unite(a, b);
    else if (a && right !== undefined) groups.pin(a, [right]);
    else if (b && left !== undefined) groups.pin(b, [left]);
  } else if (e.kind === 'AEXPR_IN') {
    const a = quals.relOf(e.lexpr);
    const values = (as(e.rexpr, 'List')?.items ?? []).map((i) => constValue(i, params));
    if (a && values.every((v) => v !== undefined)) groups.pin(a, values as string[]);
  }
}

/**
 * Where a SELECT must run: relations connected by equality on the shard key, and the tenants pinned,
 * from WHERE and JOIN quals.
 *
 * @example
 * route(sel, relations(sel, map), { map, params: [], locate }) // { kind: 'pinned', shards: ['s1'], why: ... }
 */
export function route(sel: SelectStmt, rels: Rel[], input: RouteInput): Routing {
  const dist = rels.filter((r) => !r.reference);
  if (rels.length > 0 && dist.length === 0) return { kind: 'reference', why: 'only reference tables' };
  if (rels.length === 0) return { kind: 'reference', why: 'no table' };
  const quals = new KeyQuals(dist, sel);
  const groups = new RelGroups(dist);
  for (const [l, r] of quals.using) for (const a of l) for (const b of r) groups.unite(a, b);
  for (const q of quals.quals) applyQual(q, quals, groups, input.params);
  const roots = new Set(dist.map((r) => groups.find(r)));
  const subquery = dist.some((r) => r.name === '(subquery)');
  if (subquery || roots.size > 1) return routeUnconnected(dist, groups, subquery, roots.size > 1, input);
  // Tenants pinned anywhere in the (single) group decide the shards.
  let values: Set<string> | undefined;
  for (const [r, v] of groups.pinned) {
    if (groups.find(r) !== groups.find(dist[0]!)) continue;
    values = values ? new Set([...values].filter((x) => v.has(x))) : v;
  }
  if (!values) return { kind: 'scatter', why: 'the shard key is not pinned' };
  const shards = [...new Set([...values].map((t) => input.locate(t)))];
  return {
    kind: 'pinned',
    shards,
    why: `shard key pinned to ${[...values].join(', ')}: ${shards.join(', ') || 'no shard'}`,
  };
}

/**
 * Relations not tied by the shard key: exact only when every one of them is pinned to tenants that all
 * live on one shard (then that shard holds every row involved).
 */
function routeUnconnected(
  dist: Rel[],
  groups: RelGroups,
  subquery: boolean,
  split: boolean,
  input: RouteInput,
): Routing {
  if (!subquery && dist.every((r) => groups.pinned.has(r))) {
    const tenants = [...groups.pinned.values()].flatMap((v) => [...v]);
    const shards = [...new Set(tenants.map((t) => input.locate(t)))];
    if (shards.length === 1)
      return { kind: 'pinned', shards, why: `every relation pinned to tenants on ${shards[0]}`, unconnected: true };
  }
  return split
    ? { kind: 'unsplittable', construct: 'join not on the shard key', why: 'join not on the shard key' }
    : { kind: 'unsplittable', construct: 'sub-query in FROM', why: 'subquery in FROM' };
}
