import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadShardMap, runQuery, ShardctlError } from '../../src/index.js';
import {
  cluster,
  expected,
  same,
  sameWithNames,
  useDifferentialFixture,
  failureLine,
} from '../harness/differential.js';
import { mapWithShardDown } from '../harness/cluster.js';
import { refusal } from '../harness/refusal.js';
import { runCli } from '../harness/run-cli.js';

// The same data in 4 shards (by the map) and in one database (test/harness/differential.ts). Every
// query's answer through shardctl must equal the single database's.
useDifferentialFixture();

const CORPUS: [string, boolean][] = [
  ['SELECT * FROM tenants', false],
  ['SELECT tenant_id, id, customer FROM orders', false],
  ['SELECT tenant_id, name FROM tenants ORDER BY tenant_id', true],
  ['SELECT tenant_id, name FROM tenants ORDER BY name, tenant_id', true],
  ['SELECT tenant_id, name FROM tenants ORDER BY name DESC, tenant_id', true],
  ['SELECT tenant_id, id, customer FROM orders ORDER BY customer NULLS FIRST, tenant_id, id', true],
  ['SELECT tenant_id, id, customer FROM orders ORDER BY customer DESC NULLS LAST, tenant_id DESC, id', true],
  ['SELECT tenant_id, id, amount FROM orders ORDER BY amount, tenant_id, id', true],
  ['SELECT tenant_id, id, amount FROM orders ORDER BY amount DESC, tenant_id, id LIMIT 7', true],
  ['SELECT tenant_id, id, amount FROM orders ORDER BY amount DESC NULLS LAST, tenant_id, id LIMIT 7 OFFSET 5', true],
  ['SELECT tenant_id, id, big FROM orders ORDER BY big, tenant_id, id LIMIT 10', true],
  ['SELECT tenant_id, id FROM orders ORDER BY big DESC, score NULLS FIRST, tenant_id, id LIMIT 10', true],
  ['SELECT tenant_id, id, created FROM orders ORDER BY created NULLS FIRST, tenant_id, id LIMIT 15', true],
  ['SELECT tenant_id, id FROM orders ORDER BY created DESC, id, tenant_id LIMIT 5', true],
  ['SELECT id, tenant_id FROM orders ORDER BY 2, 1 LIMIT 12', true],
  ['SELECT id AS x, tenant_id AS t FROM orders ORDER BY t DESC, x LIMIT 12', true],
  ['SELECT tenant_id, id, qty * 2 AS dbl FROM orders ORDER BY qty * 2, tenant_id, id LIMIT 9', true],
  ['SELECT tenant_id, id FROM orders ORDER BY lower(customer), customer, tenant_id, id', true],
  ['SELECT tenant_id, id FROM orders ORDER BY tenant_id, id LIMIT 5 OFFSET 1000', true],
  ['SELECT tenant_id, id FROM orders ORDER BY tenant_id, id OFFSET 700', true],
  ['SELECT tenant_id, id FROM orders LIMIT 0', true],
  ['SELECT count(*) FROM orders', true],
  ['SELECT count(*), count(customer), count(amount) FROM orders', true],
  ['SELECT sum(amount), sum(qty), sum(big) FROM orders', true],
  ['SELECT min(amount), max(amount), min(customer), max(customer), min(created), max(created) FROM orders', true],
  ['SELECT avg(amount), avg(qty), avg(big) FROM orders', true],
  ['SELECT bool_and(paid), bool_or(paid) FROM orders', true],
  ['SELECT count(DISTINCT customer), count(DISTINCT qty) FROM orders', true],
  ['SELECT count(DISTINCT (customer, qty)) FROM orders', true],
  ['SELECT count(DISTINCT (qty, paid)), count(DISTINCT qty), count(*) FROM orders', true],
  ['SELECT paid, count(DISTINCT (customer, note)) FROM orders GROUP BY paid ORDER BY paid NULLS FIRST', true],
  ['SELECT count(DISTINCT (tenant_id, customer)) AS n FROM orders WHERE qty > 2', true],
  ['SELECT sum(amount) / count(*) AS mean, sum(qty) + 1 FROM orders', true],
  ['SELECT count(*) FROM orders WHERE paid', true],
  ['SELECT count(*) FROM orders WHERE amount > 100', true],
  ['SELECT customer, count(*) FROM orders GROUP BY customer', false],
  ['SELECT customer, count(*) FROM orders GROUP BY customer ORDER BY customer', true],
  ['SELECT customer, count(*) FROM orders GROUP BY customer ORDER BY customer DESC NULLS LAST', true],
  ['SELECT customer, count(*) AS n FROM orders GROUP BY 1 ORDER BY n DESC, 1', true],
  [
    'SELECT customer, sum(amount), avg(amount), min(qty), max(qty) FROM orders GROUP BY customer ORDER BY customer NULLS FIRST',
    true,
  ],
  ['SELECT qty, count(*) FROM orders GROUP BY qty ORDER BY qty NULLS FIRST', true],
  ['SELECT qty % 3 AS m, count(*) FROM orders GROUP BY qty % 3 ORDER BY 1', true],
  ['SELECT paid, count(*), sum(big) FROM orders GROUP BY paid ORDER BY paid', true],
  ['SELECT customer, count(*) FROM orders GROUP BY customer HAVING count(*) > 20 ORDER BY 1', true],
  ['SELECT customer FROM orders GROUP BY customer HAVING sum(qty) > 50 ORDER BY 1', true],
  ['SELECT customer, max(amount) FROM orders GROUP BY customer HAVING avg(qty) > 4 ORDER BY 1', true],
  ['SELECT customer, count(DISTINCT tenant_id) FROM orders GROUP BY customer ORDER BY 1', true],
  ['SELECT customer, sum(amount) / count(*) FROM orders GROUP BY customer ORDER BY 1', true],
  ['SELECT customer, count(*) FROM orders GROUP BY customer ORDER BY count(*) DESC, customer LIMIT 3', true],
  ['SELECT customer, count(*) FROM orders GROUP BY customer ORDER BY sum(qty), customer LIMIT 4 OFFSET 1', true],
  ['SELECT DISTINCT customer FROM orders', false],
  ['SELECT DISTINCT customer FROM orders ORDER BY customer', true],
  ['SELECT DISTINCT qty, paid FROM orders ORDER BY qty, paid', true],
  ['SELECT DISTINCT region FROM tenants ORDER BY region NULLS FIRST', true],
  ['SELECT plan, count(*) FROM tenants GROUP BY plan ORDER BY plan', true],
  [
    'SELECT t.plan, count(*), sum(o.amount) FROM orders o JOIN tenants t ON t.tenant_id = o.tenant_id GROUP BY t.plan ORDER BY 1',
    true,
  ],
  [
    'SELECT t.plan, p.rank, count(*) FROM orders o JOIN tenants t USING (tenant_id) JOIN plans p ON p.plan = t.plan GROUP BY 1, 2 ORDER BY 2',
    true,
  ],
  [
    'SELECT o.tenant_id, o.id, t.name FROM orders o JOIN tenants t ON o.tenant_id = t.tenant_id ORDER BY o.tenant_id, o.id LIMIT 20',
    true,
  ],
  ['SELECT p.rank, count(*) FROM tenants t JOIN plans p ON p.plan = t.plan GROUP BY p.rank ORDER BY 1', true],
  ['SELECT * FROM plans ORDER BY rank', true],
  ['SELECT count(*) FROM plans', true],
  ['SELECT * FROM orders WHERE tenant_id = 4 ORDER BY id', true],
  ['SELECT count(*), sum(amount) FROM orders WHERE tenant_id IN (1, 2, 5)', true],
  ['SELECT tenant_id, count(*) FROM orders WHERE tenant_id IN (1, 2, 5) GROUP BY 1 ORDER BY 1', true],
  ['SELECT * FROM orders WHERE tenant_id = 3', true],
  ['SELECT count(*) FROM orders WHERE tenant_id = 3', true],
  [
    'SELECT tenant_id, id, sum(qty) OVER (PARTITION BY tenant_id ORDER BY id) FROM orders WHERE tenant_id = 4 ORDER BY id',
    true,
  ],
  ['WITH x AS (SELECT * FROM orders WHERE tenant_id = 4) SELECT count(*) FROM x WHERE tenant_id = 4', true],
  ['SELECT tenant_id, n, v FROM solo ORDER BY tenant_id, n', true],
  ['SELECT sum(v), count(*), avg(v) FROM solo', true],
  ['SELECT tenant_id, max(v) FROM solo GROUP BY tenant_id ORDER BY 1', true],
  ['SELECT count(*) FROM solo WHERE tenant_id = 2', true],
  ['SELECT max(big)::numeric - min(big) FROM orders', true],
  ['SELECT sum(big) FROM orders WHERE big > 0', true],
  ['SELECT avg(amount)::numeric(40, 20) FROM orders', true],
  ['SELECT note, count(*) FROM orders GROUP BY note ORDER BY note NULLS FIRST', true],
  ['SELECT name FROM tenants ORDER BY name COLLATE "C", tenant_id', true],
  ['SELECT upper(name) AS u FROM tenants ORDER BY u, 1', false],
  ['SELECT count(*) FILTER (WHERE paid), sum(qty) FILTER (WHERE qty > 5) FROM orders', true],
  ['SELECT customer, count(*) FILTER (WHERE paid) FROM orders GROUP BY customer ORDER BY customer', true],
  ["SELECT date_trunc('month', created) AS m, count(*) FROM orders GROUP BY 1 ORDER BY 1 NULLS FIRST", true],
  ["SELECT count(*) FROM orders WHERE created >= '2026-06-01T00:00:00Z'", true],
  ["SELECT coalesce(customer, '?') AS c, count(*) FROM orders GROUP BY 1 ORDER BY 1", true],
  ['SELECT tenant_id, id FROM orders WHERE note IS NULL ORDER BY tenant_id DESC, id DESC LIMIT 6', true],
  ['SELECT min(score), max(score) FROM orders', true],
  ['SELECT sum(score::numeric), avg(score::numeric) FROM orders', true],
  ['SELECT tenant_id, id, score FROM orders ORDER BY score DESC NULLS LAST, tenant_id, id LIMIT 8', true],
  ['SELECT tenant_id, label FROM tenants ORDER BY label, tenant_id', true],
  ['SELECT tenant_id, label FROM tenants ORDER BY label DESC, tenant_id LIMIT 5', true],
  ['SELECT min(label), max(label) FROM tenants', true],
  ['SELECT plan, min(label), max(label) FROM tenants GROUP BY plan ORDER BY plan', true],
  ['SELECT label, count(*) FROM tenants GROUP BY label ORDER BY label', true],
];

