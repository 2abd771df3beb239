/**
 * Push-down of co-located queries. A query whose every tenant-table reference (in FROM, joins, LATERAL,
 * sub-queries in FROM, CTEs, and sub-queries in expressions) is tied to the others and to the outer
 * query by equality on the shard key, or whose sub-queries group or partition by the shard key, runs
 * whole on every shard: each shard's run combines only rows of one tenant at a time, all on that shard.
 * The outer query's merge (concat, ordered, grouping) then treats the shards' output like a table's.
 * Why it is exact, and what "tied" means: docs/architecture.md, "Co-located push-down".
 */
import type { JoinExpr, SelectStmt, SubLink, WindowDef } from '@pgsql/types';
import { shardKeyColumn, type ShardMap } from '../config/shard-map.js';
import { isAggregateCall } from './plan-aggregates.js';
import { READ_HINT, refuse, resolveSortExpr, targetsOf } from './plan-common.js';
import { constValue, type RouteInput, type Routing } from './route-query.js';
import {
  as,
  columnName,
  conjuncts,
  deparse,
  funcName,
  kind,
  operatorOf,
  stringOf,
  walk,
  type Node,
} from './sql-ast.js';

/** A FROM item of one SELECT: a table, a CTE reference, a sub-query, a function. */
interface Unit {
  /** Qualifiers that reach its columns: its alias, else its name. */
  names: string[];
  /** Its columns that hold the tenant key: name -> never NULL through a join's padding (firm). */
  keys: Map<string, boolean>;
  distributed: boolean;
  /** A plain table of the map (not a CTE, sub-query or function). */
  table: boolean;
  /** On the NULL-padded side of an outer join of its SELECT. */
  nullable: boolean;
  /** Units of enclosing SELECTs (or earlier FROM items, for LATERAL) its rows are tied to by the key. */
  tiedTo: Unit[];
  label: string;
}

/** One SELECT being analysed: its units, the enclosing SELECT, the CTEs it sees. */
interface Scope {
  units: Unit[];
  parent: Scope | undefined;
  ctes: Map<string, Cte>;
}

interface Cte {
  name: string;
  body: SelectStmt;
  colnames: string[];
  recursive: boolean;
  /** The CTEs its body sees: those before it in its WITH list (and itself, if recursive), and the enclosing ones. */
  visible: Map<string, Cte>;
  result?: Analysis;
  analysing?: boolean;
}

/** What a SELECT is, seen from the one enclosing it. */
interface Analysis {
  distributed: boolean;
  /** Output columns holding the tenant key: name -> firm. */
  keys: Map<string, boolean>;
  /** Enclosing units its rows are tied to (it is evaluated within one enclosing row's tenant). */
  tiedTo: Unit[];
  /** It names a column of an enclosing SELECT (it is correlated). */
  outer: boolean;
  /** Why its shards' results, put together, would not be its result over one database (uncorrelated). */
  unsplittable?: string;
  /** Top level only: its units, and the tenants its shard key is pinned to. */
  units: Unit[];
  pins?: Set<string>;
}

type Context = 'top' | 'from' | 'cte' | 'sublink';

/** Volatile functions: a shard's run would compute them on its own, not as one database does. */
const VOLATILE = new Set([
  'random',
  'random_normal',
  'setseed',
  'nextval',
  'setval',
  'currval',
  'lastval',
  'clock_timestamp',
  'timeofday',
  'gen_random_uuid',
  'uuid_generate_v1',
  'uuid_generate_v4',
  'txid_current',
]);

/** Union-find over units, with the equalities that tied them (for --explain). */
class Ties {
  private readonly parent = new Map<Unit, Unit>();

  find(u: Unit): Unit {
    const p = this.parent.get(u) ?? u;
    if (p === u) return u;
    const root = this.find(p);
    this.parent.set(u, root);
    return root;
  }

  unite(a: Unit, b: Unit): void {
    this.parent.set(this.find(a), this.find(b));
  }
}

/** A column of a unit the reference reaches, and whether it holds that unit's tenant key. */
interface Resolved {
  unit: Unit;
  key: boolean;
  /** The unit is one of this SELECT's own FROM items. */
  own: boolean;
}

/**
 * The unit a column reference names: qualified, the nearest SELECT with a FROM item of that name;
 * unqualified, only a key column of this SELECT's own FROM items (an unqualified name reaching an
 * enclosing SELECT is never taken for a key: the catalog's columns are not known here).
 */
