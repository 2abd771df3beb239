import { beforeAll, describe, expect, it } from 'vitest';
import { loadSqlTools, parseShardMap, planQuery } from '../../src/index.js';
import { relationKey } from '../../src/query/plan-star.js';

const map = parseShardMap(
  'version: 1\nshardKey: { column: tenant_id, type: bigint }\nplacement: { strategy: modulo }\nshards:\n  - name: s0\n    url: postgres://u:p@h0/d\n  - name: s1\n    url: postgres://u:p@h1/d\nreference: [plans]\n',
  { env: {} },
);
const locate = (t: string) => `s${((Number(t) % 2) + 2) % 2}`;
const plan = (sql: string, params: unknown[] = []) => planQuery({ sql, params, map, locate });

beforeAll(() => loadSqlTools());

describe('query planner', () => {
  it('routes a pinned shard key to one shard and sends the query unchanged', () => {
    const p = plan('SELECT * FROM users WHERE tenant_id = 3 AND active');
    expect(p).toMatchObject({
      kind: 'single',
      shards: ['s1'],
      shardSql: 'SELECT * FROM users WHERE tenant_id = 3 AND active',
    });
    expect(plan('SELECT 1 FROM users WHERE tenant_id = $1', ['4']).shards).toEqual(['s0']);
    expect(plan('SELECT 1 FROM users u JOIN projects p USING (tenant_id) WHERE u.tenant_id IN (1, 3)').shards).toEqual([
      's1',
    ]);
    expect(plan('SELECT * FROM plans').shards).toEqual(['s0']);
  });

  it('sends offset+limit to shards and keeps the window for the client', () => {
    const p = plan('SELECT id FROM users LIMIT 10 OFFSET 5');
    expect(p.kind).toBe('concat');
    expect(p.shardSql).toBe('SELECT id FROM users LIMIT 15');
    expect([p.offset, p.limit]).toEqual([5n, 10n]);
  });

  it('sends sort keys not in the select list as hidden columns, with their collation', () => {
    const p = plan('SELECT id FROM users ORDER BY email DESC NULLS LAST LIMIT 3');
    expect(p.shardSql).toBe(
      'SELECT id AS __c0, email AS __c1, pg_collation_for(email::text) AS __c2 FROM users ORDER BY __c1 DESC NULLS LAST LIMIT 3',
    );
    expect(p.visible).toBe(1);
  });

  it('turns avg into sum and count and count(DISTINCT x) into distinct values', () => {
    const p = plan('SELECT plan, avg(total), count(DISTINCT status) FROM invoices GROUP BY plan HAVING sum(total) > 0');
    expect(p.shardSql).toBe(
      'SELECT plan AS __c0, pg_collation_for(plan::text) AS __c1, sum(total) AS __c2, count(total) AS __c3, status AS __c4, sum(total) AS __c5 FROM invoices GROUP BY plan, status',
    );
  });

  it('refuses by name', () => {
    expect(() =>
      plan('SELECT count(*) FROM users u WHERE id IN (SELECT id FROM projects p WHERE p.owner = u.id)'),
    ).toThrow(/refused: IN sub-query correlated on a column other than the shard key/);
    // over one table, PostgreSQL answers it over the pulled-up rows
    expect(plan('SELECT rank() OVER () FROM users WHERE active')).toMatchObject({
      kind: 'pullup',
      construct: 'window function',
      shardSql: 'SELECT * FROM users WHERE active',
    });
    expect(() => plan('SELECT count(*) FROM users u JOIN (SELECT owner FROM projects) p ON p.owner = u.id')).toThrow(
      /join not on the shard key/,
    );
    expect(() => plan("UPDATE users SET name = 'x'")).toThrow(/UPDATE is not a SELECT/);
    expect(() => plan('SELECT * FROM users FOR UPDATE')).toThrow(/FOR UPDATE/);
  });

  it('takes the catalogue of aggregates as data: planning is a function of its input alone', () => {
    const sql = 'SELECT my_total(amount) FROM invoices';
    // a plain function call: every shard returns its rows
    expect(plan(sql).kind).toBe('concat');
    expect(planQuery({ sql, params: [], map, locate, aggregates: new Set(['my_total']) })).toMatchObject({
      kind: 'pullup',
      construct: 'aggregate my_total()',
    });
    // the previous call's catalogue does not leak into the next plan
    expect(plan(sql)).toEqual(plan(sql));
    expect(plan(sql).kind).toBe('concat');
  });

  it('writes merges as typed operations in the final query, never as SQL placeholders', () => {
    const p = plan('SELECT plan, sum(total), avg(total) FROM invoices GROUP BY plan');
    expect(p.kind).toBe('final');
    if (p.kind !== 'final') return;
    const ops = JSON.stringify(p.final.targetList);
    expect(ops).toContain('{"ShardctlMerge":{"op":"sum","col":2}}');
    expect(ops).toContain('{"ShardctlMerge":{"op":"avg","sum":3,"count":4}}');
    expect(ops).not.toMatch(/__c\d|__sum|__avg/);
    expect(p.columns).toEqual(['plan', 'sum', 'avg']);
  });

  it('streams ordered rows without LIMIT with the sort keys, and sorts in PostgreSQL with one', () => {
    const streamed = plan('SELECT id, email FROM users ORDER BY email DESC, id');
    expect(streamed.kind === 'final' && streamed.sortKeys).toEqual([
      { col: 2, desc: true, nullsFirst: true },
      { col: 4, desc: false, nullsFirst: false },
    ]);
    const limited = plan('SELECT id FROM users ORDER BY id LIMIT 5');
    expect(limited.kind === 'final' && limited.sortKeys).toBeUndefined();
  });

  it('expands SELECT * and t.* from the catalog columns it is given, as PostgreSQL orders them', () => {
    const columns = new Map([
      [relationKey({ schema: undefined, name: 'users' }), ['tenant_id', 'id', 'Email']],
      [relationKey({ schema: 'app', name: 'invoices' }), ['tenant_id', 'id', 'total']],
    ]);
    const star = { shard: 's0', columns };
    const sorted = planQuery({ sql: 'SELECT * FROM users ORDER BY id LIMIT 2', params: [], map, locate, star });
    expect(sorted.shardSql).toBe(
      'SELECT users.tenant_id AS __c0, users.id AS __c1, users."Email" AS __c2, id AS __c3, pg_collation_for(id::text) AS __c4 FROM users ORDER BY __c3 LIMIT 2',
    );
    expect(sorted.kind === 'final' && sorted.columns).toEqual(['tenant_id', 'id', 'Email']);
    const join = planQuery({
      sql: 'SELECT i.*, u.* FROM users u JOIN app.invoices i ON i.tenant_id = u.tenant_id ORDER BY 1',
      params: [],
      map,
      locate,
      star,
    });
    // Duplicate output names stay, in order.
    expect(join.kind === 'final' && join.columns).toEqual(['tenant_id', 'id', 'total', 'tenant_id', 'id', 'Email']);
    // A column alias list renames the first columns.
    const renamed = planQuery({ sql: 'SELECT * FROM users u (t, uid) ORDER BY 1', params: [], map, locate, star });
    expect(renamed.kind === 'final' && renamed.columns).toEqual(['t', 'uid', 'Email']);
    expect(renamed.shardSql).toMatch(/^SELECT u\.t AS __c0, u\.uid AS __c1, u\."Email" AS __c2/);
    const grouped = planQuery({ sql: 'SELECT DISTINCT * FROM app.invoices ORDER BY 3', params: [], map, locate, star });
    expect(grouped.shardSql).toMatch(/^SELECT app\.invoices\.tenant_id AS __c0, /);
  });

  it('puts the merged columns of USING and NATURAL joins first, and refuses the SELECT * forms it does not expand', () => {
    const columns = new Map([
      [relationKey({ schema: undefined, name: 'users' }), ['tenant_id', 'id', 'plan']],
      [relationKey({ schema: undefined, name: 'plans' }), ['plan', 'rank']],
    ]);
    const star = { shard: 's0', columns };
    const p = (sql: string) => planQuery({ sql, params: [], map, locate, star });
    // (RIGHT JOIN keeping the tenant table: one keeping a reference table is refused across shards)
    const using = p('SELECT * FROM plans p RIGHT JOIN users u USING (plan) ORDER BY 1');
    expect(using.kind === 'final' && using.columns).toEqual(['plan', 'rank', 'tenant_id', 'id']);
    expect(using.shardSql).toMatch(/^SELECT COALESCE\(u\.plan, p\.plan\) AS __c0, p\.rank AS __c1/);
    const natural = p('SELECT * FROM users NATURAL JOIN plans ORDER BY rank');
    expect(natural.kind === 'final' && natural.columns).toEqual(['plan', 'tenant_id', 'id', 'rank']);
    expect(natural.shardSql).toMatch(/^SELECT COALESCE\(users\.plan, plans\.plan\) AS __c0/);
    // what the merge cannot expand, PostgreSQL answers over the pulled-up rows (test/unit/query-pullup.test.ts)
    expect(p('SELECT * FROM (users JOIN plans USING (plan)) AS j ORDER BY 1').kind).toBe('pullup');
    expect(() => p('SELECT * FROM users JOIN plans USING (nope) ORDER BY 1')).toThrow(
      /column "nope" specified in USING clause does not exist in left table/,
    );
    expect(() => p('SELECT * FROM nope ORDER BY 1')).toThrow(/shard s0: relation "nope" does not exist/);
    expect(plan('SELECT * FROM users u JOIN projects p USING (tenant_id) ORDER BY 1').kind).toBe('pullup');
    expect(plan('SELECT * FROM users ORDER BY 1').kind).toBe('pullup');
  });
});