// SELECT * and t.* that must be sorted or grouped across shards: expanded from the catalog as PostgreSQL
// expands them. Output names are compared too (duplicates such as two tenant_id columns included).
const STAR_CORPUS: string[] = [
  'SELECT * FROM tenants ORDER BY tenant_id',
  'SELECT * FROM tenants ORDER BY label DESC, tenant_id',
  'SELECT * FROM orders ORDER BY tenant_id, id LIMIT 25 OFFSET 10',
  'SELECT * FROM orders ORDER BY amount DESC NULLS LAST, tenant_id, id LIMIT 15',
  'SELECT * FROM orders ORDER BY customer, created NULLS FIRST, tenant_id, id OFFSET 300',
  'SELECT * FROM orders WHERE tenant_id IN (1, 2) ORDER BY id, tenant_id',
  'SELECT *, qty * 2 AS dbl FROM orders ORDER BY dbl NULLS FIRST, tenant_id, id LIMIT 9',
  'SELECT * FROM orders o JOIN tenants t ON t.tenant_id = o.tenant_id ORDER BY o.tenant_id, o.id LIMIT 20',
  'SELECT o.*, t.name FROM orders o JOIN tenants t ON t.tenant_id = o.tenant_id ORDER BY t.name, o.id, o.tenant_id',
  'SELECT t.*, p.* FROM tenants t JOIN plans p ON p.plan = t.plan ORDER BY p.rank, t.tenant_id',
  'SELECT p.*, t.* FROM tenants t, plans p WHERE p.plan = t.plan ORDER BY 3 DESC LIMIT 4',
  'SELECT * FROM solo ORDER BY v DESC, tenant_id, n LIMIT 5',
  'SELECT DISTINCT * FROM solo ORDER BY tenant_id, n',
  'SELECT * FROM solo GROUP BY tenant_id, n, v ORDER BY 1, 2',
  'SELECT DISTINCT t.* FROM tenants t JOIN orders o ON o.tenant_id = t.tenant_id WHERE o.paid ORDER BY t.tenant_id',
  'SELECT * FROM orders o JOIN tenants t USING (tenant_id) ORDER BY tenant_id, o.id LIMIT 30',
  'SELECT * FROM tenants t LEFT JOIN solo s USING (tenant_id) ORDER BY tenant_id, s.n',
  'SELECT * FROM solo s RIGHT JOIN tenants t USING (tenant_id) ORDER BY t.tenant_id DESC, s.n',
  'SELECT * FROM tenants t FULL JOIN solo s USING (tenant_id) ORDER BY 1, n',
  'SELECT * FROM tenants NATURAL JOIN plans ORDER BY plan, tenant_id',
  'SELECT * FROM solo JOIN tenants USING (tenant_id) JOIN plans USING (plan) ORDER BY rank, tenant_id, n',
  'SELECT DISTINCT * FROM tenants t JOIN solo s USING (tenant_id) ORDER BY tenant_id, n',
];

