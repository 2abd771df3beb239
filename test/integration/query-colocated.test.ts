import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runQuery, ShardctlError } from '../../src/index.js';
import { cluster, expected, same, useDifferentialFixture, failureLine } from '../harness/differential.js';
import { runCli } from '../harness/run-cli.js';

// Co-located push-down: sub-queries, CTEs, LATERAL, EXISTS/IN and windows tied by the shard key run
// whole on every shard; the outer merge is the usual one. Every answer must equal the single
// database's (4 shards vs one database, test/harness/differential.ts). [sql, order is total]
useDifferentialFixture();

const CORPUS: [string, boolean][] = [
  // sub-queries in FROM grouped by the key, merged by the outer query
  ['SELECT avg(n) FROM (SELECT tenant_id, count(*) n FROM orders GROUP BY tenant_id) s', true],
  [
    'SELECT count(*), sum(n), min(n), max(n) FROM (SELECT tenant_id, count(*) n FROM orders GROUP BY tenant_id) s',
    true,
  ],
  [
    'SELECT tenant_id, n FROM (SELECT tenant_id, count(*) n FROM orders GROUP BY tenant_id) s ORDER BY n DESC, tenant_id',
    true,
  ],
  [
    'SELECT tenant_id, total FROM (SELECT tenant_id, sum(amount) total FROM orders GROUP BY tenant_id) s ORDER BY total DESC NULLS LAST, tenant_id LIMIT 5',
    true,
  ],
  [
    'SELECT n, count(*) FROM (SELECT tenant_id, count(*) n FROM orders GROUP BY tenant_id) s GROUP BY n ORDER BY n',
    true,
  ],
  [
    'SELECT max(a) FROM (SELECT tenant_id, avg(qty) a FROM orders WHERE paid GROUP BY tenant_id HAVING count(*) > 3) s',
    true,
  ],
  ['SELECT count(*) FROM (SELECT tenant_id, customer FROM orders GROUP BY tenant_id, customer) s', true],
  ['SELECT count(*) FROM (SELECT DISTINCT tenant_id, customer FROM orders) s', true],
  [
    'SELECT customer, count(*) FROM (SELECT DISTINCT tenant_id, customer FROM orders) s GROUP BY customer ORDER BY 1 NULLS FIRST',
    true,
  ],
  ['SELECT sum(c) FROM (SELECT count(*) c FROM orders GROUP BY tenant_id, qty) s', true],
  // per-row sub-queries in FROM (no grouping): the shards' rows add up
  ['SELECT count(*) FROM (SELECT amount FROM orders WHERE qty > 3) s', true],
  ['SELECT s.tenant_id, s.id FROM (SELECT * FROM orders WHERE paid) s ORDER BY s.tenant_id, s.id LIMIT 12', true],
  ['SELECT x.t, x.k FROM (SELECT tenant_id AS t, id AS k FROM orders) x ORDER BY x.k DESC, x.t LIMIT 7', true],
  ['SELECT a, b FROM (SELECT tenant_id, id FROM orders) AS x(a, b) ORDER BY b, a LIMIT 9', true],
  // sub-queries joined by the key, per-table key columns through aliases
  [
    'SELECT t.name, s.n FROM tenants t JOIN (SELECT tenant_id, count(*) n FROM orders GROUP BY tenant_id) s ON s.tenant_id = t.tenant_id ORDER BY s.n DESC, t.tenant_id',
    true,
  ],
  [
    'SELECT t.plan, sum(s.n) FROM tenants t JOIN (SELECT tenant_id, count(*) n FROM orders GROUP BY tenant_id) s USING (tenant_id) GROUP BY t.plan ORDER BY 1',
    true,
  ],
  [
    'SELECT p.rank, count(*) FROM (SELECT tenant_id, plan FROM tenants) t JOIN plans p ON p.plan = t.plan JOIN orders o ON o.tenant_id = t.tenant_id GROUP BY p.rank ORDER BY 1',
    true,
  ],
  [
    'SELECT t.tenant_id, s.n, o.m FROM tenants t LEFT JOIN (SELECT tenant_id, count(*) n FROM solo GROUP BY tenant_id) s ON s.tenant_id = t.tenant_id JOIN (SELECT tenant_id, max(id) m FROM orders GROUP BY tenant_id) o ON o.tenant_id = t.tenant_id ORDER BY 1',
    true,
  ],
  // CTEs
  ['WITH x AS (SELECT * FROM orders) SELECT count(*) FROM x', true],
  [
    'WITH per AS (SELECT tenant_id, sum(amount) s FROM orders GROUP BY tenant_id) SELECT per.tenant_id, per.s, t.name FROM per JOIN tenants t ON t.tenant_id = per.tenant_id ORDER BY per.s DESC NULLS LAST, 1 LIMIT 4',
    true,
  ],
  ['WITH per AS (SELECT tenant_id, count(*) n FROM orders GROUP BY tenant_id) SELECT avg(n), sum(n) FROM per', true],
  [
    'WITH a AS (SELECT tenant_id, count(*) n FROM orders GROUP BY tenant_id), b AS (SELECT tenant_id, n * 2 AS d FROM a) SELECT b.tenant_id, b.d FROM b ORDER BY b.d, b.tenant_id',
    true,
  ],
  [
    'WITH a AS (SELECT tenant_id, count(*) n FROM orders GROUP BY tenant_id) SELECT x.tenant_id FROM a x JOIN a y ON x.tenant_id = y.tenant_id WHERE x.n = y.n ORDER BY 1',
    true,
  ],
  ['WITH k(t, n) AS (SELECT tenant_id, count(*) FROM solo GROUP BY tenant_id) SELECT t, n FROM k ORDER BY t', true],
  ['WITH orders AS (SELECT * FROM orders WHERE qty > 5) SELECT count(*), sum(qty) FROM orders', true],
  ['WITH x AS (SELECT * FROM orders WHERE tenant_id = 4) SELECT count(*) FROM x WHERE tenant_id = 4', true],
  ['WITH r AS (SELECT plan FROM plans WHERE rank > 0) SELECT count(*) FROM tenants t JOIN r ON r.plan = t.plan', true],
  ['WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT sum(n) FROM r', true],
  // LATERAL
  [
    'SELECT t.tenant_id, x.id FROM tenants t, LATERAL (SELECT id FROM orders o WHERE o.tenant_id = t.tenant_id ORDER BY amount DESC NULLS LAST, id LIMIT 2) x ORDER BY 1, 2',
    true,
  ],
  [
    'SELECT t.name, x.n FROM tenants t CROSS JOIN LATERAL (SELECT count(*) n FROM orders o WHERE o.tenant_id = t.tenant_id AND o.paid) x ORDER BY x.n DESC, t.tenant_id LIMIT 6',
    true,
  ],
  [
    'SELECT count(*), sum(x.q) FROM tenants t JOIN LATERAL (SELECT sum(qty) q FROM orders o WHERE o.tenant_id = t.tenant_id) x ON true',
    true,
  ],
  [
    'SELECT t.tenant_id, x.v FROM tenants t LEFT JOIN LATERAL (SELECT v FROM solo s WHERE s.tenant_id = t.tenant_id ORDER BY n DESC LIMIT 1) x ON true ORDER BY 1',
    true,
  ],
  // EXISTS / IN / scalar sub-queries correlated by the key
  [
    'SELECT tenant_id, name FROM tenants t WHERE EXISTS (SELECT 1 FROM solo s WHERE s.tenant_id = t.tenant_id) ORDER BY 1',
    true,
  ],
  [
    'SELECT tenant_id FROM tenants t WHERE NOT EXISTS (SELECT 1 FROM solo s WHERE s.tenant_id = t.tenant_id) ORDER BY 1',
    true,
  ],
  [
    'SELECT count(*) FROM orders o WHERE EXISTS (SELECT 1 FROM orders o2 WHERE o2.tenant_id = o.tenant_id AND o2.qty = o.qty AND o2.id <> o.id)',
    true,
  ],
  ['SELECT count(*) FROM orders o WHERE o.tenant_id IN (SELECT tenant_id FROM solo)', true],
  // a row IN: rows equal field by field have equal shard keys
  [
    'SELECT tenant_id, id FROM orders WHERE (tenant_id, id) IN (SELECT tenant_id, max(id) FROM orders GROUP BY tenant_id) ORDER BY 1',
    true,
  ],
  ['SELECT count(*) FROM orders WHERE (qty, tenant_id) IN (SELECT n, tenant_id FROM solo WHERE v > 2)', true],
  [
    'SELECT tenant_id FROM tenants WHERE tenant_id IN (SELECT tenant_id FROM orders GROUP BY tenant_id HAVING count(*) > 20) ORDER BY 1',
    true,
  ],
  [
    'SELECT o.tenant_id, o.id FROM orders o WHERE o.qty IN (SELECT s.n FROM solo s WHERE s.tenant_id = o.tenant_id) ORDER BY 1, 2',
    true,
  ],
  [
    'SELECT t.tenant_id, (SELECT count(*) FROM orders o WHERE o.tenant_id = t.tenant_id) AS n FROM tenants t ORDER BY n DESC, 1',
    true,
  ],
  [
    'SELECT t.tenant_id, (SELECT max(amount) FROM orders o WHERE o.tenant_id = t.tenant_id AND o.paid) m FROM tenants t ORDER BY 1',
    true,
  ],
  [
    'SELECT o.tenant_id, o.id FROM orders o WHERE o.amount > (SELECT avg(amount) FROM orders o2 WHERE o2.tenant_id = o.tenant_id) ORDER BY 1, 2 LIMIT 25',
    true,
  ],
  [
    'SELECT count(*) FROM orders o WHERE o.amount >= (SELECT max(o2.amount) FROM orders o2 WHERE o2.tenant_id = o.tenant_id)',
    true,
  ],
  [
    'SELECT o.customer, count(*) FROM orders o WHERE EXISTS (SELECT 1 FROM tenants t WHERE t.tenant_id = o.tenant_id AND t.region IS NULL) GROUP BY 1 ORDER BY 1 NULLS FIRST',
    true,
  ],
  ['SELECT count(*) FROM orders o WHERE EXISTS (SELECT 1 FROM plans p WHERE p.rank > o.qty)', true],
  [
    'SELECT t.tenant_id FROM tenants t WHERE EXISTS (SELECT 1 FROM orders o WHERE o.tenant_id = t.tenant_id AND EXISTS (SELECT 1 FROM solo s WHERE s.tenant_id = o.tenant_id AND s.n = o.qty)) ORDER BY 1',
    true,
  ],
  // windows partitioned by the key (top level and inside sub-queries)
  ['SELECT tenant_id, id, rank() OVER (PARTITION BY tenant_id ORDER BY amount, id) FROM orders ORDER BY 1, 2', true],
  ['SELECT tenant_id, sum(qty) OVER (PARTITION BY tenant_id) FROM orders', false],
  ['SELECT tenant_id, id, sum(qty) OVER (PARTITION BY tenant_id ORDER BY id) AS s FROM orders ORDER BY 1, 2', true],
  ['SELECT tenant_id, n, lag(v) OVER (PARTITION BY tenant_id ORDER BY n) FROM solo ORDER BY 1, 2', true],
  [
    'SELECT tenant_id, id, row_number() OVER w FROM orders WINDOW w AS (PARTITION BY tenant_id ORDER BY created NULLS FIRST, id) ORDER BY 3 DESC, 1, 2 LIMIT 10',
    true,
  ],
  [
    'SELECT tenant_id, id FROM (SELECT tenant_id, id, row_number() OVER (PARTITION BY tenant_id ORDER BY amount DESC NULLS LAST, id) r FROM orders) x WHERE r <= 2 ORDER BY 1, 2',
    true,
  ],
  [
    'SELECT r, count(*) FROM (SELECT dense_rank() OVER (PARTITION BY tenant_id, paid ORDER BY qty) r FROM orders) x GROUP BY r ORDER BY r',
    true,
  ],
  [
    'WITH ranked AS (SELECT tenant_id, customer, rank() OVER (PARTITION BY tenant_id ORDER BY big DESC, id) r FROM orders) SELECT customer, count(*) FROM ranked WHERE r = 1 GROUP BY 1 ORDER BY 1 NULLS FIRST',
    true,
  ],
  // pinned: run unchanged on one shard
  ['SELECT avg(n) FROM (SELECT tenant_id, count(*) n FROM orders GROUP BY tenant_id) s WHERE s.tenant_id = 5', true],
  [
    'SELECT id FROM orders o WHERE tenant_id = 9 AND EXISTS (SELECT 1 FROM solo s WHERE s.tenant_id = o.tenant_id) ORDER BY id',
    true,
  ],
  // outer DISTINCT, sub-queries in ORDER BY and in an inner join's ON, windows in ORDER BY, ICU order
  ['SELECT DISTINCT s.n FROM (SELECT tenant_id, count(*) n FROM orders GROUP BY tenant_id) s ORDER BY 1', true],
  [
    'SELECT t.tenant_id FROM tenants t ORDER BY (SELECT count(*) FROM orders o WHERE o.tenant_id = t.tenant_id) DESC, 1 LIMIT 5',
    true,
  ],
  [
    'SELECT count(*) FROM tenants t JOIN orders o ON o.tenant_id = t.tenant_id AND o.qty IN (SELECT s.n FROM solo s WHERE s.tenant_id = t.tenant_id)',
    true,
  ],
  [
    'SELECT tenant_id, id FROM orders ORDER BY rank() OVER (PARTITION BY tenant_id ORDER BY amount DESC NULLS LAST, id), 1, 2 LIMIT 10',
    true,
  ],
  [
    'SELECT t.label, x.n FROM tenants t JOIN (SELECT tenant_id, count(*) n FROM orders GROUP BY tenant_id) x ON x.tenant_id = t.tenant_id ORDER BY t.label, t.tenant_id LIMIT 8',
    true,
  ],
  // only reference tables in the sub-query: always co-located
  ['SELECT count(*) FROM tenants t WHERE t.plan IN (SELECT plan FROM plans WHERE rank >= 2)', true],
  ['SELECT t.tenant_id, (SELECT rank FROM plans p WHERE p.plan = t.plan) FROM tenants t ORDER BY 1', true],
];

