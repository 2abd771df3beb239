/** The final query of a pull-up: the user's query, run by PostgreSQL on one shard over the pulled-up rows. */
import type { ShardPools } from '../db/shard-pools.js';
import { fieldsOf } from './merge-final.js';
import { PULLED } from './plan-pullup.js';
import type { PullupPlan } from './plan-types.js';
import type { QueryField, Row } from './query-types.js';
import { queryRows, withReadOnlySession, type ShardRows } from './shard-session.js';
import { as, deparse, parseSql } from './sql-ast.js';

const TYPES_SQL =
  'SELECT format_type(t, m) AS t FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS x(t, m, i) ORDER BY i';

// A column's own collation when it is not the database default (100): the CTE must keep it, as a
// column of the table would order and compare under it.
const COLLATIONS_SQL = `SELECT a.attname AS n, quote_ident(ns.nspname) || '.' || quote_ident(c.collname) AS c
FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation JOIN pg_namespace ns ON ns.oid = c.collnamespace
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attcollation NOT IN (0, 100)`;

function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Runs a pull-up plan's final query on the first shard that answered (read only) over every shard's rows,
 * passed as text arrays and cast back to the table's column types and collations.
 *
 * @example
 * const { fields, rows } = await combinePullup(pools, plan, shardResults, {});
 */
export async function combinePullup(
  pools: ShardPools,
  plan: PullupPlan,
  results: ShardRows[],
  options: { statementTimeoutMs?: number },
): Promise<{ fields: QueryField[]; rows: Row[] }> {
  const first = results[0]!;
  const rows = results.flatMap((r) => r.rows);
  // The first planned shard, which answered (with --allow-partial it may be another that did).
  return withReadOnlySession(pools, first.shard, options.statementTimeoutMs, async (c) => {
    const types = (
      await c.query<{ t: string }>(TYPES_SQL, [
        first.fields.map((f) => f.dataTypeID),
        first.fields.map((f) => f.dataTypeModifier),
      ])
    ).rows.map((r) => r.t);
    const collations = new Map(
      (await c.query<{ n: string; c: string }>(COLLATIONS_SQL, [plan.relation])).rows.map((r) => [r.n, r.c]),
    );
    const width = first.fields.length;
    const cols = first.fields.map((f, i) => {
      const coll = collations.get(f.name);
      return `u.c${i}::${types[i]}${coll ? ` COLLATE ${coll}` : ''} AS ${ident(f.name)}`;
    });
    const args = Array.from({ length: width }, (_, i) => `$${i + 1}::text[]`).join(', ');
    const names = Array.from({ length: width }, (_, i) => `c${i}`).join(', ');
    const cte = `WITH ${PULLED} AS (SELECT ${cols.join(', ')} FROM unnest(${args}) AS u(${names})) SELECT 1`;
    const withClause = as(parseSql(cte)[0], 'SelectStmt')!.withClause!;
    const sql = deparse({ SelectStmt: { ...plan.final, withClause } });
    const columns = Array.from({ length: width }, (_, i) => rows.map((r) => r[i] ?? null));
    const r = await queryRows(c, sql, columns);
    return { fields: fieldsOf(r.fields), rows: r.rows };
  });
}
