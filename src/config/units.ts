/**
 * The one grammar for durations and byte sizes, shared by the shard map (`migrate.lockTimeout: 5s`) and
 * the command line (`--max-pause 500ms`, `--max-rate 20MB`). Each parser returns `undefined` for text
 * that is not a duration or size, so that each caller words its own error (a map problem with a line
 * and column, a usage error naming the flag).
 */

/** Milliseconds per duration unit; a bare number is milliseconds. */
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, min: 60_000, m: 60_000, h: 3_600_000 };

/** Bytes per size unit: kB, MB... are powers of 1000, KiB, MiB... powers of 1024; a bare number is bytes. */
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  kib: 1024,
  mb: 1e6,
  mib: 1024 ** 2,
  gb: 1e9,
  gib: 1024 ** 3,
  tb: 1e12,
  tib: 1024 ** 4,
};

/**
 * Parses a duration into whole milliseconds: `500` or `500ms`, `5s` or `1.5s`, `2min` (or `2m`), `1h`;
 * a finite non-negative number is taken as milliseconds already. Returns `undefined` when the value is
 * not a duration.
 *
 * @example
 * parseDuration('5s') // 5000
 * parseDuration('250ms') // 250
 * parseDuration('40') // 40
 * parseDuration('soon') // undefined
 */
export function parseDuration(raw: unknown): number | undefined {
  if (typeof raw === 'number') return Number.isFinite(raw) && raw >= 0 ? raw : undefined;
  if (typeof raw !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)?\s*$/.exec(raw);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']!);
}

/**
 * Parses a byte size: `1000` (bytes), `512kB`, `20MB`, `50GB`, `1TB`, or binary `64KiB`, `1GiB`; units
 * are case-insensitive. Returns whole bytes, or `undefined` when the text is not a size.
 *
 * @example
 * parseSize('20MB') // 20_000_000
 * parseSize('1KiB') // 1024
 * parseSize('lots') // undefined
 */
export function parseSize(raw: unknown): number | undefined {
  if (typeof raw === 'number') return Number.isFinite(raw) && raw >= 0 ? Math.round(raw) : undefined;
  if (typeof raw !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|tb|tib)?\s*$/i.exec(raw);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * SIZE_UNITS[(m[2] ?? 'b').toLowerCase()]!);
}

/**
 * Parses a fraction written as a percentage (`10%`, `12.5%`) or as a number: a number above 1 is read
 * as percent (`10` is 10%), one up to 1 as the fraction itself (`0.1`). Returns `undefined` when the
 * text is neither.
 *
 * @example
 * parseFraction('10%') // 0.1
 * parseFraction('0.25') // 0.25
 */
export function parseFraction(raw: unknown): number | undefined {
  if (typeof raw !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%)?\s*$/.exec(raw);
  if (!m) return undefined;
  const n = Number(m[1]);
  return n / (m[2] || n > 1 ? 100 : 1);
}