describe('differential: shardctl query equals one PostgreSQL', () => {
  it(`answers ${STAR_CORPUS.length} SELECT * queries sorted or grouped across shards, names and order included`, async () => {
    const failures: string[] = [];
    for (const sql of STAR_CORPUS) {
      try {
        const plan = await runQuery(cluster.map, sql, [], { explain: true });
        expect(plan.plan.kind, sql).toBe('final');
        await sameWithNames(sql);
      } catch (e) {
        failures.push(failureLine(sql, e, 8));
      }
    }
    expect(failures, failures.join('\n')).toEqual([]);
  });

  it(`answers a corpus of ${CORPUS.length} queries exactly`, async () => {
    expect(CORPUS.length).toBeGreaterThanOrEqual(80);
    const failures: string[] = [];
    for (const [sql, ordered] of CORPUS) {
      try {
        await same(sql, ordered);
      } catch (e) {
        failures.push(failureLine(sql, e));
      }
    }
    expect(failures, failures.join('\n')).toEqual([]);
  });

  it('binds parameters, and routes by them', async () => {
    await same('SELECT count(*) FROM orders WHERE tenant_id = $1 AND qty > $2', true, ['4', '3']);
    await same('SELECT tenant_id, id FROM orders WHERE qty = $1 ORDER BY tenant_id, id LIMIT $2', true, ['3', '5']);
    const r = await runQuery(cluster.map, 'SELECT count(*) FROM orders WHERE tenant_id = $1', ['5'], { explain: true });
    expect(r.plan.shards).toEqual(['shard-1']);
    const ins = await runQuery(cluster.map, 'SELECT count(*) FROM orders WHERE tenant_id IN (4, 5)', [], {
      explain: true,
    });
    expect(ins.plan.shards).toEqual(['shard-0', 'shard-1']);
  });

  it('generated ORDER BY / LIMIT / GROUP BY combinations agree', async () => {
    const cols = ['tenant_id', 'id', 'customer', 'amount', 'qty', 'big', 'created', 'paid', 'note'];
    const groupable = ['customer', 'qty', 'paid', 'note', 'tenant_id'];
    const sortKey = fc.record({
      col: fc.constantFrom(...cols),
      desc: fc.boolean(),
      nulls: fc.constantFrom('', ' NULLS FIRST', ' NULLS LAST'),
    });
    const plain = fc.record({
      keys: fc.array(sortKey, { minLength: 1, maxLength: 3 }),
      limit: fc.option(fc.integer({ min: 0, max: 30 })),
      offset: fc.option(fc.integer({ min: 0, max: 40 })),
    });
    const grouped = fc.record({
      g: fc.subarray(groupable, { minLength: 1, maxLength: 2 }),
      agg: fc.constantFrom(
        'count(*)',
        'sum(amount)',
        'avg(qty)',
        'max(created)',
        'min(customer)',
        'count(DISTINCT big)',
      ),
      desc: fc.boolean(),
      limit: fc.option(fc.integer({ min: 1, max: 10 })),
    });
    const samples = [
      ...fc.sample(plain, 25).map((p) => {
        // tenant_id, id last: a total order, so LIMIT picks the same rows
        const order = [...p.keys.map((k) => `${k.col}${k.desc ? ' DESC' : ''}${k.nulls}`), 'tenant_id', 'id'].join(
          ', ',
        );
        return `SELECT tenant_id, id, ${p.keys.map((k) => k.col).join(', ')} FROM orders ORDER BY ${order}${p.limit !== null ? ` LIMIT ${p.limit}` : ''}${p.offset !== null ? ` OFFSET ${p.offset}` : ''}`;
      }),
      ...fc
        .sample(grouped, 25)
        .map(
          (g) =>
            `SELECT ${g.g.join(', ')}, ${g.agg} AS a FROM orders GROUP BY ${g.g.join(', ')} ORDER BY ${g.g.map((c) => `${c}${g.desc ? ' DESC' : ''}`).join(', ')}${g.limit !== null ? ` LIMIT ${g.limit}` : ''}`,
        ),
    ];
    const failures: string[] = [];
    for (const sql of samples) {
      try {
        await same(sql, true);
      } catch (e) {
        failures.push(failureLine(sql, e));
      }
    }
    expect(failures, failures.join('\n')).toEqual([]);
  });
});

