import { type AttentionShape, isAttnkitError, referenceAttention64 } from '@attnkit/spec';
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

// Node only: the WGSL is the same in the browser, and 4M keys of data cost a browser run most of a
// minute. Bounds far below the declared atol, so these guard the kernel's own arithmetic.
describe('float32 arithmetic better than naive where it is cheap', () => {
  const worstAbs = (got: Float32Array, ref: ArrayLike<number>) => {
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[i] - ref[i]));
    return worst;
  };

  it('ALiBi terms of tens, both signs, Lq > Lk: the product is added exactly (two-product)', async () => {
    // before the two-product (the product rounded before the two-sum): 1.6e-6 here
    const backend = createWebGpuBackend();
    const inputs = inputsFor({ batch: 1, queryHeads: 4, queryLength: 300, keyLength: 100, headDim: 8 }, 11);
    const options = { alibiSlopes: new Float32Array([0.3713, -0.2917, 0.0971, -0.5379]) };
    const { output } = await backend.attention(inputs, options);
    expect(worstAbs(output, referenceAttention64(inputs, options).output)).toBeLessThan(1e-6);
    await backend.dispose();
  });

  it('decode over 4M positive values: per-tile sums keep the running output within 2e-5', async () => {
    // before (every key added straight into the running sum): 1.8e-4 here
    const backend = createWebGpuBackend();
    const Lk = 4 << 20;
    const inputs = inputsFor({ batch: 1, queryHeads: 1, queryLength: 1, keyLength: Lk, headDim: 4 }, 21);
    for (let i = 0; i < inputs.v.length; i++) inputs.v[i] = 1 + inputs.v[i] / 2;
    const { output } = await backend.attention(inputs);
    expect(worstAbs(output, referenceAttention64(inputs).output)).toBeLessThan(2e-5);
    await backend.dispose();
  }, 120_000);
});