function resolve(n: Node | undefined, scope: Scope): Resolved | undefined {
  const fields = as(n, 'ColumnRef')?.fields ?? [];
  if (fields.length === 0 || fields.some((f) => kind(f) === 'A_Star')) return undefined;
  const col = stringOf(fields[fields.length - 1]) ?? '';
  if (fields.length === 1) {
    const unit = scope.units.find((u) => u.keys.has(col));
    return unit ? { unit, key: true, own: true } : undefined;
  }
  const q = stringOf(fields[fields.length - 2]) ?? '';
  for (let s: Scope | undefined = scope; s; s = s.parent) {
    const unit = s.units.find((u) => u.names.includes(q));
    if (unit) return { unit, key: unit.keys.has(col), own: s === scope };
  }
  return undefined;
}

/** Whether a reference is a firm key column of one of the scope's own distributed units. */
function firmKey(n: Node | undefined, scope: Scope): boolean {
  const r = resolve(n, scope);
  return !!r && r.own && r.key && r.unit.distributed && !r.unit.nullable && r.unit.keys.get(columnName(n)!) === true;
}

/** Visits a SELECT's own expressions (not its FROM items, CTEs or set-operation branches). */
function ownExpressions(sel: SelectStmt): unknown[] {
  return [
    sel.targetList,
    sel.whereClause,
    sel.havingClause,
    sel.groupClause,
    sel.sortClause,
    sel.distinctClause,
    sel.windowClause,
    sel.limitCount,
    sel.limitOffset,
    sel.valuesLists,
  ];
}

/** Calls `fn` on each SubLink under `root`, not descending into them. */
function eachSubLink(root: unknown, fn: (s: SubLink) => void): void {
  walk(root, (n) => {
    const s = as(n, 'SubLink');
    if (!s) return;
    fn(s);
    return 'skip';
  });
}

/** The window definitions of a SELECT's window calls, named windows resolved. */
function windowsOf(sel: SelectStmt): WindowDef[] {
  const named = new Map(
    (sel.windowClause ?? []).flatMap((w) => {
      const d = as(w, 'WindowDef');
      return d?.name ? [[d.name, d] as const] : [];
    }),
  );
  const defs: WindowDef[] = [];
  walk([sel.targetList, sel.sortClause], (n) => {
    if (as(n, 'SubLink')) return 'skip';
    const f = as(n, 'FuncCall');
    if (!f?.over) return;
    let d: WindowDef | undefined = f.over;
    // OVER w, OVER (w ORDER BY ...): the partition is the named window's (or the one it refers to).
    for (let hops = 0; d && !d.partitionClause?.length && hops < 10; hops++) {
      const next: WindowDef | undefined = named.get(d.refname ?? d.name ?? '');
      if (!next || next === d) break;
      d = next;
    }
    defs.push(d ?? f.over);
  });
  return defs;
}

/** Whether a SELECT's own select list, HAVING or ORDER BY holds an aggregate (not in its sub-queries). */
function aggregatesOf(sel: SelectStmt, aggregates: ReadonlySet<string>): Node[] {
  const out: Node[] = [];
  walk([sel.targetList, sel.havingClause, sel.sortClause], (n) => {
    if (as(n, 'SubLink')) return 'skip';
    const f = as(n, 'FuncCall');
    if (f && isAggregateCall(f, aggregates)) {
      out.push(n);
      return 'skip';
    }
  });
  return out;
}

/** Whether a SELECT combines rows: aggregates, GROUP BY, HAVING, DISTINCT. */
function combinesRows(sel: SelectStmt, aggregates: ReadonlySet<string>): boolean {
  return (
    aggregatesOf(sel, aggregates).length > 0 ||
    (sel.groupClause ?? []).length > 0 ||
    !!sel.havingClause ||
    (Array.isArray(sel.distinctClause) && sel.distinctClause.length > 0)
  );
}

/** The analysis of one query: the map, the catalogue of aggregates, the reasons for --explain. */
class Analyser {
  readonly why: string[] = [];

  constructor(
    readonly map: ShardMap,
    readonly aggregates: ReadonlySet<string>,
    readonly params: unknown[],
  ) {}

