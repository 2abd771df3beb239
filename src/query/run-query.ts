/* eslint-disable @typescript-eslint/no-explicit-any */
import type { PoolClient } from 'pg';
import type { ShardMap } from '../config/shard-map.js';
import { ExitCode, fromDriverError, ShardctlError } from '../errors.js';
import { createRouter, type Router } from '../router/create-router.js';
import { functionNames, planQuery, setAggregateNames, type QueryPlan } from './plan-query.js';
import { as, columnRef, deparse, funcCall, parseSql, rewrite, type Node } from './sql-ast.js';
import { loadSqlTools } from './sql-ast.js';

/** A result column. */
export interface QueryField {
  name: string;
  /** PostgreSQL type oid (20 int8, 1700 numeric, 25 text, ...). */
  typeOid: number;
}

/** The answer of {@link runQuery}: rows as PostgreSQL's text values (exact: no JavaScript numbers). */
export interface QueryResult {
  fields: QueryField[];
  rows: (string | null)[][];
  plan: QueryPlan;
  /** Shards left out with `allowPartial`, with the reason. */
  missing: { shard: string; error: string }[];
}

/** Options of {@link runQuery}. */
export interface RunQueryOptions {
  /** Only this tenant's shard. */
  tenant?: string;
  /** Only these shards. */
  shards?: string[];
  /** statement_timeout on every shard, ms. Default: none. */
  statementTimeoutMs?: number;
  /** Connection timeout, ms. Default 5000. */
  timeoutMs?: number;
  /** Answer from the reachable shards; name the others in `missing`. Default false. */
  allowPartial?: boolean;
  /** Most rows held in memory at once (shard rows before merging). Default 1,000,000. */
  maxRows?: number;
  /** Plan only: run nothing. */
  explain?: boolean;
  /** An open router to reuse (the library's `router.scatter`). */
  router?: Router;
  /** Internal: sort in a final PostgreSQL query instead of the streaming merge. */
  finalSort?: boolean;
}

// Every value stays PostgreSQL's text: int8 and numeric never pass through JavaScript numbers.
const RAW_TYPES = { getTypeParser: () => (v: string) => v } as any;

