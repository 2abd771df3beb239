import { beforeAll, describe, expect, it } from 'vitest';
import { loadSqlTools, parseShardMap, planQuery } from '../../src/index.js';

// tenants keep their tenant in `id`, events in `org`, the rest in tenant_id; plans is a reference table.
const map = parseShardMap(
  [
    'version: 1',
    'shardKey: { column: tenant_id, type: bigint, columns: { tenants: id, events: org } }',
    'placement: { strategy: modulo }',
    'shards:',
    '  - name: s0',
    '    url: postgres://u:p@h0/d',
    '  - name: s1',
    '    url: postgres://u:p@h1/d',
    'reference: [plans]',
    '',
  ].join('\n'),
  { env: {} },
);
const locate = (t: string) => `s${((Number(t) % 2) + 2) % 2}`;
const plan = (sql: string, params: unknown[] = []) => planQuery({ sql, params, map, locate });
const refusal = (sql: string) => {
  try {
    plan(sql);
  } catch (e) {
    return (e as Error).message;
  }
  return 'answered';
};

beforeAll(() => loadSqlTools());

describe('co-located push-down', () => {
  it('pushes a sub-query grouped by the key down whole and merges the outer aggregate', () => {
    const p = plan('SELECT avg(n) FROM (SELECT tenant_id, count(*) n FROM orders GROUP BY tenant_id) s');
    expect(p).toMatchObject({ kind: 'final', shards: ['s0', 's1'] });
    expect(p.shardSql).toBe(
      'SELECT sum(n) AS __c0, count(n) AS __c1 FROM ( SELECT tenant_id, count(*) AS n FROM orders GROUP BY tenant_id ) AS s',
    );
    expect(p.steps[0]).toMatch(
      /^push down: the query runs whole on every shard \(a sub-query grouped by the shard key/,
    );
  });

  it('ties per-table key columns: tenants.id, events.org, orders.tenant_id', () => {
    const p = plan(
      'SELECT t.name, x.n FROM tenants t JOIN (SELECT org, count(*) n FROM events GROUP BY org) x ON x.org = t.id ORDER BY x.n DESC LIMIT 3',
    );
    expect(p.kind).toBe('final');
    expect(p.steps[0]).toMatch(/tied by x\.org = t\.id/);
    expect(plan('SELECT t.id FROM tenants t WHERE EXISTS (SELECT 1 FROM events e WHERE e.org = t.id)').kind).toBe(
      'concat',
    );
    // tenant_id of tenants is no key column there: a correlation on it is on another column
    expect(
      refusal('SELECT t.id FROM tenants t WHERE EXISTS (SELECT 1 FROM orders o WHERE o.tenant_id = t.tenant_id)'),
    ).toMatch(/EXISTS sub-query correlated on a column other than the shard key/);
    expect(refusal('SELECT count(*) FROM (SELECT tenant_id, count(*) FROM events GROUP BY tenant_id) s')).toMatch(
      /sub-query s in FROM that aggregates across tenants/,
    );
  });

  it('routes a co-located query pinned to one tenant to its shard, unchanged', () => {
    const sql =
      'SELECT avg(n) FROM (SELECT tenant_id, count(*) n FROM orders GROUP BY tenant_id) s WHERE s.tenant_id = 3';
    expect(plan(sql)).toMatchObject({ kind: 'single', shards: ['s1'], shardSql: sql });
    expect(plan('WITH x AS (SELECT * FROM orders) SELECT count(*) FROM x WHERE x.tenant_id IN (2, 4)').shards).toEqual([
      's0',
    ]);
  });

  it('correlated sub-queries and LATERAL tied by the key run per tenant, LIMIT and aggregates inside included', () => {
    expect(
      plan(
        'SELECT t.id, x.amount FROM tenants t, LATERAL (SELECT amount FROM orders o WHERE o.tenant_id = t.id ORDER BY amount DESC LIMIT 2) x',
      ).kind,
    ).toBe('concat');
    expect(
      plan(
        'SELECT o.id FROM orders o WHERE o.amount > (SELECT avg(amount) FROM orders o2 WHERE o2.tenant_id = o.tenant_id) ORDER BY 1',
      ).kind,
    ).toBe('final');
    expect(plan('SELECT count(*) FROM orders o WHERE o.tenant_id IN (SELECT tenant_id FROM invoices)').kind).toBe(
      'final',
    );
    // under NOT the IN comparison's NULLs from other shards would matter: not a tie
    expect(refusal('SELECT count(*) FROM orders o WHERE o.tenant_id NOT IN (SELECT tenant_id FROM invoices)')).toMatch(
      /IN sub-query not tied to the shard key/,
    );
  });

  it('windows partitioned by the key push down; others go to pull-up', () => {
    expect(plan('SELECT tenant_id, rank() OVER (PARTITION BY tenant_id ORDER BY x) FROM orders').kind).toBe('concat');
    expect(plan('SELECT tenant_id, rank() OVER (PARTITION BY customer ORDER BY x) FROM orders')).toMatchObject({
      kind: 'pullup',
      construct: 'window function',
    });
    expect(
      plan('SELECT o.tenant_id, rank() OVER (PARTITION BY p.rank) FROM orders o JOIN plans p ON p.plan = o.plan'),
    ).toMatchObject({ kind: 'pullup', construct: 'window function' });
    // grouped by the key at the top level: the window runs after a grouping the outer merge redoes
    expect(plan('SELECT tenant_id, count(*), rank() OVER (PARTITION BY tenant_id) FROM orders GROUP BY 1').kind).toBe(
      'pullup',
    );
  });

  it('an outer join does not make a NULL-padded key a grouping key', () => {
    expect(
      refusal(
        'SELECT count(*) FROM (SELECT o.tenant_id, count(*) FROM tenants t LEFT JOIN orders o ON o.tenant_id = t.id GROUP BY o.tenant_id) s',
      ),
    ).toMatch(/that aggregates across tenants/);
    expect(
      plan(
        'SELECT count(*) FROM (SELECT t.id, count(o.id) FROM tenants t LEFT JOIN orders o ON o.tenant_id = t.id GROUP BY t.id) s',
      ).kind,
    ).toBe('final');
  });

  it('refuses, naming the construct, what is not co-located', () => {
    const cases: [string, RegExp][] = [
      [
        'SELECT id FROM orders o WHERE EXISTS (SELECT 1 FROM orders o2 WHERE o2.qty = o.qty)',
        /correlated on a column other than the shard key/,
      ],
      [
        'SELECT id FROM orders o WHERE o.tenant_id = 1 OR EXISTS (SELECT 1 FROM orders o2 WHERE o2.tenant_id = o.tenant_id OR o2.qty = 1)',
        /correlated on a column other than the shard key/,
      ],
      ['WITH c AS (SELECT count(*) n FROM orders) SELECT n FROM c', /WITH \(CTE\) c that aggregates across tenants/],
      [
        'WITH RECURSIVE r AS (SELECT tenant_id FROM orders UNION SELECT tenant_id FROM r) SELECT * FROM r',
        /WITH RECURSIVE/,
      ],
      ["SELECT x FROM (SELECT tenant_id, nextval('s') x FROM orders) s", /volatile function nextval\(\)/],
      [
        'SELECT count(*) FROM orders WHERE amount > (SELECT avg(amount) FROM orders)',
        /scalar sub-query not tied to the shard key/,
      ],
      [
        'SELECT (SELECT max(o.amount)) FROM orders o',
        /aggregate max\(\) of an outer query's columns inside a sub-query/,
      ],
      ['SELECT * FROM (SELECT tenant_id FROM orders) s ORDER BY 1', /SELECT \* over a sub-query or CTE/],
      [
        'SELECT count(*) FROM (SELECT tenant_id FROM orders UNION ALL SELECT tenant_id FROM invoices) s',
        /set operation UNION inside a sub-query/,
      ],
    ];
    for (const [sql, why] of cases) expect(refusal(sql), sql).toMatch(why);
  });

  it('sub-queries over reference tables only are always co-located', () => {
    expect(plan('SELECT count(*) FROM orders o WHERE o.plan IN (SELECT plan FROM plans WHERE rank > 1)').kind).toBe(
      'final',
    );
    expect(plan('SELECT (SELECT count(*) FROM plans)').kind).toBe('single');
  });
});

describe('an outer join restricts no kept row', () => {
  it('does not take a correlation in an outer join ON for a tie', () => {
    expect(
      refusal(
        'SELECT o.id FROM orders o WHERE EXISTS (SELECT 1 FROM orders o2 LEFT JOIN invoices i ON i.tenant_id = o2.tenant_id AND i.tenant_id = o.tenant_id)',
      ),
    ).toMatch(/EXISTS sub-query correlated on a column other than the shard key/);
    expect(
      plan(
        'SELECT o.id FROM orders o WHERE EXISTS (SELECT 1 FROM orders o2 LEFT JOIN invoices i ON i.tenant_id = o2.tenant_id WHERE o2.tenant_id = o.tenant_id)',
      ).kind,
    ).toBe('concat');
  });
});

describe('an outer join keeping a reference table', () => {
  it('is not pushed down (each shard would return its unmatched rows): pulled up, or answered on one shard', () => {
    for (const sql of [
      'SELECT p.plan, t.id FROM plans p LEFT JOIN tenants t ON t.plan = p.plan',
      'SELECT p.plan, t.id FROM tenants t RIGHT JOIN plans p ON t.plan = p.plan',
      'SELECT p.plan, t.id FROM tenants t FULL JOIN plans p ON t.plan = p.plan',
    ])
      expect(plan(sql), sql).toMatchObject({
        kind: 'pullup',
        construct: expect.stringMatching(/outer join keeping the rows of a reference table/),
      });
    expect(plan('SELECT p.plan, t.id FROM tenants t LEFT JOIN plans p ON t.plan = p.plan').kind).toBe('concat');
    expect(plan('SELECT p.plan, t.id FROM plans p LEFT JOIN tenants t ON t.plan = p.plan WHERE t.id = 2').kind).toBe(
      'single',
    );
  });
});
