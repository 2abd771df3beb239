import { describe, expect, it } from 'vitest';
import {
  fromDriverError,
  interpolateEnv,
  redact,
  redactUrl,
  SHARDCTL_VERSION,
  ShardctlError,
} from '../../src/index.js';
import { registerSecret } from '../../src/redact.js';
import pkg from '../../package.json' with { type: 'json' };

describe('redaction', () => {
  it('hides URL passwords, password= keywords and registered secrets', () => {
    expect(redact('connect postgres://app:s3cret@db0:5432/app failed')).toBe(
      'connect postgres://app:***@db0:5432/app failed',
    );
    expect(redact('host=db password=abc123 user=x')).toBe('host=db password=*** user=x');
    registerSecret('Tr0ub4dor&3');
    expect(redact('auth failed for Tr0ub4dor&3')).toBe('auth failed for ***');
    expect(redactUrl('postgresql://u:p%40ss@h/d?sslpassword=zz&application_name=x')).toBe(
      'postgresql://u:***@h/d?application_name=x',
    );
  });

  it('redacts messages and hints of every ShardctlError', () => {
    const e = new ShardctlError('bad postgres://a:topsecret@h/d', { hint: 'try postgres://a:topsecret@h/d' });
    expect(e.message).not.toContain('topsecret');
    expect(e.hint).not.toContain('topsecret');
  });

  it('keeps PostgreSQL fields of driver errors', () => {
    const pgErr = Object.assign(new Error('relation "x" does not exist'), {
      code: '42P01',
      severity: 'ERROR',
      position: '15',
      hint: 'create it',
    });
    const e = fromDriverError(pgErr, { shard: 's1' });
    expect(e.message).toBe('shard s1: relation "x" does not exist (SQLSTATE 42P01)');
    expect(e.pg).toMatchObject({ code: '42P01', position: 15, hint: 'create it' });
    expect(
      fromDriverError(
        Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED', address: '127.0.0.1', port: 1 }),
        { shard: 's' },
      ).message,
    ).toBe('shard s: connection refused (127.0.0.1:1)');
  });
});

describe('environment substitution', () => {
  it('substitutes, defaults, escapes and reports missing variables', () => {
    expect(interpolateEnv('a${X}b', { X: '1' })).toEqual({ value: 'a1b', missing: [] });
    expect(interpolateEnv('${X:-d}', {})).toEqual({ value: 'd', missing: [] });
    expect(interpolateEnv('${X:-d}', { X: '' })).toEqual({ value: 'd', missing: [] });
    expect(interpolateEnv('$${X}', {})).toEqual({ value: '${X}', missing: [] });
    expect(interpolateEnv('${A}${B}', { A: 'a' }).missing).toEqual(['B']);
  });
});

describe('version', () => {
  it('matches package.json', () => {
    expect(SHARDCTL_VERSION).toBe(pkg.version);
  });
});
