/** How a crash matrix's points depend on the server's major, for {@link crashPointsOfRun}. */
export interface CrashSampleOptions {
  /**
   * The points meet server behaviour that differs between majors (logical replication: slots, walsenders,
   * subscription workers), so the newest major's run (`even`) walks every point rather than half of them.
   * Default false: the points exercise shardctl's own journal and plain SQL, the same on every major.
   */
  serverSpecific?: boolean;
}

/**
 * The crash points a crash matrix walks in this run: every one, unless the run asks for a half with
 * `SHARDCTL_TEST_CRASH_POINTS`: `even` (positions 0, 2, 4 ...) or `odd` (1, 3, 5 ...; `half` is the same).
 * `npm test` (scripts/test-matrix.mjs) sets `even` on the newest major's run and `odd` on the oldest's, so
 * that each run of the matrix walks every point once across the two, and fits CI's time. A matrix whose
 * points are {@link CrashSampleOptions.serverSpecific} walks every point under `even` (and the odd ones
 * under `odd`). Run alone, a crash test walks every point whatever the major.
 *
 * Matrices that alternate resume and abort by position keep alternating within each half: a point's
 * resume and abort both sit at positions of one parity when the list walks each point twice.
 *
 * @example
 * for (const [i, point] of crashPointsOfRun(POINTS).entries()) { ... }
 */
export function crashPointsOfRun<T>(points: readonly T[], options: CrashSampleOptions = {}): T[] {
  const sample = process.env.SHARDCTL_TEST_CRASH_POINTS;
  if (sample === undefined || sample === '' || sample === 'all') return [...points];
  if (sample === 'even') return options.serverSpecific ? [...points] : points.filter((_, i) => i % 2 === 0);
  if (sample === 'odd' || sample === 'half') return points.filter((_, i) => i % 2 === 1);
  throw new Error(`SHARDCTL_TEST_CRASH_POINTS takes all, even, odd or half, got "${sample}"`);
}
