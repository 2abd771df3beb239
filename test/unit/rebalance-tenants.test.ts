import { describe, expect, it } from 'vitest';
import { tenantsArg } from '../../src/cli/commands/rebalance.js';

describe('rebalance --tenant lists', () => {
  it('splits a comma list into a group for integer, uuid and text keys', () => {
    expect(tenantsArg('5, 8,13', 'bigint')).toEqual(['5', '8', '13']);
    expect(tenantsArg('7', 'bigint')).toBe('7');
    const [a, b] = ['0b6f1d3e-8a2c-4c1e-9d6a-1f2e3d4c5b6a', '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d'];
    expect(tenantsArg(`${a},${b}`, 'uuid')).toEqual([a, b]);
    expect(tenantsArg('acme,globex,initech', 'text')).toEqual(['acme', 'globex', 'initech']);
  });

  it('keeps an escaped comma (and backslash) inside a text id, and spaces as written', () => {
    expect(tenantsArg('acme\\, inc', 'text')).toBe('acme, inc');
    expect(tenantsArg('acme\\, inc,globex', 'text')).toEqual(['acme, inc', 'globex']);
    expect(tenantsArg('back\\\\slash', 'text')).toBe('back\\slash');
    expect(tenantsArg(' padded ,x', 'text')).toEqual([' padded ', 'x']);
  });

  it('refuses an empty member of a list', () => {
    expect(() => tenantsArg('5,,8', 'bigint')).toThrow(/--tenant takes one id or a list like 5,8,13, got "5,,8"/);
    expect(() => tenantsArg('acme,', 'text')).toThrow(/--tenant takes one id or a list/);
  });
});
