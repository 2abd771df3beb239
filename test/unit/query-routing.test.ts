import { beforeAll, describe, expect, it } from 'vitest';
import { loadSqlTools, parseShardMap, planQuery } from '../../src/index.js';

// Routing by each table's own shard-key column (`shardKey.columns`), and never pinning a query to one
// shard by a placement rule the catalog has not recorded.
const map = parseShardMap(
  'version: 1\nshardKey: { column: tenant_id, type: bigint, columns: { tenants: id } }\nplacement: { strategy: modulo }\nshards:\n  - name: s0\n    url: postgres://u:p@h0/d\n  - name: s1\n    url: postgres://u:p@h1/d\nreference: [plans]\n',
  { env: {} },
);
const locate = (t: string) => `s${((Number(t) % 2) + 2) % 2}`;
const plan = (sql: string, ruleUnproven = false) => planQuery({ sql, params: [], map, locate, ruleUnproven });

beforeAll(() => loadSqlTools());

describe('per-table shard-key columns', () => {
  it('routes WHERE tenants.id = 7 to tenant 7, and users.tenant_id as before', () => {
    expect(plan('SELECT name FROM tenants WHERE id = 7')).toMatchObject({ kind: 'single', shards: ['s1'] });
    expect(plan('SELECT name FROM tenants t WHERE t.id IN (2, 4)')).toMatchObject({ kind: 'single', shards: ['s0'] });
    expect(plan('SELECT * FROM users WHERE tenant_id = 3').shards).toEqual(['s1']);
    // tenants.tenant_id is not the tenants table's key: nothing is pinned
    expect(plan('SELECT count(*) FROM tenants WHERE tenant_id = 7').shards).toEqual(['s0', 's1']);
  });

  it('a join on tenants.id = users.tenant_id is co-located; on users.id it is not', () => {
    const p = plan('SELECT t.name, count(*) FROM tenants t JOIN users u ON u.tenant_id = t.id GROUP BY 1');
    expect(p.kind).toBe('final');
    expect(p.shards).toEqual(['s0', 's1']);
    expect(plan('SELECT u.id FROM tenants t JOIN users u ON u.tenant_id = t.id WHERE t.id = 5').shards).toEqual(['s1']);
    // not co-located: both sides are pulled up and PostgreSQL joins them (test/unit/query-pullup.test.ts)
    expect(plan('SELECT u.id FROM tenants t JOIN users u ON u.id = t.id')).toMatchObject({
      kind: 'pullup',
      construct: 'join not on the shard key',
    });
    expect(plan('SELECT u.id FROM tenants t JOIN users u ON u.tenant_id = t.tenant_id')).toMatchObject({
      kind: 'pullup',
      construct: 'join not on the shard key',
    });
  });

  it('USING (tenant_id) ties the tables whose key it is', () => {
    expect(plan('SELECT count(*) FROM users JOIN projects USING (tenant_id)').kind).toBe('final');
    expect(plan('SELECT count(*) FROM tenants JOIN users USING (tenant_id)')).toMatchObject({
      kind: 'pullup',
      construct: 'join not on the shard key',
    });
  });
});

describe('an unrecorded placement rule', () => {
  it('asks every shard where the map would have pinned one, and says why', () => {
    const p = plan('SELECT * FROM users WHERE tenant_id = 3', true);
    expect(p.kind).toBe('concat');
    expect(p.shards).toEqual(['s0', 's1']);
    expect(p.routing).toMatch(/not recorded in the catalog .*adopt.*every shard is asked/);
    expect(plan('SELECT count(*) FROM users WHERE tenant_id = 3', true).shards).toEqual(['s0', 's1']);
    // reference tables stay on one shard: every shard holds them whole
    expect(plan('SELECT * FROM plans', true).shards).toEqual(['s0']);
  });

  it('refuses --tenant, and pulls up unconnected pinned relations, what only a proven rule would pin', () => {
    expect(() => planQuery({ sql: 'SELECT 1', params: [], map, locate, tenant: '3', ruleUnproven: true })).toThrow(
      /refused: --tenant 3 on a fleet whose placement rule the catalog has not recorded/,
    );
    // every shard is asked for each relation's rows, and PostgreSQL joins them
    expect(
      plan('SELECT 1 FROM users u, projects p WHERE u.tenant_id = 1 AND p.tenant_id = 3 AND u.id = p.owner', true),
    ).toMatchObject({ kind: 'pullup', shards: ['s0', 's1'], construct: 'join not on the shard key' });
    expect(
      plan('SELECT 1 FROM users u, projects p WHERE u.tenant_id = 1 AND p.tenant_id = 3 AND u.id = p.owner').shards,
    ).toEqual(['s1']);
  });
});
