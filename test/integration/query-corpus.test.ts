import { describe, expect, it } from 'vitest';
import { runQuery, ShardctlError } from '../../src/index.js';
import { cluster, db, expected, failureLine, same, useDifferentialFixture } from '../harness/differential.js';

// A reporting corpus: the read queries of a multi-tenant SaaS app's dashboards and reports, over the
// differential fixture (test/harness/differential.ts: 4 shards and one database holding every row).
// Each query is answered equal to the single database, or refused with the construct named (code
// REFUSED, exit code 7); any other error fails the test. The answered share is measured and printed
// with every refusal and its reason. Every database here is ICU-default (en-US): the merges' text order
// must follow the database's default collation, which is not byte order ('zeta' < 'Zeta' < 'Ärger'
// sorts otherwise), and the final queries must run under it.
useDifferentialFixture({ icu: true });

// [sql, order is total]
const CORPUS: Record<string, [string, boolean][]> = {
  dashboards: [
    ['SELECT count(*) AS orders, sum(amount) AS revenue, avg(amount) AS aov FROM orders WHERE paid', true],
    ['SELECT tenant_id, count(*), sum(amount) FROM orders GROUP BY tenant_id ORDER BY tenant_id', true],
    [
      "SELECT date_trunc('month', created) AS month, count(*), sum(amount) FROM orders WHERE created IS NOT NULL GROUP BY 1 ORDER BY 1",
      true,
    ],
    [
      'SELECT t.plan, count(DISTINCT o.tenant_id) AS tenants, sum(o.amount) FROM orders o JOIN tenants t USING (tenant_id) GROUP BY t.plan ORDER BY t.plan',
      true,
    ],
    ['SELECT region, count(*) FROM tenants GROUP BY region ORDER BY region NULLS FIRST', true],
    [
      'SELECT tenant_id, count(*) FILTER (WHERE paid) AS paid, count(*) FILTER (WHERE NOT paid) AS unpaid FROM orders GROUP BY 1 ORDER BY 1',
      true,
    ],
    [
      'SELECT extract(dow FROM created) AS dow, count(*) FROM orders WHERE created IS NOT NULL GROUP BY 1 ORDER BY 1',
      true,
    ],
    ['SELECT tenant_id, max(created) AS last_order FROM orders GROUP BY 1 ORDER BY 2 DESC NULLS LAST, 1 LIMIT 5', true],
    [
      "SELECT CASE WHEN amount < 1000 THEN 'small' WHEN amount < 50000 THEN 'medium' ELSE 'large' END AS bucket, count(*) FROM orders GROUP BY 1 ORDER BY 1 NULLS FIRST",
      true,
    ],
    [
      "SELECT tenant_id, count(*) FROM orders WHERE created >= '2026-03-01' AND created < '2026-07-01' GROUP BY 1 ORDER BY 1",
      true,
    ],
    ['SELECT width_bucket(qty, 0, 10, 5) AS b, count(*) FROM orders GROUP BY 1 ORDER BY 1 NULLS FIRST', true],
    ['SELECT tenant_id, bool_and(paid), bool_or(paid), every(qty > 0) FROM orders GROUP BY 1 ORDER BY 1', true],
    ['SELECT count(DISTINCT (tenant_id, customer)) AS active_customers FROM orders WHERE paid', true],
    ['SELECT tenant_id, id FROM orders ORDER BY created DESC NULLS LAST, tenant_id, id LIMIT 10', true],
    [
      'SELECT t.tenant_id, t.name, coalesce(sum(o.amount), 0) AS revenue FROM tenants t LEFT JOIN orders o ON o.tenant_id = t.tenant_id AND o.paid GROUP BY t.tenant_id, t.name ORDER BY 1',
      true,
    ],
    [
      'SELECT t.name, t.label, count(*) FROM tenants t JOIN orders o USING (tenant_id) GROUP BY 1, 2 ORDER BY 2, t.name COLLATE "C"',
      true,
    ],
    ["SELECT date_trunc('week', created)::date AS w, count(*) FROM orders GROUP BY 1 ORDER BY 1 NULLS FIRST", true],
    [
      "SELECT to_char(created, 'YYYY-MM') AS m, count(*), sum(amount) FROM orders GROUP BY 1 ORDER BY 1 NULLS FIRST",
      true,
    ],
    [
      'SELECT tenant_id, sum(amount) FILTER (WHERE paid) / nullif(sum(amount), 0) AS paid_share FROM orders GROUP BY 1 ORDER BY 1',
      true,
    ],
    ["SELECT count(*) FROM orders WHERE note ILIKE '%a%'", true],
    [
      'SELECT tenant_id, max(amount) - min(amount) AS spread FROM orders GROUP BY 1 HAVING count(*) > 10 ORDER BY 2 DESC NULLS LAST, 1',
      true,
    ],
    ['SELECT plan, count(*) FROM tenants GROUP BY plan HAVING count(*) >= 4 ORDER BY plan', true],
    ['SELECT round(avg(qty), 2), round(avg(amount), 2) FROM orders WHERE tenant_id = 4', true],
    ["SELECT count(*) FILTER (WHERE o.customer = ANY (ARRAY['anna', 'bob'])) FROM orders o", true],
    [
      'SELECT tenant_id, min(created), max(created), max(created) - min(created) AS span FROM orders GROUP BY 1 ORDER BY 1',
      true,
    ],
  ],
  'top-N per tenant and overall': [
    [
      'SELECT tenant_id, id, amount FROM (SELECT tenant_id, id, amount, row_number() OVER (PARTITION BY tenant_id ORDER BY amount DESC NULLS LAST, id) AS rn FROM orders) x WHERE rn <= 3 ORDER BY tenant_id, rn',
      true,
    ],
    [
      'SELECT tenant_id, customer, total FROM (SELECT tenant_id, customer, sum(amount) AS total, rank() OVER (PARTITION BY tenant_id ORDER BY sum(amount) DESC NULLS LAST) AS r FROM orders GROUP BY tenant_id, customer) x WHERE r = 1 ORDER BY tenant_id, customer NULLS FIRST',
      true,
    ],
    [
      'SELECT t.tenant_id, o.id, o.amount FROM tenants t CROSS JOIN LATERAL (SELECT id, amount FROM orders o WHERE o.tenant_id = t.tenant_id ORDER BY amount DESC NULLS LAST, id LIMIT 2) o ORDER BY t.tenant_id, o.id',
      true,
    ],
    [
      'SELECT tenant_id, sum(amount) AS revenue FROM orders GROUP BY 1 ORDER BY revenue DESC NULLS LAST, 1 LIMIT 5',
      true,
    ],
    [
      'SELECT customer, count(*) FROM orders WHERE customer IS NOT NULL GROUP BY customer ORDER BY count(*) DESC, customer LIMIT 3',
      true,
    ],
    [
      'SELECT t.name, x.n FROM tenants t JOIN (SELECT tenant_id, count(*) AS n FROM orders GROUP BY tenant_id) x USING (tenant_id) ORDER BY x.n DESC, t.tenant_id LIMIT 5',
      true,
    ],
    ['SELECT tenant_id, id FROM orders ORDER BY amount DESC NULLS LAST, tenant_id, id FETCH FIRST 5 ROWS ONLY', true],
    [
      'SELECT t.tenant_id, t.name, o.id FROM tenants t LEFT JOIN LATERAL (SELECT id FROM orders WHERE tenant_id = t.tenant_id ORDER BY created DESC NULLS LAST, id LIMIT 1) o ON true ORDER BY 1',
      true,
    ],
    ['SELECT tenant_id, count(*) FROM orders GROUP BY 1 ORDER BY 2 DESC FETCH FIRST 3 ROWS WITH TIES', false],
    [
      'SELECT tenant_id, count(*) AS n FROM orders WHERE paid GROUP BY tenant_id ORDER BY n DESC, tenant_id LIMIT 3 OFFSET 2',
      true,
    ],
  ],
  cohorts: [
    [
      "WITH first AS (SELECT tenant_id, customer, min(created) AS first_at FROM orders WHERE customer IS NOT NULL GROUP BY 1, 2) SELECT date_trunc('month', first_at) AS cohort, count(*) FROM first GROUP BY 1 ORDER BY 1 NULLS FIRST",
      true,
    ],
    [
      "SELECT cohort, count(*) FROM (SELECT tenant_id, customer, date_trunc('quarter', min(created)) AS cohort FROM orders GROUP BY 1, 2) c GROUP BY cohort ORDER BY cohort NULLS FIRST",
      true,
    ],
    [
      "SELECT date_trunc('month', first_at) AS cohort, count(*) FROM (SELECT customer, min(created) AS first_at FROM orders GROUP BY customer) c GROUP BY 1 ORDER BY 1 NULLS FIRST",
      true,
    ],
    [
      "SELECT t.plan, date_trunc('month', o.created) AS m, count(DISTINCT o.customer) FROM orders o JOIN tenants t USING (tenant_id) WHERE o.created IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
      true,
    ],
  ],
  'windows partitioned by tenant': [
    [
      'SELECT tenant_id, id, sum(amount) OVER (PARTITION BY tenant_id ORDER BY id) AS running FROM orders ORDER BY tenant_id, id',
      true,
    ],
    [
      'SELECT tenant_id, id, amount - lag(amount) OVER (PARTITION BY tenant_id ORDER BY id) AS delta FROM orders ORDER BY 1, 2',
      true,
    ],
    [
      'SELECT tenant_id, id, ntile(4) OVER (PARTITION BY tenant_id ORDER BY amount NULLS FIRST, id) FROM orders ORDER BY 1, 2',
      true,
    ],
    [
      'SELECT tenant_id, id, avg(qty) OVER (PARTITION BY tenant_id ORDER BY id ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM orders ORDER BY 1, 2',
      true,
    ],
    [
      'SELECT DISTINCT tenant_id, first_value(customer) OVER (PARTITION BY tenant_id ORDER BY created NULLS LAST, id) FROM orders ORDER BY 1',
      true,
    ],
  ],
  'windows over everything': [
    [
      'SELECT tenant_id, sum(amount) AS revenue, rank() OVER (ORDER BY sum(amount) DESC NULLS LAST) FROM orders GROUP BY tenant_id ORDER BY 3, 1',
      true,
    ],
    [
      'SELECT tenant_id, count(*), round(100.0 * count(*) / sum(count(*)) OVER (), 2) AS pct FROM orders GROUP BY tenant_id ORDER BY 1',
      true,
    ],
    [
      'SELECT id, tenant_id, percent_rank() OVER (ORDER BY amount NULLS FIRST, tenant_id, id) FROM orders ORDER BY 3, 2, 1 LIMIT 10',
      true,
    ],
    [
      "SELECT date_trunc('month', created) AS m, sum(amount), sum(sum(amount)) OVER (ORDER BY date_trunc('month', created)) FROM orders WHERE created IS NOT NULL GROUP BY 1 ORDER BY 1",
      true,
    ],
    ['SELECT tenant_id, id, cume_dist() OVER (ORDER BY qty NULLS FIRST) FROM orders ORDER BY 3, 1, 2 LIMIT 15', true],
    [
      'SELECT customer, count(*) AS n, sum(count(*)) OVER () AS total FROM orders GROUP BY customer ORDER BY customer NULLS FIRST',
      true,
    ],
  ],
  'CTEs and sub-queries in FROM': [
    [
      'WITH paid AS (SELECT tenant_id, amount FROM orders WHERE paid) SELECT tenant_id, sum(amount) FROM paid GROUP BY tenant_id ORDER BY 1',
      true,
    ],
    [
      'WITH per_tenant AS (SELECT tenant_id, count(*) AS n FROM orders GROUP BY tenant_id) SELECT avg(n), max(n), min(n) FROM per_tenant',
      true,
    ],
    [
      'WITH big AS (SELECT tenant_id, id FROM orders WHERE amount > 50000) SELECT t.name, count(*) FROM big JOIN tenants t USING (tenant_id) GROUP BY t.tenant_id, t.name ORDER BY t.tenant_id',
      true,
    ],
    [
      'WITH s AS (SELECT customer, sum(amount) AS total FROM orders GROUP BY customer) SELECT customer, total FROM s ORDER BY total DESC NULLS LAST, customer NULLS FIRST LIMIT 3',
      true,
    ],
    [
      'SELECT region, avg(n) FROM (SELECT t.region, t.tenant_id, count(o.id) AS n FROM tenants t LEFT JOIN orders o USING (tenant_id) GROUP BY 1, 2) x GROUP BY region ORDER BY region NULLS FIRST',
      true,
    ],
    ['SELECT count(*) FROM (SELECT DISTINCT customer FROM orders) x', true],
    ['SELECT avg(n) FROM (SELECT customer, count(*) AS n FROM orders GROUP BY customer) x', true],
    [
      'SELECT t.plan, avg(x.total) FROM tenants t JOIN (SELECT tenant_id, sum(amount) AS total FROM orders GROUP BY tenant_id) x ON x.tenant_id = t.tenant_id GROUP BY t.plan ORDER BY 1',
      true,
    ],
  ],
  'EXISTS, IN and scalar sub-queries': [
    [
      'SELECT t.tenant_id, t.name FROM tenants t WHERE EXISTS (SELECT 1 FROM orders o WHERE o.tenant_id = t.tenant_id AND o.amount > 90000) ORDER BY 1',
      true,
    ],
    [
      'SELECT t.tenant_id FROM tenants t WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.tenant_id = t.tenant_id AND NOT o.paid) ORDER BY 1',
      true,
    ],
    ['SELECT count(*) FROM tenants WHERE tenant_id IN (SELECT tenant_id FROM orders WHERE qty = 9)', true],
    ['SELECT count(*) FROM orders WHERE customer IN (SELECT customer FROM orders WHERE amount > 99999)', true],
    ['SELECT tenant_id, name FROM tenants WHERE plan IN (SELECT plan FROM plans WHERE rank >= 2) ORDER BY 1', true],
    [
      'SELECT t.tenant_id, (SELECT count(*) FROM orders o WHERE o.tenant_id = t.tenant_id) AS n FROM tenants t ORDER BY 1',
      true,
    ],
    [
      'SELECT count(*) FROM orders o WHERE amount > (SELECT avg(amount) FROM orders i WHERE i.tenant_id = o.tenant_id)',
      true,
    ],
    [
      'SELECT tenant_id, count(*) AS n FROM orders GROUP BY 1 HAVING count(*) > (SELECT avg(c) FROM (SELECT count(*) AS c FROM orders GROUP BY tenant_id) x) ORDER BY 1',
      true,
    ],
    [
      'SELECT tenant_id, id, amount FROM orders WHERE amount > (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY amount) FROM orders) ORDER BY 1, 2',
      true,
    ],
    [
      'SELECT tenant_id, id FROM orders WHERE (tenant_id, id) IN (SELECT tenant_id, max(id) FROM orders GROUP BY tenant_id) ORDER BY 1',
      true,
    ],
    [
      'SELECT tenant_id, count(*) FROM orders o WHERE EXISTS (SELECT 1 FROM solo s WHERE s.tenant_id = o.tenant_id) GROUP BY 1 ORDER BY 1',
      true,
    ],
  ],
  'set operations': [
    [
      'SELECT customer FROM orders WHERE paid UNION SELECT customer FROM orders WHERE qty > 8 ORDER BY 1 NULLS FIRST',
      true,
    ],
    [
      "SELECT tenant_id FROM orders WHERE amount > 90000 INTERSECT SELECT tenant_id FROM tenants WHERE region = 'eu' ORDER BY 1",
      true,
    ],
    ['SELECT tenant_id FROM tenants EXCEPT SELECT tenant_id FROM orders WHERE paid ORDER BY 1', true],
    [
      "SELECT 'paid' AS k, count(*) FROM orders WHERE paid UNION ALL SELECT 'unpaid', count(*) FROM orders WHERE NOT paid ORDER BY 1",
      true,
    ],
  ],
  'DISTINCT ON': [
    [
      'SELECT DISTINCT ON (tenant_id) tenant_id, id, created FROM orders ORDER BY tenant_id, created DESC NULLS LAST, id',
      true,
    ],
    [
      'SELECT DISTINCT ON (customer) customer, tenant_id, amount FROM orders WHERE customer IS NOT NULL ORDER BY customer, amount DESC NULLS LAST, tenant_id, id',
      true,
    ],
  ],
  'string_agg, array_agg, json_agg': [
    ["SELECT tenant_id, string_agg(DISTINCT customer, ', ' ORDER BY customer) FROM orders GROUP BY 1 ORDER BY 1", true],
    ["SELECT plan, string_agg(name, ', ' ORDER BY tenant_id) FROM tenants GROUP BY plan ORDER BY 1", true],
    [
      'SELECT region, array_agg(tenant_id ORDER BY tenant_id) FROM tenants GROUP BY region ORDER BY region NULLS FIRST',
      true,
    ],
    [
      "SELECT tenant_id, json_agg(json_build_object('id', id, 'amount', amount) ORDER BY id) FROM orders WHERE tenant_id IN (1, 2) GROUP BY 1 ORDER BY 1",
      true,
    ],
  ],
  'percentiles and dispersion': [
    [
      'SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY amount) AS median, percentile_cont(0.95) WITHIN GROUP (ORDER BY amount) AS p95 FROM orders WHERE paid',
      true,
    ],
    ['SELECT tenant_id, percentile_disc(0.5) WITHIN GROUP (ORDER BY qty) FROM orders GROUP BY 1 ORDER BY 1', true],
    [
      'SELECT t.plan, percentile_cont(0.9) WITHIN GROUP (ORDER BY o.amount) FROM orders o JOIN tenants t USING (tenant_id) GROUP BY 1 ORDER BY 1',
      true,
    ],
    ['SELECT stddev_samp(amount), var_pop(qty) FROM orders', true],
    ['SELECT tenant_id, stddev(amount) FROM orders GROUP BY 1 ORDER BY 1', true],
    ['SELECT customer, round(stddev(score)::numeric, 6) FROM orders GROUP BY 1 ORDER BY 1 NULLS FIRST', true],
  ],
  'GROUPING SETS, ROLLUP, CUBE': [
    ['SELECT plan, region, count(*) FROM tenants GROUP BY GROUPING SETS ((plan), (region), ())', false],
    ["SELECT paid, date_trunc('quarter', created) AS q, sum(amount) FROM orders GROUP BY ROLLUP (paid, 2)", false],
    ['SELECT tenant_id, paid, count(*) FROM orders GROUP BY CUBE (tenant_id, paid)', false],
    [
      'SELECT tenant_id, grouping(tenant_id), count(*) FROM orders GROUP BY ROLLUP (tenant_id) ORDER BY 1 NULLS FIRST',
      true,
    ],
    [
      'SELECT t.region, count(*) FROM orders o JOIN tenants t USING (tenant_id) WHERE t.region IS NOT NULL GROUP BY ROLLUP (t.region) ORDER BY 1 NULLS FIRST',
      true,
    ],
  ],
  'joins to reference tables': [
    [
      'SELECT p.plan, p.rank, count(*) AS orders, sum(o.amount) FROM orders o JOIN tenants t USING (tenant_id) JOIN plans p ON p.plan = t.plan GROUP BY p.plan, p.rank ORDER BY p.rank',
      true,
    ],
    [
      'SELECT o.tenant_id, o.id FROM orders o JOIN tenants t USING (tenant_id) JOIN plans p USING (plan) WHERE p.rank >= 2 AND o.amount > 80000 ORDER BY 1, 2',
      true,
    ],
    [
      'SELECT p.plan, count(t.tenant_id) FROM plans p LEFT JOIN tenants t ON t.plan = p.plan GROUP BY p.plan ORDER BY p.plan',
      true,
    ],
    [
      'SELECT p.rank, p.plan, count(o.id) FROM plans p LEFT JOIN tenants t ON t.plan = p.plan LEFT JOIN orders o ON o.tenant_id = t.tenant_id GROUP BY 1, 2 ORDER BY 1',
      true,
    ],
  ],
  'joins not on the shard key': [
    [
      'SELECT t.name, count(*) FROM orders o JOIN tenants t ON t.name = o.note GROUP BY t.name ORDER BY t.name COLLATE "C"',
      true,
    ],
    [
      'SELECT a.tenant_id, b.tenant_id FROM tenants a JOIN tenants b ON a.region = b.region AND a.tenant_id < b.tenant_id ORDER BY 1, 2',
      true,
    ],
    [
      'SELECT o1.id, o2.id, o1.qty FROM orders o1 JOIN orders o2 ON o1.qty = o2.qty WHERE o1.tenant_id = 4 AND o2.tenant_id = 8 ORDER BY 1, 2',
      true,
    ],
    [
      'SELECT s.tenant_id, s.n, count(o.id) FROM solo s LEFT JOIN orders o ON o.qty = s.n GROUP BY 1, 2 ORDER BY 1, 2',
      true,
    ],
    [
      'SELECT t.region, count(DISTINCT o.customer) FROM orders o JOIN tenants t USING (tenant_id) GROUP BY 1 ORDER BY 1 NULLS FIRST',
      true,
    ],
  ],
};

