/**
 * The prepare stage: parse, look up in the shards' catalog which of the query's functions are
 * aggregates and what the relations behind a `SELECT *` hold, and plan. The lookups' results are
 * passed to the planner as data.
 */
import type { ShardMap } from '../config/shard-map.js';
import type { SelectStmt } from '@pgsql/types';
import { fromDriverError, ShardctlError } from '../errors.js';
import { answerBuffered } from './answer-buffered.js';
import { hasSubLinks, substituteSubplans, type Subplan, type SubplanAnswer } from './plan-subplan.js';
import type { ShardPools } from '../db/shard-pools.js';
import { createRouter, type ShardRouter } from '../router/create-router.js';
import { functionNames } from './plan-aggregates.js';
import { shardQuery } from './plan-common.js';
import { planQuery } from './plan-query.js';
import { pulledRelations } from './plan-pullup.js';
import { derivedOf, derivedQuery, derivedTypesSql, substituteDerived, type DerivedTarget } from './plan-derived.js';
import { relationKey, starRelations, type RelationName, type StarColumns } from './plan-star.js';
import type { QueryPlan } from './plan-types.js';
import type { RunQueryOptions } from './query-types.js';
import { as, deparse, kind, loadSqlTools, parseSql, walk } from './sql-ast.js';

const AGGREGATES_SQL = "SELECT DISTINCT proname AS n FROM pg_proc WHERE prokind IN ('a', 'w') AND proname = ANY($1)";

// Each relation resolved as the shard resolves it (search_path, quoting: to_regclass of the quoted
// name), its columns in attnum order without system (attnum < 1) and dropped ones, as `*` lists them.
const STAR_COLUMNS_SQL = `
SELECT r.i::int AS i, a.attname AS c
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(s, n, i)
JOIN pg_attribute a
  ON a.attrelid = to_regclass(CASE WHEN r.s IS NULL THEN quote_ident(r.n) ELSE quote_ident(r.s) || '.' || quote_ident(r.n) END)
WHERE a.attnum > 0 AND NOT a.attisdropped
ORDER BY r.i, a.attnum`;

/**
 * Connects to every shard a query may ask (all of them unless `--tenant` or one `--shard` narrows it; none for `--explain`),
 * in the background: the connections (authentication, the server-version check) are made while the
 * parser loads and the query is planned, not after. A shard that fails here fails the query later,
 * where its error is reported; a pinned query leaves the connections unused (they close with the pools).
 * Returns what waits for the warm-ups of the given shards (never rejects).
 */
function warmConnections(router: ShardRouter, options: RunQueryOptions): (shards: string[]) => Promise<void> {
  if (options.explain || options.tenant !== undefined || options.shards?.length === 1) return async () => undefined;
  const names = options.shards ?? router.map.shards.map((s) => s.name);
  const warm = new Map(
    names.map((s) => [s, router.pools.withShard(s, async () => undefined).catch(() => undefined)] as const),
  );
  return (shards) => Promise.all(shards.map((s) => warm.get(s))).then(() => undefined);
}

/**
 * The router a query runs with: the caller's, or one of its own (closed by `release`). The parser
 * starts loading first, and the shards are connected to in the background (both overlap the catalog
 * read): a whole `shardctl query` process pays for each once, in parallel.
 *
 * @example
 * const { router, release, warmed } = await queryRouter(map, options);
 * try { const plan = await prepareQuery(...); await warmed(plan.shards); ... } finally { await release(); }
 */
export async function queryRouter(
  map: ShardMap,
  options: RunQueryOptions,
): Promise<{ router: ShardRouter; release: () => Promise<void>; warmed: (shards: string[]) => Promise<void> }> {
  // Awaited (and its failure reported) by prepareQuery.
  loadSqlTools().catch(() => undefined);
  if (options.router) return { router: options.router, release: async () => undefined, warmed: async () => undefined };
  // `trust-map`: on a fleet whose rule the catalog has not recorded the planner never pins a query by
  // `locate` (it asks every shard, or refuses --tenant), so the router's scan of every shard's rows
  // (what `check-data` does on open) would only cost time.
  const router = await createRouter(map, {
    pool: { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 2, applicationName: 'shardctl query' },
    unrecordedRule: 'trust-map',
    kysely: false,
    listen: false,
  });
  // Awaited for the plan's shards before their sessions open, so that they take the warm connections.
  const warmed = warmConnections(router, options);
  return { router, release: () => router.close(), warmed };
}