  /** Analyses a SELECT in its context; throws the refusal of what cannot run shard by shard. */
  select(sel: SelectStmt, parent: Scope | undefined, ctes: Map<string, Cte>, ctx: Context): Analysis {
    if (sel.op && sel.op !== 'SETOP_NONE') return this.setOp(sel, parent, ctes, ctx);
    const scope: Scope = { units: [], parent, ctes: this.withCtes(sel, ctes) };
    const ties = new Ties();
    const quals: Node[] = [...conjuncts(sel.whereClause)];
    const lateralScope: Scope = { units: [], parent, ctes: scope.ctes };
    for (const f of sel.fromClause ?? []) this.fromItem(f, scope, lateralScope, ties, quals);
    for (const u of scope.units) for (const t of u.tiedTo) ties.unite(u, t);
    const pins = this.applyQuals(quals, scope, ties, ctx === 'top');
    const inTied = this.inTiedSubLinks(quals, scope);
    eachSubLink(ownExpressions(sel), (s) => this.subLink(s, scope, inTied.get(s)));
    return this.conclude(sel, scope, ties, ctx, pins);
  }

  private setOp(sel: SelectStmt, parent: Scope | undefined, ctes: Map<string, Cte>, ctx: Context): Analysis {
    const branches = [sel.larg, sel.rarg].map((b) => this.select(b!, parent, ctes, ctx));
    if (branches.some((b) => b.distributed))
      throw refuse(
        `set operation ${sel.op!.replace('SETOP_', '')} inside a sub-query`,
        'over distributed tables across shards cannot be pushed down',
      );
    return { distributed: false, keys: new Map(), tiedTo: [], outer: branches.some((b) => b.outer), units: [] };
  }

  /** The CTEs a SELECT sees: the enclosing ones and its own WITH list. */
  private withCtes(sel: SelectStmt, outer: Map<string, Cte>): Map<string, Cte> {
    if (!sel.withClause) return outer;
    const ctes = new Map(outer);
    const recursive = !!sel.withClause.recursive;
    for (const c of sel.withClause.ctes ?? []) {
      const e = as(c, 'CommonTableExpr')!;
      const body = as(e.ctequery, 'SelectStmt');
      if (!body) throw refuse('a data-modifying statement inside the query', 'writes (nothing was sent)');
      const colnames = (e.aliascolnames ?? []).map((n) => stringOf(n) ?? '');
      // Without RECURSIVE, a CTE's own name in its body is the table (or enclosing CTE) of that name.
      const cte: Cte = { name: e.ctename!, body, colnames, recursive, visible: new Map(ctes) };
      if (recursive) cte.visible.set(cte.name, cte);
      ctes.set(cte.name, cte);
    }
    return ctes;
  }

  /** Adds the units of one FROM item (a join: both sides) to the scope; collects the join's quals. */
  private fromItem(n: Node, scope: Scope, lateral: Scope, ties: Ties, quals: Node[]): Unit[] {
    const j = as(n, 'JoinExpr');
    if (j) return this.join(j, scope, lateral, ties, quals);
    const unit = this.unitOf(n, scope, lateral);
    scope.units.push(unit);
    lateral.units = [...lateral.units, unit];
    return [unit];
  }

  private join(j: JoinExpr, scope: Scope, lateral: Scope, ties: Ties, quals: Node[]): Unit[] {
    const l = this.fromItem(j.larg!, scope, lateral, ties, quals);
    const r = this.fromItem(j.rarg!, scope, lateral, ties, quals);
    const type = j.jointype ?? 'JOIN_INNER';
    const padded = type === 'JOIN_LEFT' ? [r] : type === 'JOIN_RIGHT' ? [l] : type === 'JOIN_FULL' ? [l, r] : [];
    const kept = type === 'JOIN_LEFT' ? [l] : type === 'JOIN_RIGHT' ? [r] : type === 'JOIN_FULL' ? [l, r] : [];
    // Rows of reference tables kept by an outer join would come back once from every shard
    // (refuseKeptReference says the same of a query of plain tables).
    if (padded.some((side) => side.some((u) => u.distributed)) && kept.some((side) => !side.some((u) => u.distributed)))
      throw refuse('outer join keeping the rows of a reference table', 'across shards: every shard would return them');
    for (const side of padded) for (const u of side) u.nullable = true;
    if (type === 'JOIN_INNER') quals.push(...conjuncts(j.quals));
    // An outer join's ON restricts no kept row: it ties only the join's own sides, never an enclosing row.
    else for (const q of conjuncts(j.quals)) this.keyEquality(q, scope, ties, true);
    eachSubLink(j.quals, (s) => this.subLink(s, scope, undefined));
    for (const u of j.usingClause ?? []) {
      const col = stringOf(u) ?? '';
      for (const a of l.filter((x) => x.keys.has(col)))
        for (const b of r.filter((x) => x.keys.has(col))) this.tie(ties, a, b, `USING (${col})`);
    }
    return [...l, ...r];
  }

