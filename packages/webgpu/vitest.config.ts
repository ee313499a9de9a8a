import { playwright } from '@vitest/browser-playwright';
import { defineConfig } from 'vitest/config';
import { chromiumFlags, chromiumPath } from '../../scripts/chromium.mjs';

// Dawn needs a Vulkan driver. Without a GPU it is SwiftShader from Debian's chromium package; the
// loader (libvulkan.so.1) is found through LD_LIBRARY_PATH, which must be set before the test worker
// processes start, so it is set here, in the main process, and inherited by the forks.
const swiftshaderDir = '/usr/lib/chromium';
process.env.VK_ICD_FILENAMES ??= `${swiftshaderDir}/vk_swiftshader_icd.json`;
if (!(process.env.LD_LIBRARY_PATH ?? '').split(':').includes(swiftshaderDir)) {
  process.env.LD_LIBRARY_PATH = [process.env.LD_LIBRARY_PATH, swiftshaderDir].filter(Boolean).join(':');
}

const timeouts = { testTimeout: 300_000, hookTimeout: 120_000 };

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'node',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.browser.test.ts'],
          environment: 'node',
          pool: 'forks',
          ...timeouts,
        },
      },
      {
        test: {
          name: 'browser',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.node.test.ts'],
          ...timeouts,
          browser: {
            enabled: true,
            headless: true,
            provider: playwright({
              launchOptions: {
                executablePath: chromiumPath,
                args: [
                  ...chromiumFlags,
                  '--enable-unsafe-webgpu',
                  '--enable-unsafe-swiftshader',
                  // Same reason as DEFAULT_DAWN_FLAGS in src/device.ts: seconds less per pipeline on SwiftShader.
                  '--disable-dawn-features=use_vulkan_zero_initialize_workgroup_memory_extension',
                ],
              },
            }),
            instances: [{ browser: 'chromium' }],
          },
        },
      },
    ],
  },
});