async function runOn(
  client: PoolClient,
  sql: string,
  params: unknown[],
  statementTimeoutMs: number | undefined,
  maxRows: number,
): Promise<{ fields: { name: string; dataTypeID: number; dataTypeModifier: number }[]; rows: (string | null)[][] }> {
  await client.query('BEGIN READ ONLY');
  try {
    await client.query("SET LOCAL TimeZone = 'UTC'");
    if (statementTimeoutMs) await client.query(`SET LOCAL statement_timeout = ${Math.floor(statementTimeoutMs)}`);
    const r = await client.query({ text: sql, values: params, rowMode: 'array', types: RAW_TYPES } as any);
    await client.query('COMMIT');
    if (r.rows.length > maxRows) {
      throw new ShardctlError(`a shard returned ${r.rows.length} rows, more than --max-rows ${maxRows}`, {
        code: 'MAX_ROWS',
        hint: 'add a LIMIT, narrow the WHERE, or raise --max-rows',
      });
    }
    return { fields: r.fields as any, rows: r.rows as any };
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

/**
 * Answers a SELECT across the shards exactly as one PostgreSQL holding all the data would, or refuses
 * it (exit code 7) naming the construct. Every shard query runs in a READ ONLY transaction.
 *
 * @example
 * const { fields, rows } = await runQuery(map, 'SELECT plan_id, count(*) FROM tenants GROUP BY 1 ORDER BY 1', []);
 */
export async function runQuery(
  map: ShardMap,
  sql: string,
  params: unknown[],
  options: RunQueryOptions = {},
): Promise<QueryResult> {
  await loadSqlTools();
  const router =
    options.router ??
    (await createRouter(map, {
      pool: { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 2, applicationName: 'shardctl query' },
    }));
  try {
    // Which of the query's functions are aggregates is the catalog's business (user-defined ones too).
    let names: string[] = [];
    try {
      names = functionNames(sql);
    } catch {
      // a syntax error is reported by the planner with its position
    }
    if (names.length > 0) {
      const probe = options.shards?.[0] ?? map.catalog;
      const aggs = await router.pools
        .withShard(probe, async (c) =>
          (
            await c.query<{ n: string }>(
              "SELECT DISTINCT proname AS n FROM pg_proc WHERE prokind IN ('a', 'w') AND proname = ANY($1)",
              [names],
            )
          ).rows.map((r) => r.n),
        )
        .catch(() => [] as string[]);
      setAggregateNames(aggs);
    } else setAggregateNames([]);
    const plan = planQuery({
      sql,
      params,
      map,
      locate: (t) => router.locate(t).shard,
      ...(options.shards ? { shards: options.shards } : {}),
      ...(options.tenant !== undefined ? { tenant: options.tenant } : {}),
    });
    if (options.explain) return { fields: [], rows: [], plan, missing: [] };
    if (plan.kind === 'final' && plan.sortKeys && !options.finalSort) {
      // Ordered without LIMIT: the streaming k-way merge, collected.
      const { streamQuery } = await import('./stream-query.js');
      const stream = await streamQuery(map, sql, params, { ...options, router });
      const rows: (string | null)[][] = [];
      const maxRows = options.maxRows ?? 1_000_000;
      for await (const r of stream.rows) {
        rows.push(r);
        if (rows.length > maxRows)
          throw new ShardctlError(`the answer has more than --max-rows ${maxRows} rows`, {
            code: 'MAX_ROWS',
            hint: 'stream it with shardctl query --format ndjson, add a LIMIT, or raise --max-rows',
          });
      }
      return { fields: stream.fields, rows, plan, missing: stream.missing };
    }
    const maxRows = options.maxRows ?? 1_000_000;
    const missing: QueryResult['missing'] = [];
    const results = await Promise.all(
      plan.shards.map(async (shard) => {
        try {
          return {
            shard,
            ...(await router.pools.withShard(shard, (c) =>
              runOn(c, plan.shardSql, plan.params, options.statementTimeoutMs, maxRows),
            )),
          };
        } catch (e) {
          const err = fromDriverError(e, { shard });
          if (options.allowPartial && err.code === 'UNREACHABLE') {
            missing.push({ shard, error: err.message });
            return undefined;
          }
          throw err;
        }
      }),
    );
    const ok = results.filter((r): r is NonNullable<typeof r> => r !== undefined);
    if (ok.length === 0 && plan.shards.length > 0)
      throw new ShardctlError(`no shard answered: ${missing.map((m) => m.error).join('; ')}`, { code: 'UNREACHABLE' });
    const total = ok.reduce((a, r) => a + r.rows.length, 0);
    if (total > maxRows)
      throw new ShardctlError(`the shards returned ${total} rows, more than --max-rows ${maxRows}`, {
        code: 'MAX_ROWS',
        hint: 'add a LIMIT or raise --max-rows',
      });
    const first = ok[0];
    if (!first) return { fields: [], rows: [], plan, missing };
    if (plan.kind === 'single') return { fields: first.fields.map(field), rows: first.rows, plan, missing };
    if (plan.kind === 'concat') {
      let rows = ok.flatMap((r) => r.rows);
      const from = Number(plan.offset ?? 0n);
      rows = rows.slice(from, plan.limit !== undefined ? from + Number(plan.limit) : undefined);
      return { fields: first.fields.map(field), rows, plan, missing };
    }
    return { ...(await combine(router, plan, ok, options)), plan, missing };
  } finally {
    if (!options.router) await router.close();
  }
}

function field(f: { name: string; dataTypeID: number }): QueryField {
  return { name: f.name, typeOid: f.dataTypeID };
}

/** Runs the plan's final query over every shard's rows on one shard (read only). */
async function combine(
  router: Router,
  plan: QueryPlan,
  results: {
    shard: string;
    fields: { name: string; dataTypeID: number; dataTypeModifier: number }[];
    rows: (string | null)[][];
  }[],
  options: RunQueryOptions,
): Promise<{ fields: QueryField[]; rows: (string | null)[][] }> {
  const first = results[0]!;
  const n = first.fields.length;
  for (const r of results) {
    for (let i = 0; i < n; i++) {
      if (r.fields[i]!.dataTypeID !== first.fields[i]!.dataTypeID) {
        throw new ShardctlError(
          `shards disagree on the type of result column ${i + 1} (${first.shard} and ${r.shard}): their schemas differ`,
          { code: 'REFUSED', exitCode: ExitCode.Refused, hint: 'shardctl verify shows the schema drift' },
        );
      }
    }
  }
  const rows = results.flatMap((r) => r.rows);
  // Collation of text keys: every row must say the same, or the order is not defined.
  const collate: Record<number, string> = {};
  for (const [col, collCol] of Object.entries(plan.collations ?? {})) {
    const names = new Set(rows.map((r) => r[collCol as unknown as number]).filter((v): v is string => v !== null));
    if (names.size > 1)
      throw new ShardctlError(
        `refused: shards sort result column ${Number(col) + 1} with different collations (${[...names].join(', ')})`,
        { code: 'REFUSED', exitCode: ExitCode.Refused },
      );
    const [name] = [...names];
    if (name) collate[Number(col)] = name;
  }
  const merge = plan.shards.includes(first.shard) ? first.shard : plan.shards[0]!;
  return router.pools.withShard(merge, async (c) => {
    const types = (
      await c.query<{ t: string }>(
        'SELECT format_type(t, m) AS t FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS x(t, m, i) ORDER BY i',
        [first.fields.map((f) => f.dataTypeID), first.fields.map((f) => f.dataTypeModifier)],
      )
    ).rows.map((r) => r.t);
    const finalAst = rewrite(plan.final, (x: Node) => {
      if (x && typeof x === 'object' && '__sum' in x) {
        const i = (x as any).__sum as number;
        return cast(funcCall('sum', [ref(i, types, collate)]), types[i]!);
      }
      if (x && typeof x === 'object' && '__avg' in x) {
        const [s, k] = (x as any).__avg as [number, number];
        const t = types[s]!;
        const div = /^(double precision|real)$/.test(t)
          ? 'float8'
          : /^(bigint|integer|smallint|numeric)/.test(t)
            ? 'numeric'
            : undefined;
        if (!div)
          throw new ShardctlError(`refused: avg() of ${t} across shards cannot be merged exactly`, {
            code: 'REFUSED',
            exitCode: ExitCode.Refused,
          });
        return {
          A_Expr: {
            kind: 'AEXPR_OP',
            name: [{ String: { sval: '/' } }],
            lexpr: cast(funcCall('sum', [ref(s, types, collate)]), div),
            rexpr: cast(funcCall('sum', [ref(k, types, collate)]), div),
          },
        };
      }
      const cr = as(x, 'ColumnRef');
      const name = cr?.fields?.[0]?.String?.sval;
      if (cr && cr.fields.length === 1 && typeof name === 'string' && /^__c\d+$/.test(name))
        return ref(Number(name.slice(3)), types, collate);
      return undefined;
    });
    const from = fromUnnest(n);
    finalAst.SelectStmt.fromClause = [from];
    const finalSql = deparse(finalAst);
    const columns = Array.from({ length: n }, (_, i) => rows.map((r) => r[i] ?? null));
    const r = await runOn(c, finalSql, columns, options.statementTimeoutMs, Number.MAX_SAFE_INTEGER);
    return { fields: r.fields.map(field), rows: r.rows };
  });
}

function cast(node: Node, type: string): Node {
  const parsed = parseSql(`SELECT NULL::${type}`)[0].SelectStmt.targetList[0].ResTarget.val.TypeCast.typeName;
  return { TypeCast: { arg: node, typeName: parsed } };
}

function ref(i: number, types: string[], collate: Record<number, string>): Node {
  const typed = cast(columnRef('u', `c${i}`), types[i]!);
  const coll = collate[i];
  if (!coll || !/^(text|character varying|character|name|citext)\b/.test(types[i]!)) return typed;
  return {
    CollateClause: { arg: typed, collname: [{ String: { sval: coll.replace(/^"|"$/g, '').replace(/""/g, '"') } }] },
  };
}

function fromUnnest(n: number): Node {
  const args = Array.from({ length: n }, (_, i) => `$${i + 1}::text[]`).join(', ');
  const cols = Array.from({ length: n }, (_, i) => `c${i}`).join(', ');
  return parseSql(`SELECT 1 FROM unnest(${args}) AS u(${cols})`)[0].SelectStmt.fromClause[0];
}
