import { describe, expect, it } from 'vitest';
import { ConfigError, parseShardMap, shardKeyColumn } from '../../src/index.js';
import { describeShardMap } from '../../src/config/describe-shard-map.js';

const shards = `shards:\n  - name: s0\n    url: postgres://app:pw0@db0:5432/app\n  - name: s1\n    url: postgres://app:pw1@db1:5432/app\n`;
const map = (key: string, extra = '') =>
  `version: 1\nshardKey: ${key}\nplacement: { strategy: modulo }\n${shards}${extra}`;

function problems(text: string): string[] {
  try {
    parseShardMap(text, { file: 'shards.yaml', env: {} });
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).problems.map((p) => `${p.line}:${p.column} ${p.path}: ${p.message}`);
  }
  throw new Error('expected a ConfigError');
}

describe('shardKey.columns', () => {
  it('gives each table its own tenant column, and the map description lists them', () => {
    const m = parseShardMap(map('{ column: tenant_id, type: bigint, columns: { tenants: id } }'), {
      file: 'shards.yaml',
      env: {},
    });
    expect(shardKeyColumn(m, 'tenants')).toBe('id');
    expect(shardKeyColumn(m, 'public.tenants')).toBe('id');
    expect(shardKeyColumn(m, 'users')).toBe('tenant_id');
    const d = describeShardMap(m);
    expect(d.shardKey).toBe('tenant_id (bigint); tenants.id');
    expect(d.keyColumns).toEqual({ tenants: 'id' });
  });

  it('refuses an entry naming a table that is not in the tables list, with its location', () => {
    const p = problems(
      map(
        '{ column: tenant_id, type: bigint, columns: { tenants: id, acounts: account_id } }',
        'tables: [tenants, users, accounts]\n',
      ),
    );
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^2:\d+ shardKey\.columns\.acounts: "acounts" is not in tables: \(tenants, users, accounts\)/);
  });

  it('accepts a schema-qualified table matching a bare name in tables, and the reverse', () => {
    const m = parseShardMap(
      map(
        '{ column: tenant_id, type: bigint, columns: { app.tenants: id, users: uid } }',
        'tables: [tenants, app.users]\n',
      ),
      { file: 'shards.yaml', env: {} },
    );
    expect(shardKeyColumn(m, 'app.tenants')).toBe('id');
    expect(shardKeyColumn(m, 'app.users')).toBe('uid');
  });

  it('refuses an entry naming a reference table', () => {
    const p = problems(map('{ column: tenant_id, type: bigint, columns: { plans: id } }', 'reference: [plans]\n'));
    expect(p).toEqual([expect.stringMatching(/shardKey\.columns\.plans: "plans" is a reference table/)]);
  });

  it('refuses a column that is not a plain name, and a value that is not a mapping', () => {
    const p = problems(map('{ column: tenant_id, type: bigint, columns: { tenants: "id; drop table x" } }'));
    expect(p).toEqual([
      expect.stringMatching(/^2:\d+ shardKey\.columns\.tenants: "id; drop table x" is not a plain column name/),
    ]);
    const q = problems(map('{ column: tenant_id, type: bigint, columns: [tenants] }'));
    expect(q).toEqual([expect.stringMatching(/shardKey\.columns: must be a mapping of table: column/)]);
  });
});
