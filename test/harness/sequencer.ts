import path from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The integration files that run longest (about 30 s and more each on a 2-core machine, from CI's
 * per-file times), longest first. Vitest's own order on a fresh clone, with no timings cached, starts
 * large files first; these small, slow files (crash matrices above all) then started last and left one
 * worker running them alone at the end of a run. A file missing here only starts after them.
 */
export const SLOW_FILES = [
  'move-online-crash.test.ts',
  'move-online.test.ts',
  'move-group.test.ts',
  'query-differential.test.ts',
  'query-colocated.test.ts',
  'move-parallel-copy.test.ts',
  'tx-crash.test.ts',
  'query-pullup.test.ts',
  'migrate.test.ts',
  'versions-mixed.test.ts',
  'move-trigger-crash.test.ts',
  'move-crash.test.ts',
  'move.test.ts',
  'move-trigger.test.ts',
  'foundation-cli.test.ts',
  'move-cli.test.ts',
  'rebalance-apply.test.ts',
];

/**
 * Vitest's sequencer with {@link SLOW_FILES} first, in that order: with two workers, the run ends when
 * its longest files end, so they start first and the short ones fill in around them.
 *
 * @example
 * // vitest.config.ts
 * test: { sequence: { sequencer: SlowFirstSequencer } }
 */
export class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (f: TestSpecification) => {
      const i = SLOW_FILES.indexOf(path.basename(f.moduleId));
      return i < 0 ? SLOW_FILES.length : i;
    };
    const group = (f: TestSpecification) => f.project.config.sequence.groupOrder;
    // Within a project only (vitest runs projects by groupOrder); the sort is stable: the rest keep vitest's order.
    return sorted.sort((a, b) => group(a) - group(b) || (a.project.name === b.project.name ? rank(a) - rank(b) : 0));
  }
}
