/* eslint-disable @typescript-eslint/no-explicit-any */
import type { ShardMap } from '../config/shard-map.js';
import { as, columnName, columnQualifier, conjuncts, type Node } from './sql-ast.js';

/** A relation of a query's FROM. */
export interface Rel {
  name: string;
  alias: string;
  reference: boolean;
}

/** Where a query must run, and why. */
export interface Routing {
  shards?: string[];
  reference?: boolean;
  why: string;
}

/** What routing needs from the caller. */
export interface RouteInput {
  map: ShardMap;
  params: unknown[];
  locate: (tenant: string) => string;
}

/** The relations of a SELECT's FROM, reference tables marked. */
export function relations(sel: any, map: ShardMap): Rel[] {
  const rels: Rel[] = [];
  const refs = new Set(map.reference);
  const visit = (n: Node) => {
    const rv = as(n, 'RangeVar');
    if (rv) {
      const full = rv.schemaname ? `${rv.schemaname}.${rv.relname}` : rv.relname;
      rels.push({
        name: full,
        alias: rv.alias?.aliasname ?? rv.relname,
        reference: refs.has(full) || refs.has(rv.relname),
      });
      return;
    }
    const j = as(n, 'JoinExpr');
    if (j) {
      visit(j.larg);
      visit(j.rarg);
      return;
    }
    if (as(n, 'RangeFunction')) {
      rels.push({ name: '(function)', alias: '', reference: true });
      return;
    }
    if (as(n, 'RangeSubselect'))
      rels.push({ name: '(subquery)', alias: as(n, 'RangeSubselect').alias?.aliasname ?? '', reference: false });
  };
  for (const f of sel.fromClause ?? []) visit(f);
  return rels;
}

/** The value of a literal or bound parameter (casts and unary minus allowed), else undefined. */
export function constValue(n: Node, params: unknown[]): string | undefined {
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
    const v = params[p.number - 1];
    return v === undefined || v === null ? undefined : String(v);
  }
  const neg = as(n, 'A_Expr');
  if (neg && neg.kind === 'AEXPR_OP' && !neg.lexpr && neg.name?.[0]?.String?.sval === '-') {
    const v = constValue(neg.rexpr, params);
    return v === undefined ? undefined : v.startsWith('-') ? v.slice(1) : `-${v}`;
  }
  return undefined;
}

/** Relations connected by equality on the shard key, and the tenants pinned, from WHERE and JOIN quals. */
export function route(sel: any, rels: Rel[], input: RouteInput): Routing {
  const key = input.map.shardKey.column;
  const dist = rels.filter((r) => !r.reference);
  if (rels.length > 0 && dist.length === 0) return { reference: true, why: 'only reference tables' };
  if (rels.length === 0) return { reference: true, why: 'no table' };
  const relOf = (n: Node): Rel | undefined => {
    if (columnName(n) !== key) return undefined;
    const q = columnQualifier(n);
    if (q) return dist.find((r) => r.alias === q || r.name === q);
    return dist.length === 1 ? dist[0] : undefined;
  };
  const quals: Node[] = [...conjuncts(sel.whereClause)];
  const using: [Rel[], Rel[]][] = [];
  const joins = (n: Node): Rel[] => {
    const j = as(n, 'JoinExpr');
    if (!j) {
      const rv = as(n, 'RangeVar');
      if (rv) return dist.filter((r) => r.alias === (rv.alias?.aliasname ?? rv.relname));
      return [];
    }
    const l = joins(j.larg);
    const r = joins(j.rarg);
    if (j.quals && j.jointype === 'JOIN_INNER') quals.push(...conjuncts(j.quals));
    else if (j.quals) quals.push(...conjuncts(j.quals).filter((q) => isKeyEquality(q)));
    if ((j.usingClause ?? []).some((u: any) => u.String?.sval === key)) using.push([l, r]);
    return [...l, ...r];
  };
  const isKeyEquality = (q: Node) => {
    const e = as(q, 'A_Expr');
    return e && e.kind === 'AEXPR_OP' && e.name?.[0]?.String?.sval === '=' && relOf(e.lexpr) && relOf(e.rexpr);
  };
  for (const f of sel.fromClause ?? []) joins(f);
  // union-find over distributed relations
  const parent = new Map(dist.map((r) => [r, r]));
  const find = (r: Rel): Rel => (parent.get(r) === r ? r : find(parent.get(r)!));
  const unite = (a: Rel, b: Rel) => parent.set(find(a), find(b));
  for (const [l, r] of using) for (const a of l) for (const b of r) unite(a, b);
  const pinned = new Map<Rel, Set<string>>();
  const pin = (r: Rel, values: string[]) => {
    const prev = pinned.get(r);
    pinned.set(r, prev ? new Set(values.filter((v) => prev.has(v))) : new Set(values));
  };
  for (const q of quals) {
    const e = as(q, 'A_Expr');
    if (!e) continue;
    if (e.kind === 'AEXPR_OP' && e.name?.[0]?.String?.sval === '=') {
      const a = relOf(e.lexpr);
      const b = relOf(e.rexpr);
      if (a && b) unite(a, b);
      else if (a && constValue(e.rexpr, input.params) !== undefined) pin(a, [constValue(e.rexpr, input.params)!]);
      else if (b && constValue(e.lexpr, input.params) !== undefined) pin(b, [constValue(e.lexpr, input.params)!]);
    } else if (e.kind === 'AEXPR_IN' && e.name?.[0]?.String?.sval === '=') {
      const a = relOf(e.lexpr);
      const items = as(e.rexpr, 'List')?.items ?? [];
      const values = items.map((i: Node) => constValue(i, input.params));
      if (a && values.every((v: string | undefined) => v !== undefined)) pin(a, values as string[]);
    }
  }
  const groups = new Set(dist.map(find));
  if (dist.some((r) => r.name === '(subquery)') || groups.size > 1) {
    // Relations not tied by the shard key: exact only when every one of them is pinned to tenants
    // that all live on one shard (then that shard holds every row involved).
    const all = dist.every((r) => pinned.has(r));
    if (all && !dist.some((r) => r.name === '(subquery)')) {
      const shards = [...new Set([...pinned.values()].flatMap((v) => [...v].map((t) => input.locate(t))))];
      if (shards.length === 1) return { shards, why: `every relation pinned to tenants on ${shards[0]}` };
    }
    return { why: groups.size > 1 ? 'join not on the shard key' : 'subquery in FROM' };
  }
  // Tenants pinned anywhere in the (single) group decide the shards.
  let values: Set<string> | undefined;
  for (const [r, v] of pinned) {
    if (find(r) !== find(dist[0]!)) continue;
    values = values ? new Set([...values].filter((x) => v.has(x))) : v;
  }
  if (!values) return { why: 'the shard key is not pinned' };
  const shards = [...new Set([...values].map((t) => input.locate(t)))];
  return { shards, why: `${key} pinned to ${[...values].join(', ')}: ${shards.join(', ') || 'no shard'}` };
}
