import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runQuery, ShardctlError } from '../../src/index.js';
import type { PullupPlan } from '../../src/query/plan-types.js';
import { cluster, expected, same, useDifferentialFixture, failureLine } from '../harness/differential.js';
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
  ['SELECT * FROM (orders JOIN tenants USING (tenant_id)) AS j ORDER BY 1, 2', true, 'pullup'],
  [
    'SELECT j.label, j.id FROM (tenants t JOIN orders o USING (tenant_id)) AS j ORDER BY 1, j.tenant_id, 2',
    true,
    'final',
  ],
];

const SUBPLANS: Case[] = [
  ['SELECT tenant_id, id FROM orders WHERE amount > (SELECT avg(amount) FROM orders) ORDER BY 1, 2', true, 'final'],
  ['SELECT count(*) FROM orders WHERE qty IN (SELECT qty FROM orders WHERE tenant_id = 1)', true, 'final'],
  ['SELECT count(*) FROM orders WHERE qty NOT IN (SELECT qty FROM orders WHERE tenant_id = 1)', true, 'final'],
  // a NULL in the list: NOT IN yields no row, as on one database
  ['SELECT count(*) FROM orders WHERE qty NOT IN (SELECT qty FROM orders)', true, 'final'],
  [
    'SELECT count(*) FROM orders WHERE qty NOT IN (SELECT qty FROM orders WHERE qty IS NOT NULL AND qty < 4)',
    true,
    'final',
  ],
  ['SELECT (SELECT count(*) FROM orders) - count(*) FROM orders WHERE paid', true, 'final'],
  ['SELECT tenant_id, name FROM tenants WHERE EXISTS (SELECT 1 FROM orders WHERE qty > 100) ORDER BY 1', true, 'final'],
  ['SELECT tenant_id FROM tenants WHERE NOT EXISTS (SELECT 1 FROM orders WHERE qty > 100) ORDER BY 1', true, 'final'],
  ['SELECT tenant_id, name FROM tenants WHERE name IN (SELECT customer FROM orders) ORDER BY 1', true, 'final'],
  ['SELECT tenant_id FROM tenants WHERE label > (SELECT min(name) FROM tenants) ORDER BY 1', true, 'final'],
  [
    'SELECT tenant_id FROM tenants WHERE name > (SELECT max(label) FROM tenants WHERE tenant_id < 10) ORDER BY 1',
    true,
    'final',
  ],
  [
    'SELECT count(*) FROM orders WHERE amount > ALL (SELECT amount FROM orders WHERE tenant_id = 2 AND amount IS NOT NULL)',
    true,
    'final',
  ],
  ['SELECT count(*) FROM orders WHERE big = ANY (SELECT big FROM orders WHERE tenant_id = 5)', true, 'final'],
  ['SELECT tenant_id, id FROM orders WHERE created = (SELECT max(created) FROM orders) ORDER BY 1, 2', true, 'final'],
  // --explain plans the outer query before the sub-query's value is known: every shard; run, it pins one
  ['SELECT tenant_id FROM tenants WHERE tenant_id = (SELECT max(tenant_id) FROM orders)', true, 'concat'],
  [
    'SELECT tenant_id FROM tenants WHERE tenant_id IN (SELECT tenant_id FROM orders WHERE qty = 9) ORDER BY 1',
    true,
    'final',
  ],
  ['SELECT ARRAY(SELECT DISTINCT qty FROM orders WHERE qty IS NOT NULL ORDER BY qty) AS qs', true, 'single'],
  [
    'SELECT customer, count(*) FROM orders WHERE qty > (SELECT avg(qty) FROM orders) GROUP BY 1 ORDER BY 1 NULLS FIRST',
    true,
    'final',
  ],
  [
    'SELECT customer FROM orders WHERE amount > (SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY amount) FROM orders) ORDER BY 1, tenant_id, id',
    false,
    'final',
  ],
  ['SELECT count(*) FROM orders WHERE qty IN (SELECT rank FROM plans)', true, 'final'],
  [
    'SELECT count(*) FROM orders WHERE customer IN (SELECT name FROM tenants UNION SELECT note FROM orders)',
    true,
    'final',
  ],
  [
    'SELECT count(*) FROM orders WHERE qty > (SELECT avg(qty) FROM orders WHERE amount < (SELECT avg(amount) FROM orders))',
    true,
    'final',
  ],
  [
    'SELECT qty FROM orders WHERE paid UNION SELECT (SELECT max(qty) FROM orders) + 1 ORDER BY 1 NULLS FIRST',
    true,
    'pullup',
  ],
  ['SELECT count(*) FROM orders WHERE qty IN (SELECT qty FROM orders WHERE qty > 100)', true, 'final'],
  ['SELECT (SELECT max(amount) FROM orders WHERE tenant_id = 999)', true, 'single'],
  // the outer query is pinned to one shard; the sub-query still reads every shard
  ['SELECT count(*) FROM orders WHERE tenant_id = 4 AND qty > (SELECT avg(qty) FROM orders)', true, 'single'],
  [
    'SELECT id FROM orders WHERE tenant_id = 4 AND customer IN (SELECT customer FROM orders WHERE tenant_id = 5) ORDER BY id',
    true,
    'single',
  ],
];

