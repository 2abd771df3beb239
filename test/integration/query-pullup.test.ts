import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runQuery, ShardctlError } from '../../src/index.js';
import type { PullupPlan } from '../../src/query/plan-types.js';
import { cluster, expected, multiset, same, useDifferentialFixture } from '../harness/differential.js';
import { runCli } from '../harness/run-cli.js';

// Pull-up beyond one table: set operations, joins not on the shard key, sub-queries over all shards
// (evaluated first, as subplans), with only the used columns and the pushable predicates sent to the
// shards. Every answer equals the single database's (test/harness/differential.ts).
useDifferentialFixture();

type Case = [sql: string, ordered: boolean, kind: 'pullup' | 'final' | 'concat' | 'single'];

const PROJECTIONS: Case[] = [
  [
    'SELECT customer, rank() OVER (ORDER BY amount DESC NULLS LAST, tenant_id, id) AS r FROM orders ORDER BY r LIMIT 12',
    true,
    'pullup',
  ],
  [
    "SELECT string_agg(customer, ',' ORDER BY customer, id, tenant_id) FROM orders WHERE paid AND qty > 3",
    true,
    'pullup',
  ],
  ['SELECT count(*) OVER () FROM orders WHERE qty = 2', false, 'pullup'],
  [
    'SELECT o.tenant_id, o.id, lag(o.amount) OVER (ORDER BY o.tenant_id, o.id) FROM orders o WHERE o.amount > 1000 ORDER BY 1, 2',
    true,
    'pullup',
  ],
  [
    'SELECT DISTINCT ON (qty) qty, note FROM orders WHERE note IS NOT NULL ORDER BY qty, note COLLATE "C", tenant_id',
    true,
    'pullup',
  ],
  ['SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY label) FROM tenants', true, 'pullup'],
];

const SET_OPS: Case[] = [
  ['SELECT id FROM orders UNION SELECT tenant_id FROM tenants', false, 'pullup'],
  ['SELECT customer FROM orders UNION ALL SELECT name FROM tenants', false, 'pullup'],
  ['SELECT qty FROM orders WHERE paid EXCEPT SELECT qty FROM orders WHERE NOT paid', false, 'pullup'],
  ['SELECT qty FROM orders WHERE paid EXCEPT ALL SELECT qty FROM orders WHERE NOT paid', false, 'pullup'],
  ['SELECT customer FROM orders WHERE qty > 5 INTERSECT SELECT customer FROM orders WHERE qty < 3', false, 'pullup'],
  [
    'SELECT customer FROM orders WHERE qty > 5 INTERSECT ALL SELECT customer FROM orders WHERE qty < 3',
    false,
    'pullup',
  ],
  ['SELECT name FROM tenants UNION SELECT customer FROM orders ORDER BY 1 NULLS FIRST', true, 'pullup'],
  ['SELECT label FROM tenants UNION SELECT customer FROM orders ORDER BY 1 LIMIT 8', true, 'pullup'],
  [
    'SELECT tenant_id, id FROM orders WHERE qty = 1 UNION ALL SELECT tenant_id, n FROM solo ORDER BY 1, 2 LIMIT 10 OFFSET 3',
    true,
    'pullup',
  ],
  ['SELECT plan FROM tenants UNION SELECT plan FROM plans ORDER BY 1', true, 'pullup'],
  [
    'SELECT qty, count(*) FROM orders GROUP BY qty UNION ALL SELECT NULL, count(*) FROM tenants ORDER BY 1 NULLS FIRST, 2',
    true,
    'pullup',
  ],
  [
    '(SELECT customer FROM orders UNION SELECT name FROM tenants) EXCEPT SELECT note FROM orders ORDER BY 1',
    true,
    'pullup',
  ],
  [
    'SELECT amount FROM orders WHERE tenant_id = 1 UNION SELECT amount FROM orders WHERE tenant_id = 2 ORDER BY 1 NULLS FIRST',
    true,
    'pullup',
  ],
  ['SELECT big FROM orders WHERE tenant_id = 4 INTERSECT SELECT big FROM orders WHERE tenant_id = 8', false, 'single'],
];

