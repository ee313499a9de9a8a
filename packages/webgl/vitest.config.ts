import { playwright } from '@vitest/browser-playwright';
import { defineConfig } from 'vitest/config';
import { chromiumFlags, chromiumPath } from '../../scripts/chromium.mjs';

/**
 * Headless Chromium from the system (never a Playwright download). ANGLE on SwiftShader gives WebGL2
 * with float render targets on machines without a GPU; on a machine with one, drop the ANGLE flag.
 */
export const chromium = {
  enabled: true,
  headless: true,
  screenshotFailures: false,
  provider: playwright({
    launchOptions: {
      executablePath: chromiumPath,
      args: [...chromiumFlags, '--use-angle=swiftshader', '--enable-unsafe-swiftshader'],
    },
  }),
  instances: [{ browser: 'chromium' as const }],
};

export default defineConfig({
  optimizeDeps: { include: ['gpu.js'] },
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'browser',
          include: ['test/**/*.browser.test.ts'],
          testTimeout: 600_000,
          hookTimeout: 120_000,
          browser: chromium,
        },
      },
      {
        test: { name: 'node', include: ['test/**/*.node.test.ts'], environment: 'node' },
      },
    ],
  },
});
