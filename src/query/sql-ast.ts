/* eslint-disable @typescript-eslint/no-explicit-any */
/**
 * Helpers over the PostgreSQL parse tree (libpg-query's JSON form). Nodes are `{ Kind: { ...fields } }`.
 * The parser and deparser are loaded on first use: only `shardctl query` pays for them.
 */

/** A parse-tree node as JSON. */
export type Node = any;

let parser: { parseSync(sql: string): any } | undefined;
let deparser: { deparseSync(node: any, opts?: any): string } | undefined;

/** Loads the PostgreSQL parser (WebAssembly) and the deparser. */
export async function loadSqlTools(): Promise<void> {
  if (!parser) {
    const lib = (await import('libpg-query')) as any;
    await lib.loadModule();
    parser = lib;
  }
  if (!deparser) deparser = (await import('pgsql-deparser')) as any;
}

/** Parses SQL with PostgreSQL's own grammar; throws the parser's error (with its cursor position). */
export function parseSql(sql: string): Node[] {
  if (!parser) throw new Error('loadSqlTools() first');
  return parser.parseSync(sql).stmts.map((s: any) => s.stmt);
}

/** SQL text of a node (a statement or an expression). */
export function deparse(node: Node): string {
  if (!deparser) throw new Error('loadSqlTools() first');
  return deparser.deparseSync(node, { pretty: false }).trim();
}

/** The kind of a node: `SelectStmt`, `ColumnRef`, ... */
export function kind(n: Node): string | undefined {
  return n && typeof n === 'object' && !Array.isArray(n) ? Object.keys(n)[0] : undefined;
}

/** The fields of a node of the given kind, or undefined. */
export function as(n: Node, k: string): any {
  return kind(n) === k ? n[k] : undefined;
}

/** A copy of a node without `location` fields, to compare expressions structurally. */
export function shape(n: Node): string {
  return JSON.stringify(n, (key, v) =>
    key === 'location' || key.endsWith('_location') || key === 'rexpr_list_start' || key === 'rexpr_list_end'
      ? undefined
      : v,
  );
}

/** Deep copy. */
export function clone<T>(n: T): T {
  return JSON.parse(JSON.stringify(n)) as T;
}

/** Visits every node under `n` (depth first, parents first). */
export function walk(n: Node, visit: (node: Node, key: string | undefined) => void | 'skip', key?: string): void {
  if (Array.isArray(n)) {
    for (const x of n) walk(x, visit, key);
    return;
  }
  if (!n || typeof n !== 'object') return;
  if (visit(n, key) === 'skip') return;
  for (const [k, v] of Object.entries(n)) if (v && typeof v === 'object') walk(v, visit, k);
}

/** Replaces nodes bottom-up: `fn` returns a replacement or undefined to keep (and descend). */
export function rewrite(n: Node, fn: (node: Node) => Node | undefined): Node {
  if (Array.isArray(n)) return n.map((x) => rewrite(x, fn));
  if (!n || typeof n !== 'object') return n;
  const r = fn(n);
  if (r !== undefined) return r;
  const out: any = {};
  for (const [k, v] of Object.entries(n)) out[k] = v && typeof v === 'object' ? rewrite(v, fn) : v;
  return out;
}

/** Name of a function call, lower case, without schema (`pg_catalog.sum` -> `sum`). */
export function funcName(fc: any): string {
  const parts = (fc.funcname ?? []).map((p: any) => p.String?.sval ?? '');
  return String(parts[parts.length - 1] ?? '').toLowerCase();
}

/** A column reference node. */
export function columnRef(...fields: string[]): Node {
  return { ColumnRef: { fields: fields.map((f) => ({ String: { sval: f } })) } };
}

/** A type cast node: `expr::type`. */
export function typeCast(arg: Node, typeName: string): Node {
  return {
    TypeCast: { arg, typeName: { names: typeName.split('.').map((p) => ({ String: { sval: p } })), typemod: -1 } },
  };
}

/** A function call node. */
export function funcCall(name: string, args: Node[], extra: Record<string, unknown> = {}): Node {
  return { FuncCall: { funcname: [{ String: { sval: name } }], args, funcformat: 'COERCE_EXPLICIT_CALL', ...extra } };
}

/** An integer constant. */
export function intConst(v: number): Node {
  return { A_Const: { ival: { ival: v } } };
}

/** The last field of a column reference (`t.tenant_id` -> `tenant_id`), or undefined for `*`. */
export function columnName(n: Node): string | undefined {
  const c = as(n, 'ColumnRef');
  if (!c) return undefined;
  const last = c.fields[c.fields.length - 1];
  return last?.String?.sval;
}

/** The qualifier of a column reference (`t.tenant_id` -> `t`). */
export function columnQualifier(n: Node): string | undefined {
  const c = as(n, 'ColumnRef');
  if (!c || c.fields.length < 2) return undefined;
  return c.fields[c.fields.length - 2]?.String?.sval;
}

/** Top-level AND conjuncts of a boolean expression. */
export function conjuncts(n: Node): Node[] {
  if (!n) return [];
  const b = as(n, 'BoolExpr');
  if (b && b.boolop === 'AND_EXPR') return b.args.flatMap(conjuncts);
  return [n];
}
