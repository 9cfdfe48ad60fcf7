import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
    // One test file at a time: KVM tests measure deadlines to the millisecond, and
    // the engine's vCPU threads poll; parallel files on a 2-CPU host would skew both.
    fileParallelism: false,
  },
});
