import { type AttentionShape, isAttnkitError } from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { createWebGpuBackend } from '../src/index.js';
import { expectMatchesReference, inputsFor } from './helpers.js';

describe('Node: acquiring Dawn', () => {
  it('the test environment has a WebGPU adapter (a missing one fails, it is not skipped)', async () => {
    const backend = createWebGpuBackend();
    await backend.init();
    expect(backend.capabilities.engine).toContain('Dawn');
    await backend.dispose();
  });

  it('a missing adapter is "unavailable" and says how to fix it', async () => {
    const backend = createWebGpuBackend({
      nodeWebgpuModule: { create: () => ({ requestAdapter: async () => null }) as unknown as GPU },
    });
    const error = await backend.init().catch((e: unknown) => e);
    expect(isAttnkitError(error) && error.code).toBe('unavailable');
    expect(String((error as Error).message)).toContain(
      'VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json',
    );
    await backend.dispose();
  });

  it('a missing webgpu package is "unavailable" and names it', async () => {
    const backend = createWebGpuBackend({
      nodeWebgpuModule: () => Promise.reject(new Error('Cannot find package')),
    });
    const error = await backend.init().catch((e: unknown) => e);
    expect(isAttnkitError(error) && error.code).toBe('unavailable');
    expect(String((error as Error).message)).toContain('npm install webgpu@0.6.2');
    await backend.dispose();
  });

  // Node only: the folding code is the same in the browser, where SwiftShader's per-workgroup cost
  // makes 65 600 workgroups take most of a minute.
  it('more workgroups than one dispatch dimension allows are folded into two', async () => {
    const backend = createWebGpuBackend({ workgroupSize: 4 });
    // 65 600 (batch, head, tile) workgroups: above maxComputeWorkgroupsPerDimension (65 535).
    const shape: AttentionShape = {
      batch: 2,
      queryHeads: 32_800,
      kvHeads: 8,
      queryLength: 1,
      keyLength: 3,
      headDim: 2,
    };
    await expectMatchesReference(backend, inputsFor(shape, 61), { returnLse: true });
    await backend.dispose();
  });
});