// Constructs no merge of partial results answers: every shard returns the table's filtered rows and
// PostgreSQL runs the query over them on one shard. [sql, order is total]
const PULLUP_CORPUS: [string, boolean][] = [
  // windows partitioned by the shard key are pushed down (query-colocated.test.ts); these are not
  ['SELECT tenant_id, sum(qty) OVER (PARTITION BY customer) FROM orders', false],
  [
    'SELECT tenant_id, id, sum(qty) OVER (PARTITION BY qty ORDER BY tenant_id, id) AS s FROM orders ORDER BY 1, 2',
    true,
  ],
  [
    'SELECT tenant_id, id, rank() OVER (ORDER BY amount DESC NULLS LAST) AS r FROM orders ORDER BY r, 1, 2 LIMIT 20',
    true,
  ],
  [
    'SELECT id, tenant_id, row_number() OVER (ORDER BY created NULLS FIRST, tenant_id, id) FROM orders WHERE paid ORDER BY 3',
    true,
  ],
  ['SELECT DISTINCT ON (customer) customer, id, tenant_id FROM orders ORDER BY customer, id, tenant_id', true],
  ["SELECT string_agg(customer, ',' ORDER BY customer, tenant_id, id) FROM orders", true],
  ["SELECT qty, string_agg(note, '|' ORDER BY tenant_id, id) FROM orders GROUP BY qty ORDER BY qty NULLS FIRST", true],
  ['SELECT array_agg(id ORDER BY tenant_id, id) FROM orders WHERE qty > 5', true],
  ['SELECT json_agg(big ORDER BY tenant_id, id) FROM orders WHERE amount > 50000', true],
  ['SELECT sum(DISTINCT qty), avg(DISTINCT qty), sum(DISTINCT amount) FROM orders', true],
  ['SELECT customer, stddev(qty), variance(amount) FROM orders GROUP BY 1 ORDER BY 1', true],
  ['SELECT stddev_pop(qty), var_samp(big) FROM orders', true],
  [
    'SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY amount), percentile_disc(0.9) WITHIN GROUP (ORDER BY qty) FROM orders',
    true,
  ],
  ['SELECT mode() WITHIN GROUP (ORDER BY qty) FROM orders', true],
  ['SELECT paid, qty % 3 AS m, count(*) FROM orders GROUP BY ROLLUP (paid, qty % 3)', false],
  ['SELECT customer, count(*) FROM orders GROUP BY GROUPING SETS ((customer), ())', false],
  ['SELECT label, row_number() OVER (ORDER BY label, tenant_id) FROM tenants ORDER BY 2', true],
  ["SELECT plan, string_agg(label, '; ' ORDER BY label) FROM tenants GROUP BY plan ORDER BY plan", true],
  ['SELECT name, dense_rank() OVER (ORDER BY name) FROM tenants ORDER BY 2, 1', true],
  ['SELECT tenant_id, n, lag(v) OVER (PARTITION BY n ORDER BY tenant_id) FROM solo ORDER BY 1, 2', true],
  ['SELECT count(*) FILTER (WHERE v > 2), percentile_cont(0.25) WITHIN GROUP (ORDER BY v) FROM solo', true],
];