const JOINS: Case[] = [
  ['SELECT o.tenant_id, o.id, t.tenant_id FROM orders o JOIN tenants t ON t.name = o.customer', false, 'pullup'],
  [
    'SELECT t.name, count(*) FROM orders o JOIN tenants t ON lower(t.name) = lower(o.customer) GROUP BY 1 ORDER BY 1',
    true,
    'pullup',
  ],
  [
    "SELECT o.id, o.tenant_id, t.name FROM orders o LEFT JOIN tenants t ON t.name = o.note AND t.plan = 'team' WHERE o.qty > 6 ORDER BY 2, 1",
    true,
    'pullup',
  ],
  [
    'SELECT t.tenant_id, count(o.id) FROM tenants t LEFT JOIN orders o ON o.qty = t.tenant_id GROUP BY 1 ORDER BY 1',
    true,
    'pullup',
  ],
  [
    'SELECT s.tenant_id, s.n, o.tenant_id, o.id FROM solo s JOIN orders o ON o.qty = s.n WHERE o.paid AND s.v > 2 ORDER BY 1, 2, 3, 4',
    true,
    'pullup',
  ],
  [
    'SELECT a.tenant_id, b.tenant_id FROM tenants a JOIN tenants b ON a.plan = b.plan AND a.tenant_id < b.tenant_id ORDER BY 1, 2',
    true,
    'pullup',
  ],
  ["SELECT count(*) FROM orders o, tenants t WHERE t.region = 'eu' AND o.customer = t.name", true, 'pullup'],
  [
    'SELECT t.label, sum(o.amount) FROM tenants t FULL JOIN orders o ON o.customer = t.name GROUP BY 1 ORDER BY 1 NULLS FIRST',
    true,
    'pullup',
  ],
  [
    'SELECT t.name, p.rank, s.v FROM tenants t JOIN plans p USING (plan) JOIN solo s ON s.n = p.rank ORDER BY 1, 2, 3',
    true,
    'pullup',
  ],
  [
    'SELECT o.tenant_id, o.id FROM orders o JOIN solo s ON s.tenant_id = o.qty WHERE o.tenant_id = 1 ORDER BY 1, 2',
    true,
    'pullup',
  ],
  ['SELECT DISTINCT t.plan FROM tenants t JOIN orders o ON o.customer = t.name ORDER BY 1', true, 'pullup'],
];

async function check(cases: Case[]): Promise<string[]> {
  const failures: string[] = [];
  for (const [sql, ordered, kind] of cases) {
    try {
      const plan = await runQuery(cluster.map, sql, [], { explain: true });
      expect(plan.plan.kind, sql).toBe(kind);
      await same(sql, ordered);
    } catch (e) {
      failures.push(
        `${sql}\n    ${String((e as Error).message)
          .split('\n')
          .slice(0, 6)
          .join('\n    ')}`,
      );
    }
  }
  return failures;
}

describe("pull-up across tables: PostgreSQL answers over the shards' rows", () => {
  it(`projects and filters on the shards (${PROJECTIONS.length} queries)`, async () => {
    expect(await check(PROJECTIONS)).toEqual([]);
    const r = await runQuery(cluster.map, 'SELECT customer, rank() OVER (ORDER BY amount) FROM orders WHERE paid', [], {
      explain: true,
    });
    const plan = r.plan as PullupPlan;
    expect(plan.parts.map((p) => [p.shardSql, p.columns])).toEqual([
      ['SELECT orders.customer, orders.amount FROM orders WHERE paid', ['customer', 'amount']],
    ]);
  });

  it('returns fewer bytes than every column', async () => {
    const sql = 'SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY qty) FROM orders';
    const plan = (await runQuery(cluster.map, sql, [], { explain: true })).plan as PullupPlan;
    const bytes = async (q: string) =>
      Number((await expected(`SELECT sum(octet_length(x::text)) FROM (${q}) x`))[0]![0]);
    const projected = await bytes(plan.parts[0]!.shardSql);
    const everything = await bytes('SELECT * FROM orders');
    expect(projected).toBeLessThan(everything / 4);
    await same(sql, true);
  });

  it(`answers set operations (${SET_OPS.length} queries)`, async () => {
    expect(await check(SET_OPS)).toEqual([]);
  });

  it(`answers joins not on the shard key (${JOINS.length} queries)`, async () => {
    expect(await check(JOINS)).toEqual([]);
    const r = await runQuery(
      cluster.map,
      "SELECT o.id FROM orders o JOIN tenants t ON t.name = o.customer WHERE t.region = 'eu' AND o.qty > 3",
      [],
      { explain: true },
    );
    const plan = r.plan as PullupPlan;
    expect(plan.parts.map((p) => p.shardSql)).toEqual([
      'SELECT o.id, o.customer FROM orders AS o WHERE o.qty > 3',
      "SELECT t.name FROM tenants AS t WHERE t.region = 'eu'",
    ]);
  });
});
