/** The final query of a pull-up: the user's query, run by PostgreSQL on one shard over the pulled-up rows. */
import type { ShardPools } from '../db/shard-pools.js';
import { fieldsOf } from './merge-final.js';
import type { PullupPlan } from './plan-types.js';
import type { QueryField, Row } from './query-types.js';
import { queryRows, withReadOnlySession, type ShardRows } from './shard-session.js';
import { as, deparse, parseSql } from './sql-ast.js';

const TYPES_SQL =
  'SELECT format_type(t, m) AS t FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS x(t, m, i) ORDER BY i';

// A column's own collation when it is not the database default (100): the CTE must keep it, as a
// column of the table would order and compare under it. $1: the tables, as the query named them.
const COLLATIONS_SQL = `SELECT r.i::int AS i, a.attname AS n, quote_ident(ns.nspname) || '.' || quote_ident(c.collname) AS c
FROM unnest($1::text[]) WITH ORDINALITY AS r(rel, i)
JOIN pg_attribute a ON a.attrelid = to_regclass(r.rel)
JOIN pg_collation c ON c.oid = a.attcollation JOIN pg_namespace ns ON ns.oid = c.collnamespace
WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attcollation NOT IN (0, 100)`;

function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Runs a pull-up plan's final query on the first shard that answered (read only) over every shard's rows
 * of every part, passed as text arrays and cast back to the tables' column types and collations.
 * `results[k]` holds the shards' answers to `plan.parts[k]`.
 *
 * @example
 * const { fields, rows } = await combinePullup(pools, plan, [shardResults], {});
 */
export async function combinePullup(
  pools: ShardPools,
  plan: PullupPlan,
  results: ShardRows[][],
  options: { statementTimeoutMs?: number },
): Promise<{ fields: QueryField[]; rows: Row[] }> {
  const firsts = results.map((r) => r[0]!);
  // The first planned shard, which answered (with --allow-partial it may be another that did).
  return withReadOnlySession(pools, firsts[0]!.shard, options.statementTimeoutMs, async (c) => {
    const fields = firsts.flatMap((f) => f.fields);
    const types = (
      await c.query<{ t: string }>(TYPES_SQL, [fields.map((f) => f.dataTypeID), fields.map((f) => f.dataTypeModifier)])
    ).rows.map((r) => r.t);
    const collations = (
      await c.query<{ i: number; n: string; c: string }>(COLLATIONS_SQL, [
        // quoted as the query's identifiers were folded: to_regclass would fold "Accounts" again
        plan.parts.map(
          (p) => `${p.table.schema !== undefined ? `${ident(p.table.schema)}.` : ''}${ident(p.table.name)}`,
        ),
      ])
    ).rows;
    const ctes: string[] = [];
    const args: (string | null)[][] = [];
    plan.parts.forEach((part, k) => {
      const own = new Map(collations.filter((r) => r.i === k + 1).map((r) => [r.n, r.c]));
      const cols = firsts[k]!.fields.map((f, i) => {
        const coll = own.get(f.name);
        return `u.c${i}::${types[args.length + i]}${coll ? ` COLLATE ${coll}` : ''} AS ${ident(f.name)}`;
      });
      const from = args.length;
      const width = cols.length;
      const arrays = Array.from({ length: width }, (_, i) => `$${from + i + 1}::text[]`).join(', ');
      const names = Array.from({ length: width }, (_, i) => `c${i}`).join(', ');
      ctes.push(`${part.cte} AS (SELECT ${cols.join(', ')} FROM unnest(${arrays}) AS u(${names}))`);
      const rows = results[k]!.flatMap((r) => r.rows);
      for (let i = 0; i < width; i++) args.push(rows.map((r) => r[i] ?? null));
    });
    const withClause = as(parseSql(`WITH ${ctes.join(', ')} SELECT 1`)[0], 'SelectStmt')!.withClause!;
    const sql = deparse({ SelectStmt: { ...plan.final, withClause } });
    const r = await queryRows(c, sql, args);
    return { fields: fieldsOf(r.fields), rows: r.rows };
  });
}