describe("pull-up: PostgreSQL answers over the shards' rows", () => {
  it(`answers ${PULLUP_CORPUS.length} queries no merge could, exactly`, async () => {
    const failures: string[] = [];
    for (const [sql, ordered] of PULLUP_CORPUS) {
      try {
        const plan = await runQuery(cluster.map, sql, [], { explain: true });
        expect(plan.plan.kind, sql).toBe('pullup');
        await same(sql, ordered);
      } catch (e) {
        failures.push(failureLine(sql, e));
      }
    }
    expect(failures, failures.join('\n')).toEqual([]);
  });

  it('--max-rows caps what is pulled up: a clear error naming the construct and the count, nothing printed', async () => {
    const sql = 'SELECT tenant_id, id, rank() OVER (ORDER BY amount) FROM orders';
    const err = await runQuery(cluster.map, sql, [], { maxRows: 50 }).catch((e: unknown) => e as ShardctlError);
    expect(err).toBeInstanceOf(ShardctlError);
    expect((err as ShardctlError).code).toBe('MAX_ROWS');
    expect((err as ShardctlError).message).toMatch(
      /^pulling up rows for window function: (a shard|the shards) returned \d+ rows, more than --max-rows 50$/,
    );
    const cli = await runCli(['-c', cluster.mapFile, 'query', sql, '--max-rows', '50']);
    expect(cli.code).not.toBe(0);
    expect(cli.stdout).toBe('');
    expect(cli.stderr).toMatch(
      /pulling up rows for window function: (a shard|the shards) returned \d+ rows, more than --max-rows 50/,
    );
    const explain = await runCli(['-c', cluster.mapFile, 'query', sql, '--explain']);
    expect(explain.stdout).toMatch(/PostgreSQL runs the query itself on shard-0 \(read only\)/);
  });
});