  /** The unit of a table, CTE reference, sub-query or function in FROM. */
  private unitOf(n: Node, scope: Scope, lateral: Scope): Unit {
    const rv = as(n, 'RangeVar');
    if (rv) {
      const alias = rv.alias?.aliasname;
      const cte = rv.schemaname ? undefined : scope.ctes.get(rv.relname ?? '');
      if (cte) return this.derived(this.cte(cte), alias ?? cte.name, rv.alias?.colnames, `CTE ${cte.name}`, false);
      const full = rv.schemaname ? `${rv.schemaname}.${rv.relname}` : (rv.relname ?? '');
      const reference = this.map.reference.includes(full) || this.map.reference.includes(rv.relname ?? '');
      const key = shardKeyColumn(this.map, full);
      return {
        names: [alias ?? rv.relname ?? ''],
        keys: reference ? new Map() : new Map([[key, true]]),
        distributed: !reference,
        table: true,
        nullable: false,
        tiedTo: [],
        label: alias && alias !== full ? `${full} ${alias}` : full,
      };
    }
    const sub = as(n, 'RangeSubselect');
    if (sub) {
      const inner = sub.lateral ? lateral : { units: [], parent: scope.parent, ctes: scope.ctes };
      const a = this.select(as(sub.subquery, 'SelectStmt')!, inner, scope.ctes, 'from');
      const alias = sub.alias?.aliasname ?? '';
      const label = `${sub.lateral ? 'LATERAL ' : ''}sub-query ${alias} in FROM`;
      return this.derived(a, alias, sub.alias?.colnames, label, !sub.lateral);
    }
    const fn = as(n, 'RangeFunction');
    if (fn) {
      eachSubLink(fn.functions, (s) => this.subLink(s, scope, undefined));
      const name = fn.alias?.aliasname ?? '';
      return {
        names: [name],
        keys: new Map(),
        distributed: false,
        table: false,
        nullable: false,
        tiedTo: [],
        label: name,
      };
    }
    throw refuse(`${kind(n) ?? 'FROM item'} in FROM`, 'across shards cannot be pushed down');
  }

  /** A sub-query or CTE as a unit: its key columns (renamed by an alias's column list), its ties. */
  private derived(a: Analysis, alias: string, colnames: Node[] | undefined, label: string, alone: boolean): Unit {
    if (a.distributed && a.tiedTo.length === 0 && a.unsplittable)
      throw unsplit(label, a.unsplittable, alone ? { kind: 'from', name: alias } : undefined);
    const renamed = (colnames ?? []).map((c) => stringOf(c) ?? '');
    // Renamed columns: only a select list without `*` says which position is which (a.keys keeps order).
    const keys = renamed.length === 0 ? a.keys : renameKeys(a.keys, renamed);
    return { names: [alias], keys, distributed: a.distributed, table: false, nullable: false, tiedTo: a.tiedTo, label };
  }

  private cte(c: Cte): Analysis {
    if (c.result) return c.result;
    // A recursive CTE's reference to itself, while its body is analysed: rows of the CTE so far.
    if (c.analysing) return { distributed: false, keys: new Map(), tiedTo: [], outer: false, units: [] };
    c.analysing = true;
    // Each step of a recursion over distributed tables could need rows of another shard.
    const recursion = () => refuse('WITH RECURSIVE', 'over distributed tables across shards cannot be pushed down');
    let a: Analysis;
    try {
      a = this.select(c.body, undefined, c.visible, 'cte');
    } catch (e) {
      throw c.recursive ? recursion() : e;
    }
    c.analysing = false;
    if (c.recursive && a.distributed) throw recursion();
    if (a.distributed && a.unsplittable)
      throw unsplit(`WITH (CTE) ${c.name}`, a.unsplittable, { kind: 'cte', name: c.name });
    c.result = c.colnames.length ? { ...a, keys: renameKeys(a.keys, c.colnames) } : a;
    return c.result;
  }

