import { describe, expect, it } from 'vitest';
import { parseDuration } from '../../src/index.js';
import { parseFraction, parseSize } from '../../src/internal.js';
import { main } from '../../src/cli/main.js';
import { durationArg, percentArg, sizeArg, wholeNumberArg } from '../../src/cli/options.js';

/** Runs the CLI in-process and collects what it wrote. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const sink = (write: (s: string) => void) => ({ write: (s: string) => (write(s), true) }) as never;
  const code = await main(['node', 'shardctl', ...args], {
    stdout: sink((s) => (stdout += s)),
    stderr: sink((s) => (stderr += s)),
    env: {},
  });
  return { code, stdout, stderr };
}

describe('one duration and size grammar for the map and the command line', () => {
  it('reads durations as whole milliseconds', () => {
    expect(parseDuration('5s')).toBe(5000);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('40')).toBe(40);
    expect(parseDuration(' 2min ')).toBe(120_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration(0)).toBe(0);
    expect(parseDuration('soon')).toBeUndefined();
    expect(parseDuration('-1s')).toBeUndefined();
    expect(parseDuration(-5)).toBeUndefined();
  });

  it('reads sizes in decimal and binary units, any case', () => {
    expect(parseSize('1000')).toBe(1000);
    expect(parseSize('512kB')).toBe(512_000);
    expect(parseSize('20MB')).toBe(20_000_000);
    expect(parseSize('50gb')).toBe(50e9);
    expect(parseSize('1KiB')).toBe(1024);
    expect(parseSize('1.5GiB')).toBe(1.5 * 1024 ** 3);
    expect(parseSize('lots')).toBeUndefined();
  });

  it('reads percentages as fractions', () => {
    expect(parseFraction('10%')).toBeCloseTo(0.1);
    expect(parseFraction('12.5%')).toBeCloseTo(0.125);
    expect(parseFraction('10')).toBeCloseTo(0.1);
    expect(parseFraction('0.25')).toBeCloseTo(0.25);
    expect(parseFraction('ten')).toBeUndefined();
  });

  it('names the flag in command-line errors', () => {
    expect(durationArg('2s', '--max-pause')).toBe(2000);
    expect(() => durationArg('soon', '--max-pause')).toThrow(/--max-pause needs a duration such as 500ms or 2s/);
    expect(() => durationArg('0', '--max-pause')).toThrow(/--max-pause must be at least 1ms/);
    expect(durationArg('0', '--timeout', { minMs: 0 })).toBe(0);
    expect(sizeArg('20MB', '--max-rate')).toBe(20_000_000);
    expect(() => sizeArg('fast', '--max-rate')).toThrow(/--max-rate must be a size such as 500MB/);
    expect(percentArg('10%', '--threshold')).toBeCloseTo(0.1);
    expect(() => percentArg('100%', '--threshold')).toThrow(/between 0% and 100%/);
    expect(wholeNumberArg('4', '--parallel')).toBe(4);
    expect(() => wholeNumberArg('4.5', '--parallel')).toThrow(/--parallel must be a whole number, got "4.5"/);
  });

  it('rejects a bad option value before running anything, with the usage exit code', async () => {
    for (const [args, message] of [
      [['--timeout', 'soon', 'shards'], /--timeout needs a duration/],
      [['rebalance', '--max-pause', 'soon'], /--max-pause needs a duration/],
      [['rebalance', '--plan', '--threshold', 'most'], /--threshold must be a percentage/],
      [['rebalance', '--plan', '--max-bytes', 'lots'], /--max-bytes must be a size/],
      [['migrate', '--lock-timeout', 'never'], /--lock-timeout needs a duration/],
      [['query', '--max-rows', 'many', 'SELECT 1'], /--max-rows must be a whole number/],
    ] as const) {
      const r = await cli([...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    const json = await cli(['--json', 'rebalance', '--max-pause', 'soon']);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: false,
      error: 'USAGE',
      message: expect.stringMatching(/--max-pause needs a duration such as 500ms or 2s, got "soon"/),
    });
  });
});
