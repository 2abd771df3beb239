/**
 * Helpers over the PostgreSQL parse tree (libpg-query's JSON form, typed by `@pgsql/types`). Nodes are
 * `{ Kind: { ...fields } }`. The parser and deparser are loaded on first use: only `shardctl query` pays
 * for them.
 */
import type { Node, ParseResult, FuncCall, TypeName } from '@pgsql/types';

export type { Node } from '@pgsql/types';

type KeysOfUnion<T> = T extends unknown ? keyof T : never;
/** The kind of a parse-tree node: `SelectStmt`, `ColumnRef`, ... */
export type NodeKind = KeysOfUnion<Node>;
/** The fields of a node of kind `K` (`NodeOf<'SelectStmt'>` is `SelectStmt`). */
export type NodeOf<K extends NodeKind> = Extract<Node, Record<K, unknown>>[K];

interface Parser {
  loadModule(): Promise<void>;
  parseSync(sql: string): ParseResult;
}
interface Deparser {
  deparseSync(node: Node, opts?: { pretty?: boolean }): string;
}

let parser: Parser | undefined;
let deparser: Deparser | undefined;
let loading: Promise<void> | undefined;

/**
 * Loads the PostgreSQL parser (WebAssembly) and the deparser, once per process.
 *
 * @example
 * await loadSqlTools();
 * parseSql('SELECT 1');
 */
export function loadSqlTools(): Promise<void> {
  // One load however many callers wait on it (the query engine starts it while it connects).
  loading ??= (async () => {
    const lib: Parser = await import('libpg-query');
    await lib.loadModule();
    parser = lib;
    deparser = await import('pgsql-deparser');
  })();
  // A failed load is tried again by the next caller.
  loading.catch(() => (loading = undefined));
  return loading;
}

/**
 * Parses SQL with PostgreSQL's own grammar; throws the parser's error (with its cursor position).
 *
 * @example
 * parseSql('SELECT 1; SELECT 2').length // 2
 */
export function parseSql(sql: string): Node[] {
  if (!parser) throw new Error('loadSqlTools() first');
  return (parser.parseSync(sql).stmts ?? []).flatMap((s) => (s.stmt ? [s.stmt] : []));
}

/**
 * SQL text of a node (a statement or an expression).
 *
 * @example
 * deparse(columnRef('t', 'id')) // 't.id'
 */
export function deparse(node: Node): string {
  if (!deparser) throw new Error('loadSqlTools() first');
  return deparser.deparseSync(node, { pretty: false }).trim();
}

/**
 * The kind of a node: `SelectStmt`, `ColumnRef`, ...
 *
 * @example
 * kind({ A_Star: {} }) // 'A_Star'
 */
export function kind(n: unknown): string | undefined {
  return n && typeof n === 'object' && !Array.isArray(n) ? Object.keys(n)[0] : undefined;
}

/**
 * The fields of a node of the given kind, or undefined.
 *
 * @example
 * as(stmt, 'SelectStmt')?.targetList
 */
export function as<K extends NodeKind>(n: unknown, k: K): NodeOf<K> | undefined {
  return kind(n) === k ? (n as Record<K, NodeOf<K>>)[k] : undefined;
}

/**
 * A node of kind `k` with these fields.
 *
 * @example
 * node('ResTarget', { name: 'n', val: columnRef('x') })
 */
export function node<K extends NodeKind>(k: K, fields: NodeOf<K>): Node {
  return { [k]: fields } as unknown as Node;
}

/**
 * A string of a node's text, without `location` fields, to compare expressions structurally.
 *
 * @example
 * shape(parsed('a + 1')) === shape(parsed('a  +  1')) // true
 */
export function shape(n: unknown): string {
  return JSON.stringify(n, (key, v: unknown) =>
    key === 'location' || key.endsWith('_location') || key === 'rexpr_list_start' || key === 'rexpr_list_end'
      ? undefined
      : v,
  );
}

/**
 * Deep copy of a parse tree (plain JSON).
 *
 * @example
 * const copy = clone(stmt);
 */
export function clone<T>(n: T): T {
  return JSON.parse(JSON.stringify(n)) as T;
}

/**
 * Visits every node under `n` (depth first, parents first); `visit` returns 'skip' not to descend.
 *
 * @example
 * walk(stmt, (n) => void (as(n, 'ParamRef') && used.push(n)));
 */