// Row values: count(DISTINCT (a, b)) counts each distinct row once, a row whose fields are NULL included
// (the row itself is not NULL). Row values the final query would have to read back from text (an
// anonymous record, a table's row type) are answered by pull-up. [sql, order is total, plan kind]
const ROW_VALUES: [string, boolean, string][] = [
  ['SELECT count(DISTINCT (customer, qty)) FROM orders', true, 'final'],
  ['SELECT count(DISTINCT ROW(customer, qty)) FROM orders', true, 'final'],
  [
    'SELECT count(DISTINCT (customer, note)), count(DISTINCT customer), count(DISTINCT note) FROM orders',
    true,
    'final',
  ],
  ['SELECT count(DISTINCT (customer, note)) FROM orders WHERE customer IS NULL OR note IS NULL', true, 'final'],
  ['SELECT count(DISTINCT (amount, note)) FROM orders WHERE amount IS NULL AND note IS NULL', true, 'final'],
  ['SELECT count(DISTINCT amount), count(DISTINCT (amount, note)) FROM orders WHERE note IS NULL', true, 'final'],
  ['SELECT count(DISTINCT (NULL::int, NULL::text)) FROM orders', true, 'final'],
  ['SELECT count(DISTINCT ROW(qty, ROW(customer, note))) FROM orders', true, 'final'],
  ['SELECT count(DISTINCT ((customer, note), (qty, paid))) FROM orders WHERE tenant_id < 10', true, 'final'],
  ['SELECT paid, count(DISTINCT (customer, note)) FROM orders GROUP BY paid ORDER BY paid NULLS FIRST', true, 'final'],
  [
    'SELECT customer, count(DISTINCT ROW(qty, note)) AS n FROM orders GROUP BY customer ORDER BY customer NULLS FIRST',
    true,
    'final',
  ],
  [
    'SELECT qty, count(DISTINCT (customer, note)), count(*) FROM orders GROUP BY qty HAVING count(DISTINCT (customer, note)) > 3 ORDER BY qty NULLS FIRST',
    true,
    'final',
  ],
  ['SELECT tenant_id, count(DISTINCT (customer, qty)) FROM orders GROUP BY 1 ORDER BY 1', true, 'final'],
  ['SELECT count(DISTINCT (customer, qty)) FILTER (WHERE paid) FROM orders', true, 'pullup'],
  ['SELECT count(DISTINCT (customer, qty)) FROM orders GROUP BY GROUPING SETS ((), (paid))', false, 'pullup'],
  ['SELECT count(DISTINCT o) FROM orders o', true, 'pullup'],
  ['SELECT count(DISTINCT t.*) FROM tenants t WHERE region IS NOT NULL', true, 'pullup'],
  ['SELECT DISTINCT (customer, qty) FROM orders', false, 'pullup'],
  ['SELECT (customer, note) AS r, count(*) FROM orders GROUP BY 1', false, 'pullup'],
  ['SELECT tenant_id, id FROM orders ORDER BY (customer, qty) NULLS FIRST, tenant_id, id LIMIT 9', true, 'pullup'],
  ['SELECT (customer, qty) FROM orders ORDER BY tenant_id, id LIMIT 6', true, 'pullup'],
  // streamed through the k-way merge, the row passes through as the shard wrote it
  ['SELECT o FROM orders o WHERE qty = 3 ORDER BY o.tenant_id, o.id', true, 'final'],
];