  private tie(ties: Ties, a: Unit, b: Unit, why: string): void {
    if (ties.find(a) !== ties.find(b)) this.why.push(`${a.label} and ${b.label} tied by ${why}`);
    ties.unite(a, b);
  }

  /** `a.key = b.key`: ties the two units. */
  private keyEquality(q: Node, scope: Scope, ties: Ties, ownOnly = false): boolean {
    const e = as(q, 'A_Expr');
    if (!e || e.kind !== 'AEXPR_OP' || operatorOf(e) !== '=') return false;
    const [a, b] = [resolve(e.lexpr, scope), resolve(e.rexpr, scope)];
    if (!a?.key || !b?.key || !a.unit.distributed || !b.unit.distributed) return false;
    if (ownOnly && !(a.own && b.own)) return false;
    this.tie(ties, a.unit, b.unit, deparse(q));
    return true;
  }

  /** WHERE (and inner joins' ON) conjuncts: key equalities tie, `key = const`/`IN (consts)` pin (top level). */
  private applyQuals(quals: Node[], scope: Scope, ties: Ties, top: boolean): Set<string> | undefined {
    let pins: Set<string> | undefined;
    for (const q of quals) {
      if (this.keyEquality(q, scope, ties) || !top) continue;
      const values = this.pinOf(q, scope);
      if (values) pins = pins ? new Set([...pins].filter((v) => values.includes(v))) : new Set(values);
    }
    return pins;
  }

  private pinOf(q: Node, scope: Scope): string[] | undefined {
    const e = as(q, 'A_Expr');
    if (!e || operatorOf(e) !== '=') return undefined;
    if (e.kind === 'AEXPR_OP') {
      for (const [k, v] of [
        [e.lexpr, e.rexpr],
        [e.rexpr, e.lexpr],
      ]) {
        const r = resolve(k, scope);
        const value = constValue(v, this.params);
        if (r?.own && r.key && r.unit.distributed && value !== undefined) return [value];
      }
      return undefined;
    }
    if (e.kind !== 'AEXPR_IN') return undefined;
    const r = resolve(e.lexpr, scope);
    const values = (as(e.rexpr, 'List')?.items ?? []).map((i) => constValue(i, this.params));
    return r?.own && r.key && r.unit.distributed && values.every((v) => v !== undefined)
      ? (values as string[])
      : undefined;
  }

  /**
   * `key IN (SELECT key ...)` as a conjunct of WHERE: a row passes when a row of its own tenant is in the
   * sub-query's result; on a shard, NULL (no match, a NULL elsewhere) and false both drop the row. A row
   * `(key, b) IN (SELECT key, y ...)` too: rows equal field by field have equal keys. Each such sub-query
   * with the position of the key in its select list.
   */
  private inTiedSubLinks(quals: Node[], scope: Scope): Map<SubLink, number> {
    const out = new Map<SubLink, number>();
    for (const q of quals) {
      const s = as(q, 'SubLink');
      if (!s || s.subLinkType !== 'ANY_SUBLINK' || (s.operName && operatorOf({ name: s.operName }) !== '=')) continue;
      const row = as(s.testexpr, 'RowExpr');
      const lhs = row?.args ?? [s.testexpr!];
      const width = as(s.subselect, 'SelectStmt')?.targetList?.length;
      const i = lhs.findIndex((x) => {
        const r = resolve(x, scope);
        return r?.own && r.key && r.unit.distributed;
      });
      if (i >= 0 && width === lhs.length) out.set(s, i);
    }
    return out;
  }

  /** A sub-query in an expression: over reference tables, tied to the enclosing row's tenant, or IN-tied. */
  private subLink(s: SubLink, scope: Scope, inTied: number | undefined): void {
    const sub = as(s.subselect, 'SelectStmt')!;
    const a = this.select(sub, scope, scope.ctes, 'sublink');
    if (!a.distributed || a.tiedTo.length > 0) {
      if (a.distributed) this.why.push(`${subLinkName(s)} correlated by the shard key`);
      return;
    }
    if (inTied !== undefined && !a.unsplittable && a.keys.has(`#${inTied}`)) {
      this.why.push(`${subLinkName(s)}: its shard-key column is compared with the outer row's`);
      return;
    }
    if (a.outer)
      throw refuse(
        `${subLinkName(s)} correlated on a column other than the shard key`,
        'across shards cannot be pushed down: its rows may be on other shards',
      );
    throw refuse(
      `${subLinkName(s)} not tied to the shard key`,
      'across shards cannot be pushed down: its rows come from every shard',
    );
  }