describe('co-located push-down answers exactly', () => {
  it(`answers ${CORPUS.length} co-located queries as one database does`, async () => {
    const failures: string[] = [];
    for (const [raw, ordered] of CORPUS) {
      const sql = raw;
      try {
        const plan = await runQuery(cluster.map, sql, [], { explain: true });
        expect(plan.plan.kind, sql).not.toBe('pullup');
        await same(sql, ordered);
      } catch (e) {
        failures.push(failureLine(sql, e));
      }
    }
    expect(failures, failures.join('\n')).toEqual([]);
  });

  it('generated combinations of inner grouping, outer aggregate, ORDER BY and LIMIT agree', async () => {
    const inner = fc.record({
      extra: fc.constantFrom('', ', customer', ', qty', ', paid'),
      agg: fc.constantFrom('count(*)', 'sum(qty)', 'max(amount)', 'min(id)', 'count(DISTINCT customer)'),
      where: fc.constantFrom('', ' WHERE paid', ' WHERE qty > 2', ' WHERE amount IS NOT NULL'),
      how: fc.constantFrom('from', 'cte', 'join', 'lateral', 'exists'),
    });
    const outer = fc.record({
      agg: fc.constantFrom('', 'count(*)', 'sum(v)', 'avg(v)', 'max(v)', 'min(v)'),
      desc: fc.boolean(),
      limit: fc.option(fc.integer({ min: 0, max: 12 })),
    });
    const failures: string[] = [];
    for (const [i, o] of fc.sample(fc.tuple(inner, outer), { numRuns: 30, seed: 15 })) {
      const sub = `SELECT tenant_id${i.extra}, ${i.agg} AS v FROM orders${i.where} GROUP BY tenant_id${i.extra}`;
      const from = {
        from: `(${sub}) s`,
        cte: 's',
        join: `tenants t JOIN (${sub}) s ON s.tenant_id = t.tenant_id`,
        lateral: `tenants t, LATERAL (SELECT ${i.agg} AS v FROM orders o WHERE o.tenant_id = t.tenant_id${i.where.replace(' WHERE', ' AND')}) s`,
        exists: `(${sub}) s WHERE EXISTS (SELECT 1 FROM solo x WHERE x.tenant_id = s.tenant_id)`,
      }[i.how];
      const key = i.how === 'lateral' ? 't.tenant_id' : 's.tenant_id';
      const withs = i.how === 'cte' ? `WITH s AS (${sub}) ` : '';
      // v, the key and the extra group column make the order total
      const extra = i.extra && i.how !== 'lateral' ? `, s.${i.extra.slice(2)}` : '';
      const sql = o.agg
        ? `${withs}SELECT ${o.agg} AS a FROM ${from}`
        : `${withs}SELECT ${key} AS k, v FROM ${from} ORDER BY v${o.desc ? ' DESC' : ''} NULLS LAST, k${extra}${o.limit !== null ? ` LIMIT ${o.limit}` : ''}`;
      try {
        await same(sql, true);
      } catch (e) {
        failures.push(failureLine(sql, e));
      }
    }
    expect(failures, failures.join('\n')).toEqual([]);
  });

  it('binds parameters inside sub-queries', async () => {
    await same(
      'SELECT count(*) FROM (SELECT tenant_id, count(*) n FROM orders WHERE qty > $1 GROUP BY tenant_id) s WHERE n > $2',
      true,
      [2, 3],
    );
    await same(
      'SELECT o.id FROM orders o WHERE o.tenant_id = $1 AND EXISTS (SELECT 1 FROM solo s WHERE s.tenant_id = o.tenant_id AND s.n = $2) ORDER BY 1',
      true,
      ['5', 2],
    );
  });

  it('--explain says push-down and which key ties the parts', async () => {
    const sql =
      'SELECT t.name, s.n FROM tenants t JOIN (SELECT tenant_id, count(*) n FROM orders GROUP BY tenant_id) s ON s.tenant_id = t.tenant_id';
    const r = await runQuery(cluster.map, sql, [], { explain: true });
    expect(r.plan.steps[0]).toMatch(/^push down: the query runs whole on every shard/);
    expect(r.plan.steps[0]).toMatch(/tied by s\.tenant_id = t\.tenant_id/);
    const cli = await runCli(['-c', cluster.mapFile, 'query', sql, '--explain']);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(/push down: .*grouped by the shard key/);
  });
});

