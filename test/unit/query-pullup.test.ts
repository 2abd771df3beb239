import { beforeAll, describe, expect, it } from 'vitest';
import { loadSqlTools, parseShardMap, planQuery } from '../../src/index.js';
import { relationKey } from '../../src/query/plan-star.js';
import { substituteSubplans, type SubplanAnswer } from '../../src/query/plan-subplan.js';
import type { PullupPlan } from '../../src/query/plan-types.js';
import { deparse, parseSql } from '../../src/query/sql-ast.js';

const map = parseShardMap(
  'version: 1\nshardKey: { column: tenant_id, type: bigint }\nplacement: { strategy: modulo }\nshards:\n  - name: s0\n    url: postgres://u:p@h0/d\n  - name: s1\n    url: postgres://u:p@h1/d\nreference: [plans]\n',
  { env: {} },
);
const locate = (t: string) => `s${((Number(t) % 2) + 2) % 2}`;
const relationColumns = new Map([
  [relationKey({ schema: undefined, name: 'orders' }), ['tenant_id', 'id', 'customer', 'qty', 'paid']],
  [relationKey({ schema: undefined, name: 'tenants' }), ['tenant_id', 'name', 'region']],
]);
const pullup = (sql: string) => {
  const p = planQuery({ sql, params: [], map, locate, relationColumns });
  expect(p.kind, sql).toBe('pullup');
  return p as PullupPlan;
};
const shardSqls = (sql: string) => pullup(sql).parts.map((p) => p.shardSql);

beforeAll(() => loadSqlTools());

describe('pull-up plans', () => {
  it('sends only the used columns, and a row mark when none is used', () => {
    expect(shardSqls('SELECT customer, rank() OVER (ORDER BY qty) FROM orders WHERE paid')).toEqual([
      'SELECT orders.customer, orders.qty FROM orders WHERE paid',
    ]);
    expect(shardSqls('SELECT count(*) OVER () FROM orders')).toEqual(['SELECT true AS __shardctl_row FROM orders']);
    // a whole-row reference or a star needs every column
    expect(shardSqls('SELECT o, rank() OVER () FROM orders o')).toEqual(['SELECT * FROM orders AS o']);
    expect(shardSqls('SELECT *, rank() OVER () FROM orders')).toEqual(['SELECT * FROM orders']);
    expect(shardSqls('SELECT j.name FROM (orders o JOIN tenants t ON t.name = o.customer) AS j')).toEqual([
      'SELECT * FROM orders AS o',
      'SELECT * FROM tenants AS t',
    ]);
  });

  it('pulls up each branch of a set operation with its own WHERE', () => {
    const p = pullup('SELECT qty FROM orders WHERE paid EXCEPT SELECT tenant_id FROM tenants ORDER BY 1 LIMIT 3');
    expect(p.construct).toBe('set operation EXCEPT');
    expect(p.parts.map((x) => [x.cte, x.shardSql])).toEqual([
      ['__shardctl_rows', 'SELECT orders.qty FROM orders WHERE paid'],
      ['__shardctl_rows_2', 'SELECT tenants.tenant_id FROM tenants'],
    ]);
    expect(deparse({ SelectStmt: p.final })).toBe(
      'SELECT qty FROM __shardctl_rows AS orders EXCEPT SELECT tenant_id FROM __shardctl_rows_2 AS tenants ORDER BY 1 LIMIT 3',
    );
    expect(pullup('SELECT id FROM orders UNION ALL SELECT tenant_id FROM tenants').construct).toBe(
      'set operation UNION ALL',
    );
  });

  it('pushes a conjunct to the side it concerns, never to the nullable side of an outer join', () => {
    const inner = pullup(
      "SELECT o.id FROM orders o JOIN tenants t ON t.name = o.customer AND t.region = 'eu' WHERE o.qty > 1 AND o.qty < t.tenant_id",
    );
    expect(inner.construct).toBe('join not on the shard key');
    expect(inner.parts.map((x) => x.shardSql)).toEqual([
      'SELECT o.id, o.customer, o.qty FROM orders AS o WHERE o.qty > 1',
      "SELECT t.tenant_id, t.name FROM tenants AS t WHERE t.region = 'eu'",
    ]);
    expect(deparse({ SelectStmt: inner.final })).toBe(
      'SELECT o.id FROM __shardctl_rows AS o JOIN __shardctl_rows_2 AS t ON t.name = o.customer WHERE o.qty < t.tenant_id',
    );
    const left = pullup(
      "SELECT o.id FROM orders o LEFT JOIN tenants t ON t.name = o.customer AND t.region = 'eu' AND o.paid WHERE t.region IS NULL",
    );
    // the ON conjunct on the nullable side filters it before the join; the preserved side's stays in ON;
    // WHERE on the nullable side stays in the final query
    expect(left.parts.map((x) => x.shardSql)).toEqual([
      'SELECT o.id, o.customer, o.paid FROM orders AS o',
      "SELECT t.name, t.region FROM tenants AS t WHERE t.region = 'eu'",
    ]);
    expect(deparse({ SelectStmt: left.final })).toMatch(
      /ON t\.name = o\.customer AND o\.paid WHERE t\.region IS NULL$/,
    );
    expect(shardSqls('SELECT o.id FROM orders o JOIN tenants t ON t.name = o.customer WHERE random() < o.qty')).toEqual(
      ['SELECT o.id, o.customer, o.qty FROM orders AS o', 'SELECT t.name FROM tenants AS t'],
    );
  });

  it('leaves reference tables in the final query and keeps what it cannot pull up refused', () => {
    expect(
      shardSqls(
        'SELECT t.name, p.rank FROM tenants t JOIN plans p ON p.plan = t.region JOIN orders o ON o.customer = t.name',
      ),
    ).toEqual(['SELECT t.name, t.region FROM tenants AS t', 'SELECT o.customer FROM orders AS o']);
    expect(() =>
      planQuery({ sql: 'SELECT id FROM orders UNION SELECT x FROM (SELECT 1 AS x) s', params: [], map, locate }),
    ).toThrow(/refused: set operation UNION/);
    expect(() =>
      planQuery({
        sql: 'SELECT o.id FROM orders o JOIN tenants t ON t.name = o.customer WHERE o.qty = $1 OR t.name = $1',
        params: ['1'],
        map,
        locate,
      }),
    ).toThrow(/join not on the shard key with parameters outside WHERE/);
  });
});