/** The share of the corpus that must be answered exactly. */
const MIN_ANSWERED = 0.95;

describe('reporting corpus', () => {
  it('answers at least 95% of the reporting queries exactly and refuses the rest by name', async () => {
    const answered: string[] = [];
    const refused: string[] = [];
    const failures: string[] = [];
    for (const [group, entries] of Object.entries(CORPUS))
      for (const [sql, ordered] of entries) {
        try {
          await same(sql, ordered);
          answered.push(sql);
        } catch (e) {
          if (e instanceof ShardctlError && e.code === 'REFUSED' && e.exitCode === 7)
            refused.push(`[${group}] ${sql}\n    ${e.message}`);
          else failures.push(failureLine(sql, e));
        }
      }
    const total = answered.length + refused.length + failures.length;
    const share = answered.length / total;
    console.log(
      `reporting corpus: ${answered.length} of ${total} answered exactly (${(share * 100).toFixed(1)}%), ${refused.length} refused:\n${refused.join('\n')}`,
    );
    expect(total).toBeGreaterThanOrEqual(60);
    expect(failures, failures.join('\n')).toEqual([]);
    expect(share).toBeGreaterThanOrEqual(MIN_ANSWERED);
  });

  it('runs on ICU-default databases, whose text order is not byte order, and merges in that order', async () => {
    const provider = 'SELECT datlocprovider::text AS p FROM pg_database WHERE datname = current_database()';
    expect((await db.query<{ p: string }>(provider)).rows[0]!.p).toBe('i');
    for (let i = 0; i < 4; i++) expect((await cluster.sql<{ p: string }>(i, provider))[0]!.p).toBe('i');
    const icu = (await expected('SELECT name FROM tenants ORDER BY name, tenant_id')).map((r) => r[0]);
    const bytes = (await expected('SELECT name FROM tenants ORDER BY name COLLATE "C", tenant_id')).map((r) => r[0]);
    expect(icu).not.toEqual(bytes);
    await same('SELECT name FROM tenants ORDER BY name, tenant_id', true);
    await same('SELECT name, count(*) FROM tenants GROUP BY name ORDER BY name LIMIT 7', true);
    await same('SELECT min(name), max(name) FROM tenants', true);
  });

  it('answers a sub-query in FROM or a CTE that mixes tenants first, on its own, and says so', async () => {
    const sql = 'SELECT avg(n) FROM (SELECT customer, count(*) AS n FROM orders GROUP BY customer) x';
    const r = await runQuery(cluster.map, sql, [], { explain: true });
    expect(r.plan.steps[0]).toMatch(
      /^sub-query x in FROM aggregates, cuts or ranks across tenants: answered first on its own \(SELECT customer, count\(\*\) AS n FROM orders GROUP BY customer, planned as final over shard-0, shard-1, shard-2, shard-3\)/,
    );
    await same(sql, true);
    // its parameters go with it; the outer query's are renumbered
    const params =
      'SELECT x.c FROM (SELECT customer AS c, count(*) AS n FROM orders WHERE qty > $1 GROUP BY 1) x WHERE x.n > $2 ORDER BY 1 NULLS FIRST';
    await same(params, true, ['3', '10']);
    const err = await runQuery(cluster.map, sql, [], { maxRows: 3 }).catch((e: unknown) => e as ShardctlError);
    expect(err).toBeInstanceOf(ShardctlError);
    expect((err as ShardctlError).code).toBe('MAX_ROWS');
    expect((err as ShardctlError).message).toMatch(/^evaluating sub-query x in FROM over all shards first: /);
  });
});