  /** The outcome of a SELECT: one group of tied units, its key outputs, what would make it unsplittable. */
  private conclude(sel: SelectStmt, scope: Scope, ties: Ties, ctx: Context, pins?: Set<string>): Analysis {
    const dist = scope.units.filter((u) => u.distributed);
    const roots = new Set(dist.map((u) => ties.find(u)));
    // A top level of plain tables is routed as a join is (route-query.ts: pinned relations may be unconnected).
    if (roots.size > 1 && !(ctx === 'top' && scope.units.every((u) => u.table)))
      throw refuse(
        'join not on the shard key',
        'cannot be answered shard by shard: rows on different shards would have to meet',
      );
    const root = dist.length ? ties.find(dist[0]!) : undefined;
    const outerUnits = this.referencedOuter(sel, scope);
    const tiedTo = root ? outerUnits.filter((u) => ties.find(u) === root) : [];
    this.refuseOuterAggregates(sel, scope);
    const base = { distributed: dist.length > 0, tiedTo, outer: outerUnits.length > 0, units: scope.units };
    const keys = outputKeys(sel, scope);
    if (ctx === 'top') return { ...base, keys, ...(pins ? { pins } : {}) };
    const unsplittable = dist.length && !tiedTo.length ? this.unsplittable(sel, scope) : undefined;
    return { ...base, keys, ...(unsplittable ? { unsplittable } : {}) };
  }

  /** Units of enclosing SELECTs this one names (correlation), found through its own expressions and quals. */
  private referencedOuter(sel: SelectStmt, scope: Scope): Unit[] {
    const out = new Set<Unit>();
    walk([ownExpressions(sel), sel.fromClause], (n) => {
      if (as(n, 'SubLink') || as(n, 'RangeSubselect')) return 'skip';
      const r = as(n, 'ColumnRef') ? resolve(n, scope) : undefined;
      if (r && !r.own) out.add(r.unit);
    });
    // Deeper sub-queries tied to units out here tie this SELECT's rows too (through their own units).
    for (const u of scope.units) for (const t of u.tiedTo) if (!scope.units.includes(t)) out.add(t);
    return [...out];
  }

  /** An aggregate over only an enclosing query's columns belongs to that query: refused. */
  private refuseOuterAggregates(sel: SelectStmt, scope: Scope): void {
    if (!scope.parent) return;
    for (const a of aggregatesOf(sel, this.aggregates)) {
      const refs: Node[] = [];
      walk(a, (n) => void (as(n, 'ColumnRef') && refs.push(n)));
      const outer = (r: Node) => scope.units.length === 0 || resolve(r, scope)?.own === false;
      if (refs.length > 0 && refs.every(outer))
        throw refuse(
          `aggregate ${funcName(as(a, 'FuncCall')!)}() of an outer query's columns inside a sub-query`,
          'across shards cannot be pushed down',
        );
    }
  }

  /** Why an uncorrelated SELECT's per-shard results would not add up to its result (undefined: they do). */
  private unsplittable(sel: SelectStmt, scope: Scope): string | undefined {
    const targets = targetsOf(sel);
    if (sel.limitCount || sel.limitOffset) return 'with LIMIT/OFFSET not tied to the shard key';
    if ((sel.groupClause ?? []).some((g) => kind(g) === 'GroupingSet')) return 'with GROUPING SETS/ROLLUP/CUBE';
    if (combinesRows(sel, this.aggregates)) {
      const distinct = sel.distinctClause ?? [];
      const distinctOn = distinct.filter((d) => Object.keys(d).length > 0);
      const keyed = [
        ...(sel.groupClause ?? []).map((g) => resolveSortExpr(g, targets)),
        ...(distinct.length && !distinctOn.length && !sel.groupClause?.length ? targets.map((t) => t.val) : []),
        ...distinctOn,
      ].some((g) => firmKey(g, scope));
      if (!keyed) return 'that aggregates across tenants (no shard key in its GROUP BY)';
      this.why.push(`a sub-query grouped by the shard key`);
    } else if (sel.distinctClause?.some((d) => Object.keys(d).length > 0)) {
      if (!sel.distinctClause.some((d) => firmKey(d, scope))) return 'with DISTINCT ON without the shard key';
    }
    return this.keyedWindows(sel, scope)
      ? undefined
      : 'with a window function partitioned by a column other than the shard key';
  }

