import {
  type AttentionOptions,
  type AttentionShape,
  isAttnkitError,
  resolveOptions,
  resolveShape,
} from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { createWebGpuBackend, KERNEL_TIERS, type KernelTier } from '../src/index.js';
import { forwardVariant, planAttention } from '../src/planning.js';
import type { DeviceState } from '../src/state.js';
import { availableTiers, resolveTier } from '../src/tier.js';
import { expectMatchesReference, inputsFor, ownDevice } from './helpers.js';

/** The fields of a device state that the forward's kernel choice reads. */
function stateWith(workgroupBytes: number, tier: KernelTier, subgroupMax = 4): DeviceState {
  return {
    limits: { workgroupFloats: workgroupBytes / 4, invocations: 256 },
    tier,
    subgroupSizes: tier === 'subgroups' ? { min: 4, max: subgroupMax } : null,
  } as DeviceState;
}

const shape = (headDim: number, queryLength = 64) =>
  ({
    batch: 1,
    queryHeads: 1,
    kvHeads: 1,
    queryLength,
    keyLength: queryLength,
    headDim,
    valueDim: headDim,
  }) as const;

describe('tier resolution (no device)', () => {
  it('offers subgroups only with the feature and known subgroup sizes of at least 4', () => {
    expect(availableTiers({ subgroupsFeature: false, sizes: null })).toEqual(['baseline']);
    expect(availableTiers({ subgroupsFeature: true, sizes: null })).toEqual(['baseline']);
    expect(availableTiers({ subgroupsFeature: true, sizes: { min: 2, max: 8 } })).toEqual(['baseline']);
    expect(availableTiers({ subgroupsFeature: true, sizes: { min: 4, max: 32 } })).toEqual([
      'baseline',
      'subgroups',
    ]);
  });

  it('picks the best tier unless one is asked for, and rejects one the device lacks', () => {
    const both = { subgroupsFeature: true, sizes: { min: 4, max: 4 } };
    expect(resolveTier(undefined, both)).toBe('subgroups');
    expect(resolveTier('baseline', both)).toBe('baseline');
    expect(resolveTier(undefined, { subgroupsFeature: false, sizes: null })).toBe('baseline');
    expect(() => resolveTier('subgroups', { subgroupsFeature: false, sizes: null })).toThrow(
      expect.objectContaining({
        code: 'unsupported',
        argument: 'options.tier',
        expected: 'one of baseline',
        actual: 'subgroups',
      }),
    );
  });

  it('rejects an unknown tier when the backend is created', () => {
    expect(() => createWebGpuBackend({ tier: 'f16' as never })).toThrow(
      expect.objectContaining({ code: 'invalid-argument', argument: 'options.tier' }),
    );
  });
});

describe("the forward's kernel choice (no device)", () => {
  it('runs the tiled kernel where it fits, with subgroup reductions only in the subgroups tier', () => {
    expect(forwardVariant(stateWith(32768, 'subgroups'), undefined, shape(64)).tiled).toEqual({
      headDim: 64,
      valueDim: 64,
      rq: 2,
      g: 4,
      bk: 32,
      wg: 64,
      reduce: 'subgroup',
      logitTerms: 'all',
    });
    expect(forwardVariant(stateWith(32768, 'baseline'), undefined, shape(64)).tiled?.reduce).toBe(
      'workgroup',
    );
    // 16 KiB (WebGPU's default limit): smaller blocks.
    expect(forwardVariant(stateWith(16384, 'subgroups'), undefined, shape(64)).tiled).toMatchObject({
      rq: 1,
      g: 4,
      bk: 16,
    });
  });

  it('reduces through workgroup memory where subgroups would not fill the workgroup', () => {
    // 64 invocations cannot be whole subgroups of 128; 6 invocations are not a multiple of 4.
    expect(forwardVariant(stateWith(32768, 'subgroups', 128), undefined, shape(64)).tiled?.reduce).toBe(
      'workgroup',
    );
    expect(forwardVariant(stateWith(32768, 'subgroups'), 6, shape(64)).tiled).toMatchObject({ g: 1, wg: 6 });
  });

  it('compiles the logit terms out of the tiled kernel only for calls that use none of them', () => {
    const state = stateWith(32768, 'subgroups');
    const resolved = resolveShape(shape(64));
    const termsOf = (options: AttentionOptions) =>
      planAttention(state, undefined, resolved, resolveOptions(options, resolved), 'bhld', 'attention')
        .variant.tiled?.logitTerms;
    expect(termsOf({})).toBe('dot');
    expect(termsOf({ causal: true, slidingWindow: 8, keyMask: new Uint8Array(64).fill(1) })).toBe('dot');
    expect(termsOf({ sinks: new Float32Array([1]), returnLse: true })).toBe('dot');
    expect(termsOf({ softcap: 30 })).toBe('all');
    expect(termsOf({ alibiSlopes: new Float32Array([0.5]) })).toBe('all');
    expect(termsOf({ bias: { data: new Float32Array(64 * 64), shape: [1, 1, 64, 64] } })).toBe('all');
  });

  it('keeps a value head narrower than its row group in the tiled kernel (rows padded to the lanes)', () => {
    const narrow = { ...shape(8), valueDim: 5 };
    expect(forwardVariant(stateWith(32768, 'subgroups'), undefined, narrow).tiled).toMatchObject({
      valueDim: 8,
      g: 4,
    });
  });

  it('runs the scalar kernel (explicitly: tiled null) for queries of fewer than 16 rows', () => {
    expect(forwardVariant(stateWith(32768, 'subgroups'), undefined, shape(64, 15)).tiled).toBeNull();
    expect(forwardVariant(stateWith(32768, 'subgroups'), undefined, shape(64, 16)).tiled).not.toBeNull();
  });

  it('falls back to the scalar kernel (explicitly: tiled null) for heads too large for any tile', () => {
    expect(forwardVariant(stateWith(32768, 'subgroups'), undefined, shape(256)).tiled).toBeNull();
    expect(forwardVariant(stateWith(32768, 'subgroups'), undefined, shape(256)).bq).toBeGreaterThan(0);
  });
});

