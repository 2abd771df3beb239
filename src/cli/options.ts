import { InvalidArgumentError } from 'commander';
import { ExitCode, ShardctlError, parseDuration } from '../index.js';
import { parseFraction, parseSize } from '../internal.js';

/** A usage error (exit code 2): the command line is wrong, nothing was done. */
export function usage(message: string): ShardctlError {
  return new ShardctlError(message, { code: 'USAGE', exitCode: ExitCode.Usage });
}

/** Options of {@link durationArg}. */
export interface DurationArgOptions {
  /** Smallest accepted value, in ms. Default 1. */
  minMs?: number;
}

/**
 * A duration given on the command line, in ms, with the map's grammar (`500ms`, `2s`, `1.5s`, `2min`,
 * plain milliseconds). Throws a usage error naming the flag.
 *
 * @example
 * durationArg('250ms', '--max-pause') // 250
 */
export function durationArg(raw: string, flag: string, options: DurationArgOptions = {}): number {
  const ms = parseDuration(raw);
  if (ms === undefined) throw usage(`${flag} needs a duration such as 500ms or 2s, got "${raw}"`);
  const min = options.minMs ?? 1;
  if (ms < min) throw usage(`${flag} must be at least ${min}ms, got "${raw}"`);
  return ms;
}

/**
 * A whole number given on the command line. Throws a usage error naming the flag.
 *
 * @example
 * wholeNumberArg('4', '--parallel') // 4
 */
export function wholeNumberArg(raw: string, flag: string): number {
  if (!/^\d+$/.test(raw.trim())) throw usage(`${flag} must be a whole number, got "${raw}"`);
  return Number(raw);
}

/**
 * A byte size given on the command line (`20MB`, `1GiB`, `1000`). Throws a usage error naming the flag.
 *
 * @example
 * sizeArg('20MB', '--max-rate') // 20_000_000
 */
export function sizeArg(raw: string, flag: string): number {
  const bytes = parseSize(raw);
  if (bytes === undefined) throw usage(`${flag} must be a size such as 500MB or 20GB, got "${raw}"`);
  return bytes;
}

/**
 * A fraction strictly between 0 and 1, written as a percentage (`10%`). Throws a usage error naming the flag.
 *
 * @example
 * percentArg('10%', '--threshold') // 0.1
 */
export function percentArg(raw: string, flag: string): number {
  const v = parseFraction(raw);
  if (v === undefined) throw usage(`${flag} must be a percentage such as 10%, got "${raw}"`);
  if (v <= 0 || v >= 1) throw usage(`${flag} must be between 0% and 100%, got "${raw}"`);
  return v;
}

/**
 * Turns one of the parsers above into a commander option parser: commander then prints the error with
 * the usage hint, and the CLI exits with the usage code.
 */
function optionParser<T>(parse: (raw: string) => T): (raw: string) => T {
  return (raw) => {
    try {
      return parse(raw);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}

/**
 * Commander option parser for a duration in ms.
 *
 * @example
 * cmd.option('--max-pause <duration>', 'longest write pause', durationOption('--max-pause'), 1000);
 */
export function durationOption(flag: string, options: DurationArgOptions = {}): (raw: string) => number {
  return optionParser((raw) => durationArg(raw, flag, options));
}

/**
 * Commander option parser for a whole number.
 *
 * @example
 * cmd.option('--parallel <n>', 'moves at once', wholeNumberOption('--parallel'), 1);
 */
export function wholeNumberOption(flag: string): (raw: string) => number {
  return optionParser((raw) => wholeNumberArg(raw, flag));
}

/**
 * Commander option parser for a byte size.
 *
 * @example
 * cmd.option('--max-rate <size>', 'bytes per second', sizeOption('--max-rate'));
 */
export function sizeOption(flag: string): (raw: string) => number {
  return optionParser((raw) => sizeArg(raw, flag));
}

/**
 * Commander option parser for a percentage, as a fraction.
 *
 * @example
 * cmd.option('--threshold <pct>', 'allowed deviation', percentOption('--threshold'), 0.1);
 */
export function percentOption(flag: string): (raw: string) => number {
  return optionParser((raw) => percentArg(raw, flag));
}
