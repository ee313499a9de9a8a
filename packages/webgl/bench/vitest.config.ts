import { defineConfig } from 'vitest/config';
import { chromium } from '../vitest.config.js';

/** `pnpm bench`: timings of @attnkit/webgl next to @attnkit/cpu in headless Chromium. Logs, never asserts speed. */
export default defineConfig({
  optimizeDeps: { include: ['gpu.js'] },
  test: {
    name: 'bench',
    root: `${import.meta.dirname}/..`,
    include: ['bench/**/*.bench.browser.ts'],
    testTimeout: 900_000,
    browser: chromium,
  },
});
