import { defineConfig } from 'vitest/config';

// The webgpu examples run on Dawn, which needs a Vulkan driver (SwiftShader from Debian's chromium)
// found through variables that must be set before the test processes start: set them here.
const swiftshaderDir = '/usr/lib/chromium';
process.env.VK_ICD_FILENAMES ??= `${swiftshaderDir}/vk_swiftshader_icd.json`;
if (!(process.env.LD_LIBRARY_PATH ?? '').split(':').includes(swiftshaderDir)) {
  process.env.LD_LIBRARY_PATH = [process.env.LD_LIBRARY_PATH, swiftshaderDir].filter(Boolean).join(':');
}

export default defineConfig({
  test: { include: ['test/**/*.test.ts'], environment: 'node', pool: 'forks', testTimeout: 300_000 },
});
