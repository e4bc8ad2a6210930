import { defineConfig } from 'vitest/config';

// Two projects. Unit tests run first, in parallel. Integration tests run after them, one file at
// a time, because they share one Docker engine and one machine. Only the integration project has
// the global setup, so `vitest run test/unit` works without Docker or Caddy.
export default defineConfig({
  test: {
    // Under CI, a JSON report next to the console output lets .ci/run print a summary line.
    reporters: process.env.CI ? ['default', 'json'] : ['default'],
    outputFile: { json: 'test/.tmp/vitest-report.json' },
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
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/support/global-setup.ts'],
          fileParallelism: false,
          maxWorkers: 1,
          // Per test and per hook: a cold start, an image build or a drain can take tens of seconds.
          testTimeout: 120_000,
          hookTimeout: 120_000,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