export function walk(n: unknown, visit: (node: Node, key: string | undefined) => void | 'skip', key?: string): void {
  if (Array.isArray(n)) {
    for (const x of n) walk(x, visit, key);
    return;
  }
  if (!n || typeof n !== 'object') return;
  if (visit(n as Node, key) === 'skip') return;
  for (const [k, v] of Object.entries(n)) if (v && typeof v === 'object') walk(v, visit, k);
}

/**
 * Replaces nodes bottom-up: `fn` returns a replacement or undefined to keep (and descend).
 *
 * @example
 * rewrite(expr, (n) => (as(n, 'ParamRef') ? intConst(1) : undefined));
 */
export function rewrite<T>(n: T, fn: (node: Node) => Node | undefined): T {
  if (Array.isArray(n)) return n.map((x: unknown) => rewrite(x, fn)) as T;
  if (!n || typeof n !== 'object') return n;
  const r = fn(n as unknown as Node);
  if (r !== undefined) return r as T;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(n)) out[k] = v && typeof v === 'object' ? rewrite(v, fn) : v;
  return out as T;
}

/**
 * The text of a `String` node, or undefined.
 *
 * @example
 * stringOf({ String: { sval: 'x' } }) // 'x'
 */
export function stringOf(n: Node | undefined): string | undefined {
  return as(n, 'String')?.sval;
}

/**
 * Name of a function call, lower case, without schema (`pg_catalog.sum` -> `sum`).
 *
 * @example
 * funcName(as(parsed('pg_catalog.SUM(x)'), 'FuncCall')!) // 'sum'
 */
export function funcName(fc: FuncCall): string {
  const parts = (fc.funcname ?? []).map((p) => stringOf(p) ?? '');
  return String(parts[parts.length - 1] ?? '').toLowerCase();
}

/**
 * A `String` node.
 *
 * @example
 * str('sum') // { String: { sval: 'sum' } }
 */
export function str(sval: string): Node {
  return { String: { sval } };
}

/**
 * A column reference node.
 *
 * @example
 * deparse(columnRef('u', 'c0')) // 'u.c0'
 */
export function columnRef(...fields: string[]): Node {
  return { ColumnRef: { fields: fields.map(str) } };
}

/**
 * A type cast node: `expr::type`.
 *
 * @example
 * deparse(typeCast(columnRef('x'), 'text')) // 'x::text'
 */
export function typeCast(arg: Node, typeName: string | TypeName): Node {
  const t = typeof typeName === 'string' ? { names: typeName.split('.').map(str), typemod: -1 } : typeName;
  return { TypeCast: { arg, typeName: t } };
}

/**
 * A function call node.
 *
 * @example
 * deparse(funcCall('sum', [columnRef('x')])) // 'sum(x)'
 */
export function funcCall(name: string, args: Node[], extra: Partial<FuncCall> = {}): Node {
  return { FuncCall: { funcname: [str(name)], args, funcformat: 'COERCE_EXPLICIT_CALL', ...extra } };
}

/**
 * An integer constant.
 *
 * @example
 * deparse(intConst(3)) // '3'
 */
export function intConst(v: number): Node {
  return { A_Const: { ival: { ival: v } } };
}

/**
 * The last field of a column reference (`t.tenant_id` -> `tenant_id`), or undefined for `*`.
 *
 * @example
 * columnName(columnRef('t', 'tenant_id')) // 'tenant_id'
 */
export function columnName(n: Node | undefined): string | undefined {
  const fields = as(n, 'ColumnRef')?.fields ?? [];
  return stringOf(fields[fields.length - 1]);
}

/**
 * The qualifier of a column reference (`t.tenant_id` -> `t`).
 *
 * @example
 * columnQualifier(columnRef('t', 'tenant_id')) // 't'
 */
export function columnQualifier(n: Node | undefined): string | undefined {
  const fields = as(n, 'ColumnRef')?.fields ?? [];
  return fields.length < 2 ? undefined : stringOf(fields[fields.length - 2]);
}

/**
 * Top-level AND conjuncts of a boolean expression.
 *
 * @example
 * conjuncts(where).length // 2 for `a = 1 AND b = 2`
 */
export function conjuncts(n: Node | undefined): Node[] {
  if (!n) return [];
  const b = as(n, 'BoolExpr');
  if (b && b.boolop === 'AND_EXPR') return (b.args ?? []).flatMap(conjuncts);
  return [n];
}

/**
 * The operator name of an `A_Expr` (`=`, `-`, ...), or undefined.
 *
 * @example
 * operatorOf(as(parsed('a = 1'), 'A_Expr')!) // '='
 */
export function operatorOf(e: { name?: Node[] }): string | undefined {
  return stringOf(e.name?.[0]);
}