describe('subplans', () => {
  const answer = (a: Partial<SubplanAnswer>): SubplanAnswer => ({ rows: [], width: 1, how: 'planned as final', ...a });
  const substitute = async (sql: string, a: SubplanAnswer | 'correlated') =>
    deparse((await substituteSubplans(parseSql(sql)[0]!, [], async () => a, false)).stmt);

  it('puts a scalar as a typed literal, NULL when it has no row, and refuses two rows as PostgreSQL does', async () => {
    expect(
      await substitute(
        'SELECT 1 FROM t WHERE a > (SELECT avg(a) FROM t)',
        answer({ rows: [["1.5'x"]], type: 'numeric' }),
      ),
    ).toBe("SELECT 1 FROM t WHERE a > '1.5''x'::numeric");
    expect(await substitute('SELECT (SELECT max(b) FROM t)', answer({ type: 'text', collation: '"en-x-icu"' }))).toBe(
      'SELECT NULL::text COLLATE "en-x-icu"',
    );
    await expect(substitute('SELECT (SELECT b FROM t)', answer({ rows: [['1'], ['2']], type: 'int' }))).rejects.toThrow(
      /more than one row returned by a subquery used as an expression/,
    );
  });

  it('turns IN, NOT IN and op ALL into arrays with NULL elements kept, EXISTS into a boolean', async () => {
    const rows = [['a"b'], [null], ['c\\d']];
    expect(await substitute('SELECT 1 FROM t WHERE x NOT IN (SELECT y FROM u)', answer({ rows, type: 'text' }))).toBe(
      `SELECT 1 FROM t WHERE NOT (x = ANY (CAST(E'{"a\\\\"b",NULL,"c\\\\\\\\d"}' AS text[])))`,
    );
    expect(
      await substitute('SELECT 1 FROM t WHERE x > ALL (SELECT y FROM u)', answer({ rows: [['1']], type: 'integer' })),
    ).toBe('SELECT 1 FROM t WHERE x > ALL (CAST(\'{"1"}\' AS int[]))');
    expect(await substitute('SELECT 1 FROM t WHERE EXISTS (SELECT 1 FROM u)', answer({ rows: [] }))).toBe(
      'SELECT 1 FROM t WHERE false',
    );
  });

  it('leaves correlated sub-queries in place', async () => {
    let asked = 0;
    const sql = 'SELECT 1 FROM t WHERE x IN (SELECT y FROM u WHERE u.k = t.k)';
    const r = await substituteSubplans(parseSql(sql)[0]!, [], async () => (asked++, answer({})), false);
    expect(asked).toBe(0);
    expect(deparse(r.stmt)).toBe(sql);
    expect(await substitute('SELECT 1 FROM t WHERE x IN (SELECT y FROM u WHERE k = z)', 'correlated')).toBe(
      'SELECT 1 FROM t WHERE x IN (SELECT y FROM u WHERE k = z)',
    );
  });
});