describe('row values', () => {
  it(`answers ${ROW_VALUES.length} queries over row constructors and whole rows exactly`, async () => {
    const failures: string[] = [];
    for (const [sql, ordered, kind] of ROW_VALUES) {
      try {
        const plan = await runQuery(cluster.map, sql, [], { explain: true });
        expect(plan.plan.kind, sql).toBe(kind);
        await same(sql, ordered);
      } catch (e) {
        failures.push(failureLine(sql, e));
      }
    }
    expect(failures, failures.join('\n')).toEqual([]);
  });

  it('counts a row with NULL fields once, as one server does', async () => {
    // amount and note are NULL together on some rows: the one distinct row (NULL, NULL) is counted
    const sql = 'SELECT count(DISTINCT (amount, note)) FROM orders WHERE amount IS NULL AND note IS NULL';
    const [[want]] = (await expected(sql)) as [[string]];
    expect(Number(want)).toBe(1);
    expect((await runQuery(cluster.map, sql, [])).rows).toEqual([[want]]);
    // count(DISTINCT amount) skips the NULL amount; the row (amount, note) counts it
    const both = 'SELECT count(DISTINCT amount), count(DISTINCT (amount, note)) FROM orders WHERE note IS NULL';
    const [[plain, rows]] = (await expected(both)) as [[string, string]];
    expect(Number(rows)).toBe(Number(plain) + 1);
    expect((await runQuery(cluster.map, both, [])).rows).toEqual([[plain, rows]]);
  });

  it('refuses a whole row that cannot be pulled up by name, with a hint', async () => {
    const err = await refusal(
      runQuery(cluster.map, 'WITH x AS (SELECT * FROM orders) SELECT count(DISTINCT x) FROM x', []),
    );
    expect(err).toBeInstanceOf(ShardctlError);
    expect(err.code).toBe('REFUSED');
    expect(err.message).toMatch(/^refused: row value x as a merged column across shards/);
    expect(err.hint).toMatch(/list its fields as separate columns/);
  });
});

describe('refusals name the construct and return nothing', () => {
  const refused: [string, RegExp][] = [
    // answered by pull-up and subplans now (test/integration/query-pullup.test.ts); these stay refused
    ['SELECT o.id FROM orders o JOIN (SELECT name FROM tenants) t ON t.name = o.customer', /join not on the shard key/],
    ['SELECT id FROM orders UNION SELECT tenant_id FROM (SELECT tenant_id FROM tenants) s', /set operation UNION/],
    [
      'SELECT count(*) FROM orders o WHERE qty IN (SELECT qty FROM orders i WHERE i.customer = o.customer)',
      /sub-query/,
    ],
    // (CTEs are co-located or answered first on their own: test/integration/query-colocated.test.ts)
    ['SELECT sum(score) FROM orders', /sum\(\) of double precision across shards/],
    ['SELECT customer, avg(score) FROM orders GROUP BY customer', /avg\(\) of double precision across shards/],
    ['SELECT * FROM orders FOR UPDATE', /FOR UPDATE/],
    ['UPDATE orders SET qty = 0', /UPDATE is not a SELECT/],
    ["INSERT INTO plans VALUES ('x', 9)", /INSERT is not a SELECT/],
    ['DELETE FROM orders', /DELETE is not a SELECT/],
    ['SELECT 1; SELECT 2', /2 statements/],
  ];
  for (const [sql, why] of refused) {
    it(sql, async () => {
      const before = await expected('SELECT count(*), sum(qty) FROM orders');
      let error: unknown;
      try {
        await runQuery(cluster.map, sql, []);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ShardctlError);
      expect((error as ShardctlError).exitCode).toBe(7);
      expect((error as ShardctlError).message).toMatch(why);
      const cli = await runCli(['-c', cluster.mapFile, 'query', sql]);
      expect(cli.code).toBe(7);
      expect(cli.stdout).toBe('');
      expect(cli.stderr).toMatch(/refused/);
      // nothing written anywhere
      const after = await runQuery(cluster.map, 'SELECT count(*), sum(qty) FROM orders', []);
      expect(after.rows).toEqual(before);
    });
  }
});

