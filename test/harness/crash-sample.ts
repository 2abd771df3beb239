/**
 * The crash points a crash matrix walks in this run: every one, unless the run asks for half of them
 * with `SHARDCTL_TEST_CRASH_POINTS=half`. `npm test` (scripts/test-matrix.mjs) sets it on the oldest
 * major's run, so that the matrix fits CI's time: every point runs on the newest major, and every other
 * point (the odd positions, with resume and abort still alternating) on the oldest. Run alone, a crash
 * test walks every point whatever the major.
 *
 * @example
 * for (const [i, point] of crashPointsOfRun(POINTS).entries()) { ... }
 */
export function crashPointsOfRun<T>(points: readonly T[]): T[] {
  const sample = process.env.SHARDCTL_TEST_CRASH_POINTS;
  if (sample === undefined || sample === '' || sample === 'all') return [...points];
  if (sample !== 'half') throw new Error(`SHARDCTL_TEST_CRASH_POINTS takes all or half, got "${sample}"`);
  return points.filter((_, i) => i % 2 === 1);
}
