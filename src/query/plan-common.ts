import type { SelectStmt } from '@pgsql/types';
import { ExitCode, ShardctlError } from '../errors.js';
import { constValue } from './route-query.js';
import {
  as,
  columnName,
  deparse,
  funcCall,
  funcName,
  kind,
  rewrite,
  typeCast,
  clone,
  walk,
  type Node,
} from './sql-ast.js';

/** A select-list entry: its output name (if given) and expression. */
export interface Target {
  name: string | undefined;
  val: Node;
}

/** The next step after a refused read: one shard answers anything PostgreSQL does. */
export const READ_HINT = 'answer it on one shard with --tenant ID or --shard NAME, or rewrite the query';

/**
 * The next step after a refused write or lock. `shardctl query` refuses them on every path (--tenant and
 * --shard included), so the hint names what does write: a client connected to the tenant's shard, and
 * `migrate` for schema changes on every shard.
 */
export const WRITE_HINT =
  'shardctl query only reads, with --tenant and --shard too: run a write with psql on the shard `shardctl locate TENANT` names; change the schema of every shard with `shardctl migrate create NAME` and `shardctl migrate`';

/**
 * The refusal of a construct that cannot be answered exactly across shards (exit code 7). The hint
 * defaults to the read hint (--tenant/--shard); writes pass {@link WRITE_HINT}. `extra` adds to the
 * details what a later stage may act on.
 *
 * @example
 * throw refuse('window function', 'across shards cannot be merged exactly');
 */
export function refuse(
  construct: string,
  why: string,
  hint: string = READ_HINT,
  extra: Record<string, unknown> = {},
): ShardctlError {
  return new ShardctlError(`refused: ${construct} ${why}`, {
    code: 'REFUSED',
    exitCode: ExitCode.Refused,
    hint,
    details: { construct, ...extra },
  });
}

/**
 * A select-list entry node.
 *
 * @example
 * resTarget(columnRef('x'), '__c0') // x AS __c0
 */
export function resTarget(val: Node, name: string): Node {
  return { ResTarget: { name, val } };
}

/**
 * The output name PostgreSQL gives an unnamed select-list expression.
 *
 * @example
 * outputName(funcCall('count', [])) // 'count'
 */
export function outputName(val: Node): string {
  const c = columnName(val);
  if (c) return c;
  const f = as(val, 'FuncCall');
  return f ? funcName(f) : '?column?';
}

/**
 * The select list of a SELECT as targets.
 *
 * @example
 * targetsOf(sel).map((t) => t.name)
 */
export function targetsOf(sel: SelectStmt): Target[] {
  return (sel.targetList ?? []).map((t) => {
    const r = as(t, 'ResTarget');
    return { name: r?.name, val: r?.val ?? t };
  });
}

/**
 * The collation of an expression (through a text cast: pg_collation_for raises on non-collatable types).
 *
 * @example
 * deparse(collationOf(columnRef('email'))) // 'pg_collation_for(email::text)'
 */
export function collationOf(expr: Node): Node {
  return funcCall('pg_collation_for', [typeCast(clone(expr), 'text')]);
}

/**
 * Deparses a shard query and keeps only the parameters it still uses, renumbered (LIMIT $2 turned into
 * a constant leaves $2 unused, and PostgreSQL cannot type an unused parameter).
 *
 * @example
 * shardQuery({ SelectStmt: s }, params) // { shardSql: 'SELECT ... WHERE x = $1', params: ['v'] }
 */
export function shardQuery(stmt: Node, params: unknown[]): { shardSql: string; params: unknown[] } {
  const used = new Set<number>();
  walk(stmt, (n) => {
    const p = as(n, 'ParamRef');
    if (p) used.add(p.number ?? 0);
  });
  const order = [...used].sort((a, b) => a - b);
  const renumber = new Map(order.map((n, i) => [n, i + 1]));
  const out = rewrite(stmt, (n) => {
    const p = as(n, 'ParamRef');
    return p ? { ParamRef: { ...p, number: renumber.get(p.number ?? 0) } } : undefined;
  });
  return { shardSql: deparse(out), params: order.map((n) => params[n - 1]) };
}

/**
 * The expression a GROUP BY or ORDER BY item means: a position or an output name resolves to the
 * select-list expression, anything else is itself.
 *
 * @example
 * resolveSortExpr(intConst(1), targets) // targets[0].val
 */
export function resolveSortExpr(node: Node, targets: Target[]): Node {
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
  if (name && as(node, 'ColumnRef')?.fields?.length === 1) {
    const t = targets.find((x) => x.name === name);
    if (t) return t.val;
  }
  return node;
}

/**
 * A LIMIT or OFFSET value: a constant (or bound parameter), else a refusal.
 *
 * @example
 * limitOf(intConst(10), [], 'LIMIT') // 10n
 */
export function limitOf(n: Node | undefined, params: unknown[], what: string): bigint | undefined {
  if (!n) return undefined;
  if (as(n, 'A_Const')?.isnull) return undefined;
  const v = constValue(n, params);
  if (v === undefined || !/^\d+$/.test(v))
    throw refuse(`${what} with an expression`, 'cannot be split across shards: use a constant');
  return BigInt(v);
}

/** Aliases (else names) of the relations in a SELECT's FROM: a bare column reference to one is its whole row. */
function relationAliases(s: SelectStmt): Set<string> {
  const out = new Set<string>();
  walk(s.fromClause, (n) => {
    const rv = as(n, 'RangeVar');
    if (rv) out.add(rv.alias?.aliasname ?? rv.relname ?? '');
    const sub = as(n, 'RangeSubselect');
    if (sub?.alias?.aliasname) out.add(sub.alias.aliasname);
    return kind(n) === 'RangeSubselect' || kind(n) === 'SubLink' ? 'skip' : undefined;
  });
  return out;
}

/**
 * Refuses a row value as a column the shards return for a final query: an anonymous record (`(a, b)`,
 * `ROW(a, b)`) cannot be read back from text, and a table's row type (`o`, `o.*`) has another OID on
 * each shard. The construct is named, so the planner answers by pulling the rows up instead.
 *
 * @example
 * refuseRowValued(parsedExpr('(customer, qty)'), sel) // throws REFUSED, construct 'row value ...'
 */
export function refuseRowValued(expr: Node, s: SelectStmt): void {
  const c = as(expr, 'ColumnRef');
  const fields = c?.fields ?? [];
  const wholeRow =
    (fields.length === 1 && relationAliases(s).has(columnName(expr) ?? '')) ||
    (fields.length > 1 && kind(fields[fields.length - 1]) === 'A_Star');
  if (as(expr, 'RowExpr') || wholeRow)
    throw refuse(
      `row value ${deparse(expr)} as a merged column`,
      'across shards cannot be read back exactly (an anonymous record has no input function; a row type differs per shard)',
      'list its fields as separate columns, or answer it on one shard with --tenant ID or --shard NAME',
    );
}

/**
 * A column reference that must be grouped, refused as PostgreSQL would.
 *
 * @example
 * throw ungrouped(columnRef('x'));
 */
export function ungrouped(x: Node): ShardctlError {
  return new ShardctlError(
    `column ${deparse(x)} must appear in the GROUP BY clause or be used in an aggregate function`,
    { code: 'SYNTAX', exitCode: ExitCode.Usage },
  );
}
