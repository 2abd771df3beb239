import { defineConfig } from 'vitest/config';
import { SlowFirstSequencer } from './test/harness/sequencer.js';

export default defineConfig({
  test: {
    // Within each project the slowest integration files start first (test/harness/sequencer.ts).
    sequence: { sequencer: SlowFirstSequencer },
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', 'test/e2e/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/harness/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          pool: 'forks',
          // Two cores: more workers only make the PostgreSQL servers compete for CPU.
          maxWorkers: 2,
          // Unit tests first: they fail fast and cheaply.
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
