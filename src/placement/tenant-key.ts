import { ExitCode, ShardctlError } from '../errors.js';
import type { ShardKeyType } from '../config/shard-map.js';

/**
 * A tenant value in canonical form: a `bigint` for integer keys, a lowercase hyphenated string for
 * uuid keys, the string itself for text keys. `tenantText` gives the form stored in the directory.
 */
export type TenantKey = bigint | string;

const INT8_MIN = -(2n ** 63n);
const INT8_MAX = 2n ** 63n - 1n;
const UUID = /^\{?([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})\}?$/i;

/**
 * Parses a tenant given on the command line or by a library caller into its canonical form.
 * Throws a {@link ShardctlError} (exit code 2) that says what is wrong with the value.
 *
 * @example
 * parseTenant('123', 'bigint') // 123n
 * parseTenant('1; drop table users', 'bigint') // throws: not an integer
 */
export function parseTenant(value: unknown, type: ShardKeyType): TenantKey {
  if (type === 'bigint') {
    let n: bigint | undefined;
    if (typeof value === 'bigint') n = value;
    else if (typeof value === 'number' && Number.isSafeInteger(value)) n = BigInt(value);
    else if (typeof value === 'string' && /^\s*[+-]?\d+\s*$/.test(value)) n = BigInt(value.trim());
    if (n === undefined) {
      throw new ShardctlError(
        `tenant ${JSON.stringify(typeof value === 'bigint' ? String(value) : value)} is not an integer, but the shard key is bigint`,
        {
          code: 'BAD_TENANT',
          exitCode: ExitCode.Usage,
          hint: 'pass the tenant id as a whole number, for example 123',
        },
      );
    }
    if (n < INT8_MIN || n > INT8_MAX) {
      throw new ShardctlError(`tenant ${n} is outside the bigint range`, {
        code: 'BAD_TENANT',
        exitCode: ExitCode.Usage,
      });
    }
    return n;
  }
  if (type === 'uuid') {
    const m = typeof value === 'string' ? UUID.exec(value.trim()) : null;
    if (!m) {
      throw new ShardctlError(`tenant ${JSON.stringify(value)} is not a uuid, but the shard key is uuid`, {
        code: 'BAD_TENANT',
        exitCode: ExitCode.Usage,
        hint: 'pass a uuid such as 0b5f3d2e-8c1a-4f6e-9d3b-2a7c1e5f4b90',
      });
    }
    return m.slice(1, 6).join('-').toLowerCase();
  }
  if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'bigint') {
    throw new ShardctlError(`tenant ${JSON.stringify(value)} is not a text value`, {
      code: 'BAD_TENANT',
      exitCode: ExitCode.Usage,
    });
  }
  const s = String(value);
  if (s.includes('\u0000'))
    throw new ShardctlError('tenant contains a NUL character, which PostgreSQL text cannot hold', {
      code: 'BAD_TENANT',
      exitCode: ExitCode.Usage,
    });
  return s;
}

/**
 * The text form of a tenant, as stored in the placement directory and shown to people.
 *
 * @example
 * tenantText(123n) // '123'
 */
export function tenantText(tenant: TenantKey): string {
  return typeof tenant === 'bigint' ? tenant.toString() : tenant;
}
