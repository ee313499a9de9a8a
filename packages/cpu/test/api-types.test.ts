// Type-level tests of @attnkit/cpu's public API, checked by tsc (`pnpm typecheck` covers test/):
// the shapes a user and the conformance CLI rely on. Runtime assertions pin the value exports.
import type { AttentionBackend, BackendFactory, Tolerance } from '@attnkit/spec';
import { describe, expect, expectTypeOf, it } from 'vitest';
import createDefault, { CPU_TOLERANCE, type CpuBackendOptions, createCpuBackend } from '../src/index.js';

describe('@attnkit/cpu public API', () => {
  it('default-exports a zero-argument BackendFactory (what attnkit-conformance loads)', () => {
    expectTypeOf(createDefault).toExtend<BackendFactory>();
    expectTypeOf(createDefault).parameters.toEqualTypeOf<[]>();
    expectTypeOf(createDefault).returns.toEqualTypeOf<AttentionBackend>();
    expect(createDefault.length).toBe(0);
    expect(createDefault().name).toBe('cpu');
  });

  it('takes optional tile sizes in the named factory', () => {
    expectTypeOf(createCpuBackend).toEqualTypeOf<(options?: CpuBackendOptions) => AttentionBackend>();
    expectTypeOf<CpuBackendOptions>().toEqualTypeOf<{ queryBlock?: number; keyBlock?: number }>();
    expectTypeOf<{ keyBlock: string }>().not.toExtend<CpuBackendOptions>();
    expectTypeOf(createCpuBackend).toExtend<BackendFactory>();
  });

  it('exports only the factory, its options and its constants', async () => {
    const exports = Object.keys(await import('../src/index.js')).sort();
    expect(exports).toEqual(['CPU_TOLERANCE', 'PAGE_TOKENS', 'createCpuBackend', 'default']);
  });

  it('declares a tolerance of the spec type', () => {
    expectTypeOf(CPU_TOLERANCE).toExtend<Tolerance>();
    expect(createCpuBackend().capabilities.tolerance).toEqual(CPU_TOLERANCE);
  });

  it('types lse and weights as Float32Array when returnLse / returnWeights are true', async () => {
    const backend = createCpuBackend();
    const shape = { batch: 1, queryHeads: 1, queryLength: 2, headDim: 2 };
    const inputs = { q: new Float32Array(4), k: new Float32Array(4), v: new Float32Array(4), shape };
    const { lse, weights } = await backend.attention(inputs, {
      causal: true,
      returnLse: true,
      returnWeights: true,
    });
    expectTypeOf(lse).toEqualTypeOf<Float32Array>();
    expectTypeOf(weights).toEqualTypeOf<Float32Array>();
    expect([lse.length, weights.length]).toEqual([2, 4]);
    expectTypeOf((await backend.attention(inputs)).lse).toEqualTypeOf<Float32Array | undefined>();
    await backend.dispose();
  });
});
