/**
 * The final PostgreSQL combine: the plan's final query runs on one shard over every shard's rows,
 * passed as text arrays and cast back to the shards' types, with the shards' collations.
 */
import type { Node as PgNode, SelectStmt, TypeName } from '@pgsql/types';
import type { ShardPools } from '../db/shard-pools.js';
import { ExitCode, ShardctlError } from '../errors.js';
import { mergeOpOf, type MergeOp } from './merge-ops.js';
import type { FinalPlan } from './plan-types.js';
import type { QueryField, Row } from './query-types.js';
import { queryRows, withReadOnlySession, type ShardRows } from './shard-session.js';
import { as, columnRef, deparse, funcCall, parseSql, rewrite, str, typeCast, type Node } from './sql-ast.js';

/**
 * The result fields of a shard answer.
 *
 * @example
 * fieldsOf(shardRows.fields) // [{ name: 'id', typeOid: 20 }]
 */
export function fieldsOf(fields: { name: string; dataTypeID: number }[]): QueryField[] {
  return fields.map((f) => ({ name: f.name, typeOid: f.dataTypeID }));
}

/** Shards whose result column types differ have different schemas: no merge is exact. */
function assertSameTypes(results: ShardRows[]): void {
  const first = results[0]!;
  for (const r of results) {
    for (let i = 0; i < first.fields.length; i++) {
      if (r.fields[i]!.dataTypeID !== first.fields[i]!.dataTypeID) {
        throw new ShardctlError(
          `shards disagree on the type of result column ${i + 1} (${first.shard} and ${r.shard}): their schemas differ`,
          { code: 'REFUSED', exitCode: ExitCode.Refused, hint: 'shardctl verify shows the schema drift' },
        );
      }
    }
  }
}

/** Collation of text keys, by shard column: every row must say the same, or the order is not defined. */
function collationsOf(plan: FinalPlan, rows: Row[]): Record<number, string> {
  const collate: Record<number, string> = {};
  for (const [col, collCol] of Object.entries(plan.collations)) {
    const names = new Set(
      rows.map((r) => r[Number(collCol)]).filter((v): v is string => v !== null && v !== undefined),
    );
    if (names.size > 1)
      throw new ShardctlError(
        `refused: shards sort result column ${Number(col) + 1} with different collations (${[...names].join(', ')})`,
        { code: 'REFUSED', exitCode: ExitCode.Refused },
      );
    const [name] = [...names];
    if (name) collate[Number(col)] = name;
  }
  return collate;
}

/** Column types and collations of the shard result, as the final query must restore them. */
interface ColumnTypes {
  types: string[];
  collate: Record<number, string>;
}

function typeNameOf(type: string): TypeName {
  const stmt = as(parseSql(`SELECT NULL::${type}`)[0], 'SelectStmt');
  return as(as(stmt?.targetList?.[0], 'ResTarget')?.val, 'TypeCast')!.typeName!;
}

function cast(node: Node, type: string): Node {
  return typeCast(node, typeNameOf(type));
}

/** Shard column `i` of the unnest: cast back to its type, under the shards' collation for text. */
function columnOf(i: number, t: ColumnTypes): Node {
  const typed = cast(columnRef('u', `c${i}`), t.types[i]!);
  const coll = t.collate[i];
  if (!coll || !/^(text|character varying|character|name|citext)\b/.test(t.types[i]!)) return typed;
  return { CollateClause: { arg: typed, collname: [str(coll.replace(/^"|"$/g, '').replace(/""/g, '"'))] } };
}

/**
 * Floating-point addition depends on the order of its terms: partial sums added shard by shard can
 * differ in the last digits from one server's sum over the same rows, so they are refused, not merged.
 */
function refuseFloat(fn: string, type: string): void {
  if (!/^(double precision|real)$/.test(type)) return;
  throw new ShardctlError(
    `refused: ${fn}() of ${type} across shards: floating-point addition depends on the order of the rows, so partial sums merged from the shards can differ from one server's answer in the last digits`,
    { code: 'REFUSED', exitCode: ExitCode.Refused, hint: `cast to numeric for an exact answer: ${fn}(x::numeric)` },
  );
}

/** The SQL expression of one merge operation. */
function expressionOf(op: MergeOp, t: ColumnTypes): Node {
  switch (op.op) {
    case 'column':
      return columnOf(op.col, t);
    case 'sum':
      refuseFloat('sum', t.types[op.col]!);
      return cast(funcCall('sum', [columnOf(op.col, t)]), t.types[op.col]!);
    case 'avg': {
      const type = t.types[op.sum]!;
      refuseFloat('avg', type);
      const div = /^(bigint|integer|smallint|numeric)/.test(type) ? 'numeric' : undefined;
      if (!div)
        throw new ShardctlError(`refused: avg() of ${type} across shards cannot be merged exactly`, {
          code: 'REFUSED',
          exitCode: ExitCode.Refused,
        });
      const sum = (col: number) => cast(funcCall('sum', [columnOf(col, t)]), div);
      return { A_Expr: { kind: 'AEXPR_OP', name: [str('/')], lexpr: sum(op.sum), rexpr: sum(op.count) } };
    }
  }
}

/** `unnest($1::text[], ...) AS u(c0, ...)`: the shard rows as a relation. */
function fromUnnest(n: number): PgNode {
  const args = Array.from({ length: n }, (_, i) => `$${i + 1}::text[]`).join(', ');
  const cols = Array.from({ length: n }, (_, i) => `c${i}`).join(', ');
  return as(parseSql(`SELECT 1 FROM unnest(${args}) AS u(${cols})`)[0], 'SelectStmt')!.fromClause![0]!;
}

/** The final query's SQL: merge operations replaced by expressions over the unnested shard rows. */
function finalSql(plan: FinalPlan, t: ColumnTypes, width: number): string {
  const resolved = rewrite(plan.final, (x) => {
    const op = mergeOpOf(x);
    return op ? expressionOf(op, t) : undefined;
  });
  const stmt: SelectStmt = { ...resolved, fromClause: [fromUnnest(width)] };
  return deparse({ SelectStmt: stmt });
}

/**
 * Runs the plan's final query over every shard's rows on one shard (read only): PostgreSQL itself
 * re-groups, merges partial aggregates, applies HAVING, ORDER BY and LIMIT/OFFSET.
 *
 * @example
 * const { fields, rows } = await combineFinal(pools, plan, shardResults, { statementTimeoutMs: 5000 });
 */
export async function combineFinal(
  pools: ShardPools,
  plan: FinalPlan,
  results: ShardRows[],
  options: { statementTimeoutMs?: number },
): Promise<{ fields: QueryField[]; rows: Row[] }> {
  assertSameTypes(results);
  const first = results[0]!;
  const rows = results.flatMap((r) => r.rows);
  const collate = collationsOf(plan, rows);
  const on = plan.shards.includes(first.shard) ? first.shard : plan.shards[0]!;
  return withReadOnlySession(pools, on, options.statementTimeoutMs, async (c) => {
    const types = (
      await c.query<{ t: string }>(
        'SELECT format_type(t, m) AS t FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS x(t, m, i) ORDER BY i',
        [first.fields.map((f) => f.dataTypeID), first.fields.map((f) => f.dataTypeModifier)],
      )
    ).rows.map((r) => r.t);
    const width = first.fields.length;
    const columns = Array.from({ length: width }, (_, i) => rows.map((r) => r[i] ?? null));
    const r = await queryRows(c, finalSql(plan, { types, collate }, width), columns);
    return { fields: fieldsOf(r.fields), rows: r.rows };
  });
}
