import type { Shard, ShardMap } from '../config/shard-map.js';
import { hashBytes, hashInt8, hashSafeInteger } from './pg-hash.js';
import type { TenantKey } from './tenant-key.js';

const encoder = new TextEncoder();

/** Where the placement rule (without the directory) puts a tenant. */
export interface RulePlacement {
  shard: Shard;
  /** Hash bucket (`hash` strategy only). */
  bucket?: number;
}

/**
 * The 32-bit hash PostgreSQL computes for a tenant key (`hashint8`, `hashtext(... COLLATE "C")`,
 * `uuid_hash`), as a signed integer.
 *
 * @example
 * tenantHash(123n, 'bigint') // same as SELECT hashint8(123)
 */
export function tenantHash(tenant: TenantKey, type: ShardMap['shardKey']['type']): number {
  if (type === 'bigint') {
    const n = tenant as bigint;
    return n >= -9007199254740991n && n <= 9007199254740991n ? hashSafeInteger(Number(n)) : hashInt8(n);
  }
  if (type === 'uuid') return hashBytes(uuidBytes(tenant as string));
  return hashBytes(encoder.encode(tenant as string));
}

/**
 * Bucket of a tenant under the `hash` strategy: the server's hash taken as an unsigned 32-bit
 * number, modulo the bucket count. In SQL: `(hashint8(k)::int8 & 4294967295) % buckets`.
 *
 * @example
 * bucketOf(123n, 'bigint', 4096)
 */
export function bucketOf(tenant: TenantKey, type: ShardMap['shardKey']['type'], buckets: number): number {
  return (tenantHash(tenant, type) >>> 0) % buckets;
}

/**
 * The non-negative remainder `tenant mod n`, as Python's `%` gives it: -5 mod 2 is 1.
 *
 * @example
 * moduloIndex(-5n, 2) // 1
 */
export function moduloIndex(tenant: bigint, n: number): number {
  const m = BigInt(n);
  return Number(((tenant % m) + m) % m);
}

/**
 * Builds a fast lookup of the rule: bucket to shard for `hash`, index to shard for `modulo`.
 *
 * @example
 * const place = compileRule(map); place(123n).shard.name
 */
export function compileRule(map: ShardMap): (tenant: TenantKey) => RulePlacement {
  const shards = map.shards;
  if (map.placement.strategy === 'modulo') {
    const n = shards.length;
    return (tenant) => {
      const t = tenant as bigint;
      // Number arithmetic is exact below 2^53 and several times faster than BigInt.
      if (t >= -9007199254740991n && t <= 9007199254740991n) {
        const r = Number(t) % n;
        return { shard: shards[r < 0 ? r + n : r]! };
      }
      return { shard: shards[moduloIndex(t, n)]! };
    };
  }
  const total = map.placement.buckets;
  const owner = new Array<Shard | undefined>(total);
  for (const s of shards) for (const r of s.buckets) for (let b = r.from; b <= r.to; b++) owner[b] = s;
  const type = map.shardKey.type;
  return (tenant) => {
    const bucket = bucketOf(tenant, type, total);
    return { shard: owner[bucket]!, bucket };
  };
}

/**
 * SQL expression, for the server, that computes the rule's shard index or bucket of a key column,
 * so that a shard can find in SQL which of its rows belong elsewhere.
 * For `modulo` it yields the shard index; for `hash` the bucket.
 *
 * @example
 * ruleSql(map, 'tenant_id') // '(((tenant_id) % 2) + 2) % 2'
 */
export function ruleSql(map: ShardMap, column: string): string {
  if (map.placement.strategy === 'modulo') {
    const n = map.shards.length;
    return `((((${column})::int8 % ${n}) + ${n}) % ${n})`;
  }
  const b = map.placement.buckets;
  const hash =
    map.shardKey.type === 'bigint'
      ? `hashint8((${column})::int8)`
      : map.shardKey.type === 'uuid'
        ? `uuid_hash((${column})::uuid)`
        : `hashtext((${column})::text COLLATE "C")`;
  return `((${hash})::int8 & 4294967295) % ${b}`;
}

function uuidBytes(u: string): Uint8Array {
  const hex = u.replace(/-/g, '');
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}