  /** Whether a SELECT's windows are all partitioned by (among others) the shard key. */
  keyedWindows(sel: SelectStmt, scope: Scope): boolean {
    const defs = windowsOf(sel);
    if (defs.some((d) => !(d.partitionClause ?? []).some((p) => firmKey(p, scope)))) return false;
    if (defs.length) this.why.push('windows partitioned by the shard key');
    return true;
  }
}

/**
 * The refusal of a sub-query or CTE whose shards' results would not add up to its own. `derived` names
 * it (`cte` or `from`, and its name) when it can be answered on its own first (prepare-query.ts).
 */
function unsplit(label: string, what: string, derived?: { kind: 'cte' | 'from'; name: string }) {
  return refuse(
    `${label} ${what}`,
    'across shards cannot be pushed down: its rows would mix tenants of different shards',
    READ_HINT,
    derived ? { derived } : {},
  );
}

function renameKeys(keys: Map<string, boolean>, renamed: string[]): Map<string, boolean> {
  const out = new Map<string, boolean>();
  // Only the positions of a select list without `*` are known: outputKeys also names them `#<i>`.
  for (const [name, firm] of keys) {
    const m = /^#(\d+)$/.exec(name);
    if (m && renamed[Number(m[1])] !== undefined) out.set(renamed[Number(m[1])]!, firm);
  }
  return out;
}