const probe = createWebGpuBackend();
await probe.init();
const tiers = KERNEL_TIERS.slice(0, KERNEL_TIERS.indexOf(probe.tier) + 1);
await probe.dispose();

describe('tiers on this adapter', () => {
  it('a default backend reports the tier it picked in engine, notes and tier', async () => {
    const backend = createWebGpuBackend();
    await backend.init();
    const caps = backend.capabilities;
    expect(KERNEL_TIERS).toContain(backend.tier);
    expect(caps.engine).toMatch(new RegExp(`^WebGPU \\(WGSL\\) on .*, ${backend.tier} tier$`));
    expect(caps.notes.some((n) => n.startsWith(`kernel tier: ${backend.tier}`))).toBe(true);
    await backend.dispose();
  });

  it('forcing subgroups on a device without the feature rejects init with unsupported', async () => {
    const device = await ownDevice();
    expect(device.features.has('subgroups')).toBe(false);
    const backend = createWebGpuBackend({ device, tier: 'subgroups' });
    const error: unknown = await backend.init().then(
      () => null,
      (e: unknown) => e,
    );
    expect(isAttnkitError(error) && error.code).toBe('unsupported');
    expect(error).toMatchObject({ argument: 'options.tier', actual: 'subgroups' });
    await backend.dispose();
    device.destroy();
  });

  // Both kernels and both reductions, on every tier this adapter runs: multi-tile causal GQA with
  // every option (the conformance suite covers the rest), a large head (scalar kernel), and a
  // workgroup size that makes subgroup reductions impossible.
  const options: AttentionOptions = {
    causal: true,
    slidingWindow: 70,
    softcap: 3,
    sinks: new Float32Array([0.5, -1, 2, 0]),
    alibiSlopes: new Float32Array([0.01, 0.02, 0.03, 0.04]),
    returnLse: true,
    returnWeights: true,
  };
  const gqa: AttentionShape = {
    batch: 2,
    queryHeads: 4,
    kvHeads: 2,
    queryLength: 77,
    keyLength: 101,
    headDim: 13,
    valueDim: 18,
  };
  for (const tier of tiers) {
    it(`${tier}: tiled kernel, multi-tile causal GQA with options`, async () => {
      const backend = createWebGpuBackend({ tier });
      await expectMatchesReference(backend, inputsFor(gqa, 3), options);
      expect(backend.tier).toBe(tier);
      await backend.dispose();
    });

    it(`${tier}: tiled kernel with 6 invocations per workgroup (one lane per row)`, async () => {
      const backend = createWebGpuBackend({ tier, workgroupSize: 6 });
      await expectMatchesReference(backend, inputsFor(gqa, 4), options);
      await backend.dispose();
    });

    it(`${tier}: tiled kernel with a value head narrower than its row group's columns`, async () => {
      // Dv 5 is an 8-wide bucket: 2 vec4s for 4 lanes, so two lanes accumulate columns past the
      // value's, which must never be stored. A masked key holds an infinite value: its zero weight
      // must not reach any column.
      const narrow: AttentionShape = {
        batch: 1,
        queryHeads: 2,
        queryLength: 40,
        keyLength: 37,
        headDim: 8,
        valueDim: 5,
      };
      const inputs = inputsFor(narrow, 6);
      const keyMask = new Uint8Array(37).fill(1);
      keyMask[3] = 0;
      for (const head of [0, 1])
        inputs.v.fill(Number.POSITIVE_INFINITY, (head * 37 + 3) * 5, (head * 37 + 4) * 5);
      const backend = createWebGpuBackend({ tier });
      const ref = await expectMatchesReference(backend, inputs, { causal: true, keyMask, returnLse: true });
      expect(ref.output.every(Number.isFinite)).toBe(true);
      await backend.dispose();
    });

    it(`${tier}: the tiled kernel without logit terms gives the bits of the one with them, at zero terms`, async () => {
      // No bias runs the 'dot' variant; an all-zero bias and zero ALiBi slopes run 'all', whose
      // terms then add exact zeros: the outputs and lse must agree bit for bit.
      const plain: AttentionShape = { batch: 1, queryHeads: 2, queryLength: 48, keyLength: 50, headDim: 16 };
      const inputs = inputsFor(plain, 7);
      const backend = createWebGpuBackend({ tier });
      const base: AttentionOptions = { causal: true, returnLse: true };
      await expectMatchesReference(backend, inputs, base);
      const dot = await backend.attention(inputs, base);
      const all = await backend.attention(inputs, {
        ...base,
        bias: { data: new Float32Array(48 * 50), shape: [1, 1, 48, 50] },
        alibiSlopes: new Float32Array(2),
      });
      expect(all.output).toEqual(dot.output);
      expect(all.lse).toEqual(dot.lse);
      await backend.dispose();
    });

    it(`${tier}: whole key tiles (no per-key checks) agree with the reference, non-finite logits included`, async () => {
      // Lq 96 and Lk 128 (causal offset 32): with 32-row workgroups and 32-key tiles most tiles are
      // seen whole by every row, the path that skips the per-key checks; the diagonal tiles and
      // the tail rows take the general one. Query row 50 of head 0 holds a NaN (its row is NaN);
      // key 70 of head 1 is -inf in its first dimension, so its logit is -inf (zero weight) for
      // the rows whose first q value is positive and +inf (a NaN row) for the others. Both sit in
      // tiles that every row of their workgroup sees whole.
      const whole: AttentionShape = { batch: 1, queryHeads: 2, queryLength: 96, keyLength: 128, headDim: 16 };
      const inputs = inputsFor(whole, 8);
      inputs.q[50 * 16] = Number.NaN;
      inputs.k[(128 + 70) * 16] = Number.NEGATIVE_INFINITY;
      for (const workgroupSize of [undefined, 6]) {
        const backend = createWebGpuBackend({ tier, workgroupSize });
        for (const causal of [true, false]) {
          const ref = await expectMatchesReference(backend, inputs, { causal, returnLse: true });
          // The cases are real: a NaN row, a row with a -inf logit that stays finite, another that is NaN.
          expect(Number.isNaN(ref.output[50 * 16])).toBe(true);
          const rowsOfHead1 = Array.from({ length: 96 }, (_, i) => 96 + i).filter((row) =>
            causal ? row - 96 + 32 >= 70 : true,
          );
          const qFirst = (row: number) => inputs.q[row * 16] ?? 0;
          expect(rowsOfHead1.some((row) => qFirst(row) > 0 && Number.isFinite(ref.output[row * 16]))).toBe(
            true,
          );
          expect(rowsOfHead1.some((row) => qFirst(row) < 0 && Number.isNaN(ref.output[row * 16]))).toBe(true);
        }
        await backend.dispose();
      }
    });

    it(`${tier}: scalar kernel for a 256-wide head`, async () => {
      const backend = createWebGpuBackend({ tier });
      const big: AttentionShape = { batch: 1, queryHeads: 2, queryLength: 40, keyLength: 45, headDim: 256 };
      await expectMatchesReference(backend, inputsFor(big, 5), { causal: true, returnLse: true });
      await backend.dispose();
    });
  }
});