async function check(cases: Case[]): Promise<string[]> {
  const failures: string[] = [];
  for (const [sql, ordered, kind] of cases) {
    try {
      const plan = await runQuery(cluster.map, sql, [], { explain: true });
      expect(plan.plan.kind, sql).toBe(kind);
      await same(sql, ordered);
    } catch (e) {
      failures.push(failureLine(sql, e));
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

  it(`runs non-correlated sub-queries first and substitutes their answers (${SUBPLANS.length} queries)`, async () => {
    expect(await check(SUBPLANS)).toEqual([]);
    const r = await runQuery(
      cluster.map,
      'SELECT count(*) FROM orders WHERE qty IN (SELECT qty FROM orders WHERE tenant_id = 1)',
      [],
    );
    expect(r.plan.steps[0]).toMatch(
      /^subplan 1 \(IN\/ANY, not correlated\): SELECT qty FROM orders WHERE tenant_id = 1, planned as single over shard-1; run first, its \d+ row\(s\) substituted as a typed array/,
    );
    expect(r.plan.shardSql).toMatch(/qty = ANY \(CAST\('\{.*\}' AS int\[\]\)\)/);
  });

  it('generated combinations of set operations and sub-queries agree', async () => {
    const branch = fc.record({
      table: fc.constantFrom('orders', 'tenants', 'solo'),
      cond: fc.constantFrom('', 'paid', 'qty > 4', 'tenant_id < 9', 'customer IS NULL'),
      sub: fc.constantFrom('', '>', 'IN', 'NOT IN', 'EXISTS'),
    });
    const combo = fc.record({
      a: branch,
      b: branch,
      op: fc.constantFrom('UNION', 'UNION ALL', 'EXCEPT', 'EXCEPT ALL', 'INTERSECT', 'INTERSECT ALL'),
      limit: fc.option(fc.integer({ min: 1, max: 20 })),
    });
    const col: Record<string, string> = { orders: 'qty', tenants: 'tenant_id', solo: 'n' };
    const cond: Record<string, string> = { orders: '', tenants: 'tenant_id < 9', solo: 'tenant_id < 9' };
    const sql = (b: { table: string; cond: string; sub: string }) => {
      const c = col[b.table]!;
      const where = [b.table === 'orders' ? b.cond : (cond[b.table] ?? '')].filter(Boolean);
      if (b.sub === '>') where.push(`${c} > (SELECT avg(qty) FROM orders WHERE paid)`);
      if (b.sub === 'IN') where.push(`${c} IN (SELECT qty FROM orders WHERE tenant_id = 2)`);
      if (b.sub === 'NOT IN') where.push(`${c} NOT IN (SELECT qty FROM orders WHERE qty IS NOT NULL AND qty > 6)`);
      if (b.sub === 'EXISTS') where.push('EXISTS (SELECT 1 FROM orders WHERE qty = 9)');
      return `SELECT ${c} AS v FROM ${b.table}${where.length ? ` WHERE ${where.join(' AND ')}` : ''}`;
    };
    const failures: string[] = [];
    for (const c of fc.sample(combo, 30)) {
      const q = `${sql(c.a)} ${c.op} ${sql(c.b)} ORDER BY 1 NULLS FIRST${c.limit !== null ? ` LIMIT ${c.limit}` : ''}`;
      try {
        await same(q, true);
      } catch (e) {
        failures.push(failureLine(q, e));
      }
    }
    expect(failures, failures.join('\n')).toEqual([]);
  });
});

describe('--max-rows bounds every new pull-up: a clear error, exit code 1, nothing printed', () => {
  const cases: [string, RegExp][] = [
    [
      'SELECT customer FROM orders UNION SELECT name FROM tenants',
      /^pulling up rows for set operation UNION: (a shard|the shards) returned \d+ rows, more than --max-rows 40$/,
    ],
    [
      'SELECT o.id FROM orders o JOIN tenants t ON t.name = o.customer',
      /^pulling up rows for join not on the shard key: (a shard|the shards) returned \d+ rows, more than --max-rows 40$/,
    ],
    [
      'SELECT count(*) FROM tenants WHERE tenant_id IN (SELECT qty FROM orders)',
      /^evaluating a sub-query \(IN\/ANY\) over all shards first: (a shard|the shards) returned \d+ rows, more than --max-rows 40$/,
    ],
  ];
  for (const [sql, message] of cases)
    it(sql, async () => {
      const err = await runQuery(cluster.map, sql, [], { maxRows: 40 }).catch((e: unknown) => e as ShardctlError);
      expect(err).toBeInstanceOf(ShardctlError);
      expect((err as ShardctlError).code).toBe('MAX_ROWS');
      expect((err as ShardctlError).message).toMatch(message);
      const cli = await runCli(['-c', cluster.mapFile, 'query', sql, '--max-rows', '40', '--format', 'csv']);
      expect(cli.code).toBe(1);
      expect(cli.stdout).toBe('');
      expect(cli.stderr).toContain(message.source.replace(/^\^/, '').split(':')[0]!.replace(/\\/g, ''));
      expect(cli.stderr).not.toMatch(/\n\s+at /);
    });
});

describe('what stays refused, by name', () => {
  const refused: [string, RegExp][] = [
    // correlated on a column other than the shard key: neither a subplan nor a push-down
    [
      'SELECT count(*) FROM orders o WHERE qty IN (SELECT qty FROM orders i WHERE i.customer = o.customer)',
      /sub-query/,
    ],
    ['SELECT o.id FROM orders o WHERE EXISTS (SELECT 1 FROM tenants t WHERE t.name = o.customer)', /sub-query/],
    ['SELECT id FROM orders UNION SELECT tenant_id FROM (SELECT tenant_id FROM tenants) s', /set operation UNION/],
    ['SELECT o.id FROM orders o JOIN tenants t ON t.name = o.customer FOR UPDATE', /FOR UPDATE/],
  ];
  for (const [sql, why] of refused)
    it(sql, async () => {
      const err = await runQuery(cluster.map, sql, []).catch((e: unknown) => e as ShardctlError);
      expect(err).toBeInstanceOf(ShardctlError);
      expect((err as ShardctlError).exitCode).toBe(7);
      expect((err as ShardctlError).message).toMatch(why);
    });
});

describe('--explain says push-down or pull-up and where the final query runs', () => {
  it('names each part, the subplans, the server and the cap', async () => {
    const sql =
      "SELECT o.id FROM orders o JOIN tenants t ON t.name = o.customer WHERE o.qty > (SELECT avg(qty) FROM orders) AND t.region = 'eu'";
    const explain = await runCli(['-c', cluster.mapFile, 'query', sql, '--explain']);
    expect(explain.code).toBe(0);
    expect(explain.stdout).toMatch(
      /subplan 1 \(scalar, not correlated\): SELECT avg\(qty\) FROM orders, planned as final over shard-0, shard-1, shard-2, shard-3; run first/,
    );
    expect(explain.stdout).toMatch(
      /join not on the shard key needs every shard's rows together: each shard returns the columns id, customer of orders that pass o.qty > NULL/,
    );
    expect(explain.stdout).toMatch(/the columns name of tenants that pass t.region = 'eu'/);
    expect(explain.stdout).toMatch(
      /PostgreSQL runs the query itself on shard-0 \(read only\).*at most --max-rows rows in all go there/,
    );
  });
});
