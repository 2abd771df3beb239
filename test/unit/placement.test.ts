import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileRule, moduloIndex, parseShardMap, parseTenant, ruleSql, ShardctlError } from '../../src/index.js';

const map2 = parseShardMap(
  'version: 1\nshardKey: { column: tenant_id, type: bigint }\nplacement: { strategy: modulo }\nshards:\n  - name: s0\n    url: postgres://u:p@h0/d\n  - name: s1\n    url: postgres://u:p@h1/d\n',
  { env: {} },
);

describe('modulo placement', () => {
  it('reproduces the classic rule with the non-negative remainder', () => {
    const place = compileRule(map2);
    expect(place(123n).shard.index).toBe(1);
    expect(place(456n).shard.index).toBe(0);
    expect(place(-5n).shard.index).toBe(1);
    expect(place(0n).shard.index).toBe(0);
  });

  it('agrees with BigInt arithmetic over the whole int8 range (fast path included)', () => {
    for (const n of [2, 3, 5, 7, 16]) {
      const shards = Array.from({ length: n }, (_, i) => `  - name: s${i}\n    url: postgres://u:p@h${i}/d\n`).join('');
      const map = parseShardMap(
        `version: 1\nshardKey: { column: t, type: bigint }\nplacement: { strategy: modulo }\nshards:\n${shards}`,
        { env: {} },
      );
      const place = compileRule(map);
      fc.assert(
        fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), (t) => {
          const expected = Number(((t % BigInt(n)) + BigInt(n)) % BigInt(n));
          expect(place(t).shard.index).toBe(expected);
          expect(moduloIndex(t, n)).toBe(expected);
        }),
        { numRuns: 2000 },
      );
    }
  });

  it('builds the same rule in SQL', () => {
    expect(ruleSql(map2, 'tenant_id')).toBe('((((tenant_id)::int8 % 2) + 2) % 2)');
  });
});

describe('tenant values', () => {
  it('parses integers and refuses anything else for a bigint key', () => {
    expect(parseTenant('123', 'bigint')).toBe(123n);
    expect(parseTenant(' -5 ', 'bigint')).toBe(-5n);
    expect(parseTenant('9223372036854775807', 'bigint')).toBe(9223372036854775807n);
    for (const bad of ['1; drop table users', '12a', '1.5', '', '9223372036854775808']) {
      expect(() => parseTenant(bad, 'bigint')).toThrow(ShardctlError);
    }
    try {
      parseTenant('1; drop table users', 'bigint');
    } catch (e) {
      expect((e as ShardctlError).exitCode).toBe(2);
      expect((e as ShardctlError).message).toContain('is not an integer');
    }
  });

  it('normalises uuids and keeps text as given', () => {
    expect(parseTenant('{0B5F3D2E-8C1A-4F6E-9D3B-2A7C1E5F4B90}', 'uuid')).toBe('0b5f3d2e-8c1a-4f6e-9d3b-2a7c1e5f4b90');
    expect(() => parseTenant('not-a-uuid', 'uuid')).toThrow(/is not a uuid/);
    expect(parseTenant('Acme GmbH', 'text')).toBe('Acme GmbH');
  });
});
