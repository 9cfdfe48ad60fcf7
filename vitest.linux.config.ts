import { defineConfig } from 'vitest/config';

// `npm run test:linux`: the Debian Linux boot test (test/linux/boot.linux-test.ts),
// kept out of `npm test` until it has passed on a host with /dev/kvm.
export default defineConfig({
  test: {
    include: ['test/**/*.linux-test.ts'],
    testTimeout: 300_000,
    hookTimeout: 120_000,
    reporters: ['default'],
    fileParallelism: false,
  },
});