/** The output columns of a SELECT that hold the tenant key, by name and (without `*`) by `#position`. */
function outputKeys(sel: SelectStmt, scope: Scope): Map<string, boolean> {
  const keys = new Map<string, boolean>();
  const targets = targetsOf(sel);
  const starred = targets.some((t) => as(t.val, 'ColumnRef')?.fields?.some((f) => kind(f) === 'A_Star'));
  for (const [i, t] of targets.entries()) {
    const fields = as(t.val, 'ColumnRef')?.fields ?? [];
    if (fields.some((f) => kind(f) === 'A_Star')) {
      const q = fields.length > 1 ? stringOf(fields[fields.length - 2]) : undefined;
      for (const u of scope.units.filter((x) => q === undefined || x.names.includes(q)))
        for (const [k, firm] of u.keys) if (!/^#/.test(k)) keys.set(k, firm && !u.nullable);
      continue;
    }
    const r = resolve(t.val, scope);
    if (!r?.own || !r.key || !r.unit.distributed) continue;
    const firm = !r.unit.nullable && r.unit.keys.get(columnName(t.val)!) === true;
    keys.set(t.name ?? columnName(t.val)!, firm);
    if (!starred) keys.set(`#${i}`, firm);
  }
  return keys;
}

function subLinkName(s: SubLink): string {
  switch (s.subLinkType) {
    case 'EXISTS_SUBLINK':
      return 'EXISTS sub-query';
    case 'ANY_SUBLINK':
      return 'IN sub-query';
    case 'EXPR_SUBLINK':
      return 'scalar sub-query';
    default:
      return 'sub-query';
  }
}

/** Whether a query holds what only the co-located analysis plans: WITH, sub-queries, window calls. */
function nested(sel: SelectStmt): { nested: boolean; windows: boolean } {
  let found = !!sel.withClause;
  walk(sel, (n) => {
    if (as(n, 'SubLink') || as(n, 'RangeSubselect')) found = true;
  });
  return { nested: found, windows: windowsOf(sel).length > 0 };
}

/** The co-located push-down of a query: how it routes, and why it may run whole on every shard. */
export interface Colocation {
  /** Undefined: route as a plain join (every FROM item is a table of the map). */
  routing?: Routing;
  /** For --explain: which keys tie the parts. */
  why: string;
  /** The top level reads a CTE or sub-query: `*` over it cannot be spelled out from the catalog. */
  derivedTop: boolean;
}

function refuseVolatile(sel: SelectStmt): void {
  walk(sel, (n) => {
    const f = as(n, 'FuncCall');
    if (f && VOLATILE.has(funcName(f)))
      throw refuse(
        `volatile function ${funcName(f)}()`,
        'in a query pushed down to every shard: each shard would evaluate it on its own',
      );
  });
}

/**
 * Whether a query runs whole on every shard, and how it routes; undefined when it holds nothing
 * nested (the plain planners decide) or only windows not partitioned by the shard key (pull-up
 * decides). Throws the refusal, construct named, of a part that is not co-located.
 *
 * @example
 * colocate(sel, input)?.why // 'sub-query s grouped by the shard key'
 */
export function colocate(
  sel: SelectStmt,
  input: RouteInput & { aggregates?: ReadonlySet<string> },
): Colocation | undefined {
  const n = nested(sel);
  if (!n.nested && !n.windows) return undefined;
  const aggregates = input.aggregates ?? new Set<string>();
  const an = new Analyser(input.map, aggregates, input.params);
  if (n.nested) refuseVolatile(sel);
  const a = an.select(sel, undefined, new Map(), 'top');
  const scope: Scope = { units: a.units, parent: undefined, ctes: new Map() };
  const windowsOk = !n.windows || (!combinesRows(sel, aggregates) && an.keyedWindows(sel, scope));
  if (!windowsOk && !n.nested) return undefined;
  if (!windowsOk)
    throw refuse(
      'window function partitioned by a column other than the shard key',
      'across shards cannot be pushed down with a sub-query or CTE',
    );
  const why = [...new Set(an.why)].join('; ') || 'every part reads reference tables or one tenant at a time';
  const derivedTop = a.units.some((u) => !u.table);
  if (!derivedTop) return { why, derivedTop };
  return { routing: topRouting(a, input), why, derivedTop };
}

function topRouting(a: Analysis, input: RouteInput): Routing {
  if (!a.distributed) return { kind: 'reference', why: 'only reference tables' };
  if (!a.pins) return { kind: 'scatter', why: 'the shard key is not pinned' };
  const shards = [...new Set([...a.pins].map((t) => input.locate(t)))];
  return {
    kind: 'pinned',
    shards,
    why: `shard key pinned to ${[...a.pins].join(', ')}: ${shards.join(', ') || 'no shard'}`,
  };
}

/**
 * What the outer merge of a co-located query cannot do: re-group rows holding a sub-query's value or
 * a window's, or spell out `*` over a CTE or sub-query.
 *
 * @example
 * refuseColocatedOuter(s, true, false, colo); // throws for `SELECT (SELECT ...), count(*) ...`
 */
export function refuseColocatedOuter(s: SelectStmt, grouped: boolean, star: boolean, colo: Colocation): void {
  if (grouped) {
    let sub = false;
    walk([s.targetList, s.havingClause, s.sortClause], (n) => void (as(n, 'SubLink') && (sub = true)));
    if (sub) throw refuse('sub-query in the select list, HAVING or ORDER BY of a grouped query', 'across shards');
  }
  if (star && colo.derivedTop && (grouped || s.sortClause?.length))
    throw refuse('SELECT * over a sub-query or CTE with ORDER BY or GROUP BY', 'across shards: name the columns');
}

/**
 * Refuses an outer join that keeps a reference table's rows against a tenant table in a query of plain
 * tables: every shard holds the reference table, so each would return its unmatched rows once.
 *
 * @example
 * refuseKeptReference(sel, map); // throws for `plans p LEFT JOIN tenants t ON t.plan = p.plan`
 */
export function refuseKeptReference(sel: SelectStmt, map: ShardMap): void {
  const tenantRows = (n: Node | undefined): boolean => {
    const rv = as(n, 'RangeVar');
    if (rv) return !map.reference.includes(rv.schemaname ? `${rv.schemaname}.${rv.relname}` : (rv.relname ?? ''));
    const j = as(n, 'JoinExpr');
    return !!j && (tenantRows(j.larg) || tenantRows(j.rarg));
  };
  walk(sel.fromClause, (n) => {
    const j = as(n, 'JoinExpr');
    if (!j || !j.jointype || j.jointype === 'JOIN_INNER') return;
    const [l, r] = [tenantRows(j.larg), tenantRows(j.rarg)];
    const keepsLeft = j.jointype === 'JOIN_LEFT' || j.jointype === 'JOIN_FULL';
    const keepsRight = j.jointype === 'JOIN_RIGHT' || j.jointype === 'JOIN_FULL';
    if ((keepsLeft && !l && r) || (keepsRight && !r && l))
      throw refuse('outer join keeping the rows of a reference table', 'across shards: every shard would return them');
  });
}