/**
 * Which of these function names the shard's catalog calls aggregates (user-defined ones too). A shard
 * that cannot answer yields none: the planner still refuses the built-in aggregates it knows.
 *
 * @example
 * await lookupAggregates(router.pools, 'shard-0', ['my_agg', 'lower']) // Set { 'my_agg' }
 */
export async function lookupAggregates(pools: ShardPools, shard: string, names: string[]): Promise<Set<string>> {
  if (names.length === 0) return new Set();
  const found = await pools
    .withShard(shard, async (c) => (await c.query<{ n: string }>(AGGREGATES_SQL, [names])).rows.map((r) => r.n))
    .catch(() => [] as string[]);
  return new Set(found);
}

/**
 * The columns of relations as a shard's catalog lists them for `*`, by `relationKey`; a relation the
 * shard does not know is absent (the planner reports it as PostgreSQL would).
 *
 * @example
 * await lookupStarColumns(router.pools, 'shard-0', [{ schema: undefined, name: 'plans' }]) // Map { '[null,"plans"]' => ['plan', 'rank'] }
 */
export async function lookupStarColumns(pools: ShardPools, shard: string, rels: RelationName[]): Promise<StarColumns> {
  // A relation named twice (a self-join) is asked once.
  const unique = [...new Map(rels.map((r) => [relationKey(r), r])).values()];
  const columns = new Map<string, string[]>();
  if (unique.length === 0) return columns;
  const rows = await pools.withShard(shard, async (c) => {
    const args = [unique.map((r) => r.schema ?? null), unique.map((r) => r.name)];
    return (await c.query<{ i: number; c: string }>(STAR_COLUMNS_SQL, args)).rows;
  });
  for (const r of rows) {
    const key = relationKey(unique[r.i - 1]!);
    columns.set(key, [...(columns.get(key) ?? []), r.c]);
  }
  return columns;
}

// The type (as a cast names it) and the collation of a sub-query's first column, read without running
// it (LIMIT 0: parse and plan only). pg_collation_for raises on a type without collations: CASE guards it.
function subplanTypeSql(sql: string): string {
  const value = `(SELECT s.c FROM (${sql}) AS s(c) LIMIT 0)`;
  return `SELECT x.t::text AS t, CASE WHEN y.typcollation <> 0 THEN pg_collation_for(${value}) END AS c
FROM (SELECT pg_typeof(${value}) AS t) x JOIN pg_type y ON y.oid = x.t`;
}

/**
 * Plans and (unless explaining) answers a sub-query on its own, through the same engine; its type and
 * collation are read in parallel. 'correlated': run alone, it names a column it does not have (an outer one).
 */
async function evaluateSubplan(
  router: ShardRouter,
  options: RunQueryOptions,
  sub: Subplan,
): Promise<SubplanAnswer | 'correlated'> {
  try {
    const plan = await prepareQuery(router, sub.sql, sub.params, options);
    const how = `planned as ${plan.kind} over ${plan.shards.join(', ') || 'no shard'}`;
    if (options.explain) return { rows: [], width: 1, how };
    const typed =
      sub.form === 'EXISTS'
        ? Promise.resolve(undefined)
        : router.pools.withShard(
            plan.shards[0] ?? router.map.catalog,
            async (c) => (await c.query<{ t: string; c: string | null }>(subplanTypeSql(sub.sql), sub.params)).rows[0],
          );
    const [answer, type] = await Promise.all([answerBuffered(router, plan, options), typed]);
    // A sub-query's value is the whole statement's: a shard left out (--allow-partial) would change it unseen.
    if (answer.missing.length > 0)
      throw new ShardctlError(
        `a sub-query (${sub.form}) needs every shard: ${answer.missing.map((m) => m.error).join('; ')}`,
        {
          code: 'UNREACHABLE',
        },
      );
    const width = answer.fields.length || 1;
    const collation = type?.c && type.c !== '"default"' ? type.c : undefined;
    return { rows: answer.rows, width, how, ...(type ? { type: type.t } : {}), ...(collation ? { collation } : {}) };
  } catch (e) {
    const err = fromDriverError(e);
    if (err.pg?.code === '42703') return 'correlated';
    if (err.code === 'MAX_ROWS')
      throw new ShardctlError(`evaluating a sub-query (${sub.form}) over all shards first: ${err.message}`, {
        code: 'MAX_ROWS',
        hint: 'narrow the sub-query, or raise --max-rows',
      });
    throw err;
  }
}

