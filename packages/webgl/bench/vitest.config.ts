import { defineConfig } from 'vitest/config';
import { chromium } from '../vitest.config.js';

/** `pnpm bench`: timings of @attnkit/webgl next to @attnkit/cpu in headless Chromium. Logs, never asserts speed. */
export default defineConfig({
  optimizeDeps: { include: ['gpu.js'] },
  // ATTNKIT_WEBGL_OPTIONS='{"tileKeys":512}' pnpm bench: try backend options without editing code.
  define: { __WEBGL_OPTIONS__: JSON.stringify(process.env.ATTNKIT_WEBGL_OPTIONS ?? '{}') },
  test: {
    name: 'bench',
    root: `${import.meta.dirname}/..`,
    include: ['bench/**/*.bench.browser.ts'],
    testTimeout: 900_000,
    browser: chromium,
  },
});
