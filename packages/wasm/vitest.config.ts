import { playwright } from '@vitest/browser-playwright';
import { defineConfig } from 'vitest/config';
import { chromiumFlags, chromiumPath } from '../../scripts/chromium.mjs';

/** Headless Chromium from the system (never a Playwright download). */
const chromium = (name: string) => ({
  enabled: true,
  headless: true,
  screenshotFailures: false,
  provider: playwright({
    launchOptions: {
      executablePath: chromiumPath,
      args: chromiumFlags,
    },
  }),
  instances: [{ browser: 'chromium' as const, name }],
});

/** Cross-origin isolation: what a page needs for SharedArrayBuffer, hence for wasm threads. */
const isolated = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'node',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.browser.test.ts'],
          environment: 'node',
          testTimeout: 120_000,
        },
      },
      {
        // the same conformance and thread tests in a cross-origin isolated page
        server: { headers: isolated },
        test: {
          name: 'browser',
          include: ['test/conformance.test.ts', 'test/threads.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          browser: chromium('chromium'),
        },
      },
      {
        // a page without isolation: threads must be refused with the reason, work must still be right
        test: {
          name: 'browser-not-isolated',
          include: ['test/**/*.browser.test.ts'],
          testTimeout: 120_000,
          browser: chromium('chromium-not-isolated'),
        },
      },
    ],
  },
});