describe('the CLI', () => {
  it('prints ndjson with exact numbers, csv, json and tables; explains without running', async () => {
    const nd = await runCli([
      '-c',
      cluster.mapFile,
      'query',
      'SELECT sum(big) AS s, count(*) AS n, max(customer) AS m FROM orders',
    ]);
    expect(nd.code).toBe(0);
    const [want] = await expected('SELECT sum(big), count(*), max(customer) FROM orders');
    expect(nd.stdout.trim()).toBe(`{"s":${want![0]},"n":${want![1]},"m":${JSON.stringify(want![2])}}`);
    const csv = await runCli([
      '-c',
      cluster.mapFile,
      'query',
      'SELECT tenant_id, name FROM tenants WHERE tenant_id IN (1, 2) ORDER BY 1',
      '--format',
      'csv',
    ]);
    expect(csv.stdout).toBe(`tenant_id,name\n1,Ärger GmbH\n2,zeta\n`);
    const json = await runCli([
      '-c',
      cluster.mapFile,
      'query',
      'SELECT tenant_id FROM tenants WHERE tenant_id = $1',
      '-p',
      '4',
      '--format',
      'json',
    ]);
    expect(JSON.parse(json.stdout)).toEqual([{ tenant_id: 4 }]);
    const arrays = await runCli([
      '-c',
      cluster.mapFile,
      'query',
      "SELECT ARRAY[big, 1] AS b, ARRAY[customer, NULL, 'x,y'] AS t FROM orders WHERE tenant_id = 4 ORDER BY id LIMIT 3",
      '--format',
      'json',
    ]);
    const wantArrays = await expected('SELECT big, customer FROM orders WHERE tenant_id = 4 ORDER BY id LIMIT 3');
    // int8 elements stay exact: compare the JSON text, not JavaScript numbers
    expect(arrays.stdout.replace(/\s/g, '')).toBe(
      `[${wantArrays.map(([b, c]) => `{"b":[${b},1],"t":[${JSON.stringify(c)},null,"x,y"]}`).join(',')}]`.replace(
        /\s/g,
        '',
      ),
    );
    const explain = await runCli([
      '-c',
      cluster.mapFile,
      'query',
      'SELECT customer, avg(qty) FROM orders GROUP BY 1 ORDER BY 1',
      '--explain',
    ]);
    expect(explain.stdout).toMatch(/shards: shard-0, shard-1, shard-2, shard-3/);
    expect(explain.stdout).toMatch(/sum\(qty\) AS __c\d+, count\(qty\) AS __c\d+/);
    const stdin = await runCli(['-c', cluster.mapFile, 'query', '--format', 'csv'], {
      input: 'SELECT count(*) AS n FROM plans',
    });
    expect(stdin.stdout).toBe('n\n4\n');
  });

  it('names a shard that is down; with --allow-partial answers from the others and exits 5', async () => {
    const broken = await mapWithShardDown(cluster, 2);
    const map = await loadShardMap(broken);
    expect(map.shards).toHaveLength(4);
    const down = await runCli(['-c', broken, 'query', 'SELECT count(*) AS n FROM orders']);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/shard shard-2: cannot connect: connection refused/);
    const partial = await runCli(['-c', broken, 'query', 'SELECT count(*) AS n FROM orders', '--allow-partial']);
    expect(partial.code).toBe(5);
    expect(partial.stderr).toMatch(/warning: shard-2 did not answer/);
    const [all] = await expected('SELECT count(*) FROM orders WHERE tenant_id % 4 <> 2');
    expect(JSON.parse(partial.stdout).n).toBe(Number(all![0]));
  });
});

describe('the library', () => {
  it('router.scatter yields the merged rows from the same engine', async () => {
    const { createRouter } = await import('../../src/index.js');
    const router = await createRouter(cluster.map);
    try {
      const got: Record<string, string | null>[] = [];
      for await (const row of router.scatter(
        'SELECT customer, count(*) AS n FROM orders GROUP BY 1 ORDER BY 1 NULLS FIRST LIMIT 3',
      ))
        got.push(row);
      const want = await expected(
        'SELECT customer, count(*) AS n FROM orders GROUP BY 1 ORDER BY 1 NULLS FIRST LIMIT 3',
      );
      expect(got).toEqual(want.map(([customer, n]) => ({ customer, n })));
      await expect(async () => {
        for await (const _ of router.scatter(
          'SELECT id FROM orders UNION SELECT tenant_id FROM (SELECT tenant_id FROM tenants) s',
        ))
          void _;
      }).rejects.toThrow(/refused: set operation UNION/);
    } finally {
      await router.close();
    }
  });
});
