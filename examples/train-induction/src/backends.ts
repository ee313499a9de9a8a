import { existsSync } from 'node:fs';
import type { AttentionBackend } from '@attnkit/spec';

export const BACKENDS = ['cpu', 'wasm', 'webgpu', 'reference'] as const;
export type BackendName = (typeof BACKENDS)[number];

export function isBackendName(name: string): name is BackendName {
  return (BACKENDS as readonly string[]).includes(name);
}

/**
 * Creates and initialises the named backend in Node, and checks that it can train: it must list the
 * `backward` feature. Throws an Error with a message for the user otherwise.
 */
export async function openBackend(name: BackendName, threads = 1): Promise<AttentionBackend> {
  let backend: AttentionBackend;
  switch (name) {
    case 'cpu':
      backend = (await import('@attnkit/cpu')).createCpuBackend();
      break;
    case 'wasm':
      backend = (await import('@attnkit/wasm')).createWasmBackend({ threads });
      break;
    case 'webgpu': {
      // Dawn finds its Vulkan driver through this variable; on a machine without a GPU, Debian's
      // chromium package ships SwiftShader (see docs/ and the webgpu README).
      const swiftshader = '/usr/lib/chromium/vk_swiftshader_icd.json';
      if (process.env.VK_ICD_FILENAMES === undefined && existsSync(swiftshader)) {
        process.env.VK_ICD_FILENAMES = swiftshader;
      }
      backend = (await import('@attnkit/webgpu')).createWebGpuBackend();
      break;
    }
    case 'reference':
      backend = (await import('@attnkit/spec')).createReferenceBackend();
      break;
  }
  await backend.init();
  if (!backend.capabilities.features.includes('backward')) {
    const engine = backend.capabilities.engine;
    await backend.dispose();
    throw new Error(
      `backend "${name}" (${engine}) has no backward pass yet: its capabilities do not list 'backward'. ` +
        `--backend cpu and --backend reference train everywhere.`,
    );
  }
  return backend;
}