describe('what is not co-located is refused, construct named, nothing printed', () => {
  const refused: [string, RegExp][] = [
    [
      'SELECT count(*) FROM orders o WHERE EXISTS (SELECT 1 FROM solo s WHERE s.n = o.qty)',
      /EXISTS sub-query correlated on a column other than the shard key/,
    ],
    [
      'SELECT t.tenant_id, (SELECT count(*) FROM orders o WHERE o.customer = t.name) FROM tenants t',
      /scalar sub-query correlated on a column other than the shard key/,
    ],
    [
      'SELECT o.id, rank() OVER (PARTITION BY o.customer ORDER BY o.id) FROM orders o WHERE EXISTS (SELECT 1 FROM solo s WHERE s.tenant_id = o.tenant_id)',
      /window function partitioned by a column other than the shard key/,
    ],
    [
      'WITH RECURSIVE r AS (SELECT tenant_id, id FROM orders WHERE id = 1 UNION ALL SELECT o.tenant_id, o.id FROM orders o JOIN r ON o.tenant_id = r.tenant_id AND o.id = r.id + 1) SELECT count(*) FROM r',
      /WITH RECURSIVE/,
    ],
    [
      'SELECT o.id FROM orders o WHERE EXISTS (SELECT 1 FROM solo s WHERE s.tenant_id = o.tenant_id) ORDER BY random()',
      /volatile function random\(\)/,
    ],
    ['SELECT x.v FROM (SELECT tenant_id, clock_timestamp() v FROM orders) x', /volatile function clock_timestamp\(\)/],
    [
      'SELECT count(*) FROM tenants t JOIN (SELECT tenant_id, customer FROM orders) s ON s.customer = t.name',
      /join not on the shard key/,
    ],
    [
      'SELECT p.plan, s.tenant_id FROM plans p LEFT JOIN (SELECT tenant_id, plan FROM tenants) s ON s.plan = p.plan',
      /outer join keeping the rows of a reference table/,
    ],
    [
      'SELECT o.tenant_id, (SELECT count(*) FROM solo s WHERE s.tenant_id = o.tenant_id), count(*) FROM orders o GROUP BY o.tenant_id',
      /sub-query in the select list, HAVING or ORDER BY of a grouped query/,
    ],
    [
      'SELECT count(*) FROM orders WHERE (qty, tenant_id) IN (SELECT max(qty), min(tenant_id) FROM orders GROUP BY customer)',
      /IN sub-query not tied to the shard key/,
    ],
    ['WITH w AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM w', /data-modifying/],
  ];
  // Not co-located, yet exact another way: sub-queries over all shards run first (subplans), an
  // outer join keeping a reference table's rows is pulled up (plain tables: shard-3 holds no tenant
  // and would otherwise return every plan unmatched), and a CTE or sub-query in FROM whose rows mix
  // tenants is answered first on its own, its rows then in its place (derived subplans).
  it('answers what is not co-located by subplans or pull-up, exactly', async () => {
    for (const [sql, kind] of [
      ['SELECT count(*) FROM orders WHERE qty IN (SELECT qty FROM orders WHERE tenant_id = 1)', 'final'],
      ['SELECT count(*) FROM orders WHERE amount > (SELECT avg(amount) FROM orders)', 'final'],
      ['SELECT p.plan, t.tenant_id FROM plans p LEFT JOIN tenants t ON t.plan = p.plan', 'pullup'],
      ['WITH x AS (SELECT count(*) AS c FROM orders) SELECT c FROM x', 'single'],
      [
        'WITH c AS (SELECT customer, count(*) n FROM orders GROUP BY customer) SELECT o.tenant_id, c.n FROM orders o JOIN c ON c.customer = o.customer',
        'concat',
      ],
      ['SELECT avg(n) FROM (SELECT customer, count(*) n FROM orders GROUP BY customer) s', 'single'],
      [
        'SELECT * FROM (SELECT tenant_id, id, rank() OVER (PARTITION BY customer ORDER BY id) r FROM orders) x WHERE r = 1',
        'single',
      ],
      ['SELECT count(*) FROM (SELECT tenant_id FROM orders ORDER BY amount LIMIT 5) s', 'single'],
    ] as const) {
      await same(sql, false);
      expect((await runQuery(cluster.map, sql, [])).plan.kind, sql).toBe(kind);
    }
  });

  for (const [sql, why] of refused) {
    it(sql, async () => {
      const before = await expected('SELECT count(*), sum(qty) FROM orders');
      const error = await runQuery(cluster.map, sql, []).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ShardctlError);
      expect((error as ShardctlError).exitCode).toBe(7);
      expect((error as ShardctlError).message).toMatch(why);
      const cli = await runCli(['-c', cluster.mapFile, 'query', sql]);
      expect(cli.code).toBe(7);
      expect(cli.stdout).toBe('');
      expect(cli.stderr).toMatch(/refused/);
      expect(await expected('SELECT count(*), sum(qty) FROM orders')).toEqual(before);
    });
  }
});
