/**
 * PostgreSQL's own hash functions (Bob Jenkins' lookup3 as in `src/common/hashfn.c`), reproduced bit
 * for bit so that a placement computed here equals the one the server computes with `hashint8`,
 * `hashtext` and `uuid_hash`. Results are signed 32-bit integers, like the SQL functions return.
 */

function rot(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k)) | 0;
}

// mix() and final() from hashfn.c; all arithmetic is modulo 2^32 through `| 0`.
function finalMix(a: number, b: number, c: number): number {
  c ^= b;
  c = (c - rot(b, 14)) | 0;
  a ^= c;
  a = (a - rot(c, 11)) | 0;
  b ^= a;
  b = (b - rot(a, 25)) | 0;
  c ^= b;
  c = (c - rot(b, 16)) | 0;
  a ^= c;
  a = (a - rot(c, 4)) | 0;
  b ^= a;
  b = (b - rot(a, 14)) | 0;
  c ^= b;
  c = (c - rot(b, 24)) | 0;
  return c | 0;
}

/**
 * `hash_bytes_uint32`: the hash of one 32-bit value, as `hashint4` computes it.
 *
 * @example
 * hashUint32(0) // equals SELECT hashint4(0)
 */
export function hashUint32(k: number): number {
  const init = (0x9e3779b9 + 4 + 3923095) | 0;
  const a = (init + k) | 0;
  return finalMix(a, init, init);
}

/**
 * `hashint8(bigint)`: folds the high half into the low half (inverted for negatives) so that values
 * fitting in int4 hash like `hashint4`.
 *
 * @example
 * hashInt8(123n) // equals SELECT hashint8(123)
 */
export function hashInt8(v: bigint): number {
  const lo = Number(BigInt.asUintN(32, v));
  const hi = Number(BigInt.asUintN(32, v >> 32n));
  const folded = v >= 0n ? lo ^ hi : lo ^ ~hi;
  return hashUint32(folded | 0);
}

/** Fast path for integers in the safe range: same result as {@link hashInt8}, no BigInt. */
export function hashSafeInteger(v: number): number {
  const lo = v | 0; // low 32 bits (two's complement, exact for |v| < 2^53)
  const hi = Math.floor(v / 4294967296) | 0;
  const folded = v >= 0 ? lo ^ hi : lo ^ ~hi;
  return hashUint32(folded);
}

/**
 * The state a, b, c of one `hash_bytes` run. Int32Array slots wrap to 32 bits as C's uint32 does; one
 * scratch array serves every call, since a call runs to its end before another starts.
 */
const state = new Int32Array(3);

function word(k: Uint8Array, i: number): number {
  return k[i]! | (k[i + 1]! << 8) | (k[i + 2]! << 16) | (k[i + 3]! << 24) | 0;
}

/** PostgreSQL's `mix(a, b, c)` on {@link state}. */
function mix(s: Int32Array): void {
  let a = s[0]!;
  let b = s[1]!;
  let c = s[2]!;
  a = (a - c) | 0;
  a ^= rot(c, 4);
  c = (c + b) | 0;
  b = (b - a) | 0;
  b ^= rot(a, 6);
  a = (a + c) | 0;
  c = (c - b) | 0;
  c ^= rot(b, 8);
  b = (b + a) | 0;
  a = (a - c) | 0;
  a ^= rot(c, 16);
  c = (c + b) | 0;
  b = (b - a) | 0;
  b ^= rot(a, 19);
  a = (a + c) | 0;
  c = (c - b) | 0;
  c ^= rot(b, 4);
  b = (b + a) | 0;
  s[0] = a;
  s[1] = b;
  s[2] = c;
}

/** Adds the last `len` (< 12) bytes from `o`, little-endian; the lowest byte of c is reserved for the length. */
function addTail(s: Int32Array, k: Uint8Array, o: number, len: number): void {
  switch (len) {
    case 11:
      s[2]! += k[o + 10]! << 24; // falls through
    case 10:
      s[2]! += k[o + 9]! << 16; // falls through
    case 9:
      s[2]! += k[o + 8]! << 8; // falls through
    case 8:
      s[1]! += word(k, o + 4);
      s[0]! += word(k, o);
      break;
    case 7:
      s[1]! += k[o + 6]! << 16; // falls through
    case 6:
      s[1]! += k[o + 5]! << 8; // falls through
    case 5:
      s[1]! += k[o + 4]!; // falls through
    case 4:
      s[0]! += word(k, o);
      break;
    case 3:
      s[0]! += k[o + 2]! << 16; // falls through
    case 2:
      s[0]! += k[o + 1]! << 8; // falls through
    case 1:
      s[0]! += k[o]!;
  }
}

/**
 * `hash_bytes`: the hash of a byte string, as `hashtext` (deterministic collation) and `uuid_hash` compute it.
 *
 * @example
 * hashBytes(Buffer.from('acme', 'utf8')) // equals SELECT hashtext('acme' COLLATE "C")
 */
export function hashBytes(k: Uint8Array): number {
  const s = state;
  s.fill((0x9e3779b9 + k.length + 3923095) | 0);
  let o = 0;
  for (; k.length - o >= 12; o += 12) {
    s[0]! += word(k, o);
    s[1]! += word(k, o + 4);
    s[2]! += word(k, o + 8);
    mix(s);
  }
  addTail(s, k, o, k.length - o);
  return finalMix(s[0]!, s[1]!, s[2]!);
}