/**
 * Plans a query for a router: loads the parser, reads the aggregate names from the catalog shard (or
 * the first `--shard`), then calls the pure planner.
 *
 * @example
 * const plan = await prepareQuery(router, 'SELECT count(*) FROM users', [], {});
 */
export async function prepareQuery(
  router: ShardRouter,
  sql: string,
  params: unknown[],
  options: RunQueryOptions,
): Promise<QueryPlan> {
  await loadSqlTools();
  // On one shard (--tenant, --shard NAME) the statement runs as written; across shards, its
  // non-correlated sub-queries are answered first (subplans) and the outer statement planned after.
  const oneShard = options.tenant !== undefined || options.shards?.length === 1;
  let subSteps: string[] = [];
  const parsed = oneShard ? undefined : parsedOrUndefined(sql);
  if (parsed && hasSubLinks(parsed)) {
    const r = await substituteSubplans(
      parsed,
      params,
      (sub) => evaluateSubplan(router, options, sub),
      !!options.explain,
    );
    if (r.steps.length > 0) {
      sql = deparse(r.stmt);
      subSteps = r.steps;
    }
  }
  const { plan, steps } = oneShard
    ? { plan: await planPrepared(router, sql, params, options), steps: [] }
    : await planWithDerived(router, sql, params, options);
  const all = [...subSteps, ...steps];
  return all.length > 0 ? { ...plan, steps: [...all, ...plan.steps] } : plan;
}

/**
 * Plans a statement; while the planner refuses a derived table that can run alone (plan-derived.ts),
 * answers that one first, puts its rows in its place and plans again.
 */
async function planWithDerived(
  router: ShardRouter,
  sql: string,
  params: unknown[],
  options: RunQueryOptions,
): Promise<{ plan: QueryPlan; steps: string[] }> {
  const steps: string[] = [];
  for (;;) {
    try {
      return { plan: await planPrepared(router, sql, params, options), steps };
    } catch (e) {
      const target = derivedOf(e);
      const sel = target && steps.length < MAX_DERIVED ? as(parsedOrUndefined(sql), 'SelectStmt') : undefined;
      const next = sel && target ? await answerDerived(router, options, sel, target, params) : undefined;
      if (!next) throw e;
      // The parameters only the derived table used are gone with it: the rest are renumbered.
      ({ shardSql: sql, params } = shardQuery({ SelectStmt: next.stmt }, params));
      steps.push(next.step);
    }
  }
}

/** Derived tables answered first in one statement, at most: each round plans the statement again. */
const MAX_DERIVED = 8;

