import { beforeAll, describe, expect, it } from 'vitest';
import { loadSqlTools, parseShardMap, planQuery } from '../../src/index.js';

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
    expect(() => plan('SELECT rank() OVER () FROM users')).toThrow(/refused: window function/);
    expect(() => plan('SELECT count(*) FROM users u JOIN projects p ON p.owner = u.id')).toThrow(
      /join not on the shard key/,
    );
    expect(() => plan("UPDATE users SET name = 'x'")).toThrow(/UPDATE is not a SELECT/);
    expect(() => plan('SELECT * FROM users FOR UPDATE')).toThrow(/FOR UPDATE/);
  });

  it('takes the catalogue of aggregates as data: planning is a function of its input alone', () => {
    const sql = 'SELECT my_total(amount) FROM invoices';
    // a plain function call: every shard returns its rows
    expect(plan(sql).kind).toBe('concat');
    expect(() => planQuery({ sql, params: [], map, locate, aggregates: new Set(['my_total']) })).toThrow(
      /refused: aggregate my_total\(\)/,
    );
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
});
