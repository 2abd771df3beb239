import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { crashPointsOfRun } from '../harness/crash-sample.js';
import { SLOW_FILES } from '../harness/sequencer.js';

const POINTS = ['a', 'b', 'c', 'd', 'e'];
const run = (sample: string | undefined, serverSpecific = false) => {
  vi.stubEnv('SHARDCTL_TEST_CRASH_POINTS', sample);
  return crashPointsOfRun(POINTS, { serverSpecific });
};

describe('the crash points of a run', () => {
  afterEach(() => vi.unstubAllEnvs());

  it('walks every point alone, and every point once across the even and the odd run of the matrix', () => {
    expect(run(undefined)).toEqual(POINTS);
    expect(run('all')).toEqual(POINTS);
    expect(run('even')).toEqual(['a', 'c', 'e']);
    expect(run('odd')).toEqual(['b', 'd']);
    expect(run('half')).toEqual(run('odd'));
    expect([...run('even'), ...run('odd')].sort()).toEqual(POINTS);
  });

  it('walks every point of a matrix meeting per-major server code on the even run', () => {
    expect(run('even', true)).toEqual(POINTS);
    expect(run('odd', true)).toEqual(['b', 'd']);
  });

  it('refuses an unknown sample, naming the values it takes', () => {
    expect(() => run('some')).toThrow(/takes all, even, odd or half, got "some"/);
  });
});

describe('the slow files the sequencer starts first', () => {
  it('name test files that exist, once each', () => {
    const root = path.resolve(import.meta.dirname, '..');
    const missing = SLOW_FILES.filter(
      (f) => !existsSync(path.join(root, 'integration', f)) && !existsSync(path.join(root, 'e2e', f)),
    );
    expect(missing).toEqual([]);
    expect(new Set(SLOW_FILES).size).toBe(SLOW_FILES.length);
  });
});