/** Answers a derived table on its own and returns the statement with its rows in its place. */
async function answerDerived(
  router: ShardRouter,
  options: RunQueryOptions,
  sel: SelectStmt,
  target: DerivedTarget,
  params: unknown[],
): Promise<{ stmt: SelectStmt; step: string } | undefined> {
  const q = derivedQuery(sel, target, params);
  if (!q) return undefined;
  const what = target.kind === 'cte' ? `WITH (CTE) ${target.name}` : `sub-query ${target.name} in FROM`;
  try {
    const plan = await prepareQuery(router, q.sql, q.params, options);
    const answer = options.explain
      ? { fields: (await fieldsOfQuery(router, plan, q)).map((name) => ({ name })), rows: [], missing: [] }
      : await answerBuffered(router, plan, options);
    if (answer.missing.length > 0)
      throw new ShardctlError(`${what} needs every shard: ${answer.missing.map((m) => m.error).join('; ')}`, {
        code: 'UNREACHABLE',
      });
    const width = answer.fields.length;
    if (width === 0) return undefined;
    const typed = await router.pools.withShard(
      plan.shards[0] ?? router.map.catalog,
      async (c) => (await c.query<Record<string, string | null>>(derivedTypesSql(q.sql, width), q.params)).rows[0]!,
    );
    const columns = answer.fields.map((f, i) => {
      const collation = typed[`c${i}`];
      return { name: f.name, type: typed[`t${i}`]!, ...(collation && collation !== '"default"' ? { collation } : {}) };
    });
    const out = substituteDerived(sel, target, columns, answer.rows);
    if (!out) return undefined;
    const step = `${what} aggregates, cuts or ranks across tenants: answered first on its own (${q.sql}, planned as ${plan.kind} over ${plan.shards.join(', ') || 'no shard'}); ${options.explain ? 'its rows take' : `its ${answer.rows.length} row(s) take`} its place as typed values (at most --max-rows rows)`;
    return { stmt: out, step };
  } catch (e) {
    const err = fromDriverError(e);
    if (err.code === 'MAX_ROWS')
      throw new ShardctlError(`evaluating ${what} over all shards first: ${err.message}`, {
        code: 'MAX_ROWS',
        hint: 'narrow the sub-query, or raise --max-rows',
      });
    throw err;
  }
}

/** The output names of a query, read without running it (for --explain). */
async function fieldsOfQuery(
  router: ShardRouter,
  plan: QueryPlan,
  q: { sql: string; params: unknown[] },
): Promise<string[]> {
  return router.pools.withShard(plan.shards[0] ?? router.map.catalog, async (c) => {
    const r = await c.query(`SELECT * FROM (${q.sql}) AS s LIMIT 0`, q.params);
    return r.fields.map((f) => f.name);
  });
}

/** The statement parsed, or undefined when it does not parse as one statement (the planner reports it). */
function parsedOrUndefined(sql: string) {
  try {
    const stmts = parseSql(sql);
    const sel = stmts.length === 1 ? as(stmts[0], 'SelectStmt') : undefined;
    // What writes or locks is refused by the planner before anything is sent: no sub-query runs first.
    let writes = !sel || !!sel.intoClause;
    walk(stmts[0], (n, key) => {
      if (key === 'lockingClause' || ['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt'].includes(kind(n) ?? ''))
        writes = true;
    });
    return writes ? undefined : stmts[0];
  } catch {
    return undefined;
  }
}

/** Reads what the planner needs from the catalog shard, then plans. */
async function planPrepared(
  router: ShardRouter,
  sql: string,
  params: unknown[],
  options: RunQueryOptions,
): Promise<QueryPlan> {
  let names: string[] = [];
  try {
    names = functionNames(sql);
  } catch {
    // a syntax error is reported by the planner with its position
  }
  const probe = options.shards?.[0] ?? router.map.catalog;
  // A star's columns matter only if the plan spans shards: a failed lookup is kept for the planner to
  // raise then, so a query pinned to another shard still runs while the catalog shard is down.
  const single = options.tenant !== undefined || options.shards?.length === 1;
  const [aggregates, star] = await Promise.all([
    lookupAggregates(router.pools, probe, names),
    lookupStarColumns(router.pools, probe, single ? [] : starRelations(sql)).then(
      (columns) => ({ shard: probe, columns }),
      (e: unknown) => ({ shard: probe, columns: new Map(), failure: fromDriverError(e, { shard: probe }) }),
    ),
  ]);
  const input = {
    sql,
    params,
    map: router.map,
    locate: (t: string) => router.locate(t).shard,
    ruleUnproven: !router.offline && !router.ruleRecorded,
    aggregates,
    star,
    ...(options.shards ? { shards: options.shards } : {}),
    ...(options.tenant !== undefined ? { tenant: options.tenant } : {}),
  };
  const plan = planQuery(input);
  if (plan.kind !== 'pullup') return plan;
  // Only a pull-up needs the columns of every table it reads (to return only those the query uses):
  // the round trip is paid by pull-ups alone. Without them (a failed lookup) the shards return `*`.
  const relationColumns = await lookupStarColumns(router.pools, probe, pulledRelations(plan)).catch(() => undefined);
  return relationColumns ? planQuery({ ...input, relationColumns }) : plan;
}
