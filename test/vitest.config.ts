import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: new URL('..', import.meta.url).pathname,
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // End-to-end and fault tests start several processes each; two cores run them one file at a time.
    fileParallelism: false,
    reporters: ['default'],
  },
});
