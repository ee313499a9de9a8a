import {
  type AttentionOptions,
  type AttentionShape,
  referenceAttentionBackward64,
  referenceAttentionProblem64,
  validateAttention,
} from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { CPU_TOLERANCE, createCpuBackend } from '../src/index.js';

function random(seed: number) {
  let state = seed >>> 0;
  return (length: number, spread = 1) =>
    Float32Array.from({ length }, () => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return (state / 2 ** 32 - 0.5) * 2 * spread;
    });
}

function worstRatio(got: Float32Array, ref: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const bound = CPU_TOLERANCE.atol + CPU_TOLERANCE.rtol * Math.abs(ref[i]);
    worst = Math.max(worst, Math.abs(got[i] - ref[i]) / bound);
  }
  return worst;
}

async function check(shape: AttentionShape, options: AttentionOptions, spread = 1) {
  const draw = random(11);
  const Hkv = shape.kvHeads ?? shape.queryHeads;
  const Lk = shape.keyLength ?? shape.queryLength;
  const Dv = shape.valueDim ?? shape.headDim;
  const inputs = {
    q: draw(shape.batch * shape.queryHeads * shape.queryLength * shape.headDim, spread),
    k: draw(shape.batch * Hkv * Lk * shape.headDim, spread),
    v: draw(shape.batch * Hkv * Lk * Dv),
    shape,
  };
  const gradOutput = draw(shape.batch * shape.queryHeads * shape.queryLength * Dv);
  const backend = createCpuBackend();
  const forward = await backend.attention(inputs, { ...options, returnLse: true });
  const grads = await backend.attentionBackward(
    { ...inputs, output: forward.output, lse: forward.lse, gradOutput },
    options,
  );
  const exact = referenceAttentionBackward64(
    { ...inputs, output: forward.output, lse: forward.lse, gradOutput },
    options,
  );
  await backend.dispose();
  return { grads, exact, lse: forward.lse };
}

describe('cpu attentionBackward against the float64 reference gradient', () => {
  it('every option at once, GQA, cross, Dv != D, within the declared atol/rtol (fudge 0)', async () => {
    const shape = {
      batch: 2,
      queryHeads: 4,
      kvHeads: 2,
      queryLength: 9,
      keyLength: 17,
      headDim: 8,
      valueDim: 5,
    };
    const { grads, exact } = await check(shape, {
      causal: true,
      slidingWindow: 12,
      keyMask: Uint8Array.from({ length: 34 }, (_, j) => (j % 7 === 3 ? 0 : 1)),
      bias: { data: random(3)(4 * 17), shape: [1, 4, 1, 17] },
      alibiSlopes: new Float32Array([0.1, 0.2, 0.3, 0.4]),
      softcap: 3,
      sinks: new Float32Array([0.5, -0.5, 1, 0]),
    });
    for (const name of ['gradQ', 'gradK', 'gradV', 'gradBias', 'gradSinks'] as const) {
      expect(worstRatio(grads[name] as Float32Array, exact[name] as Float64Array), name).toBeLessThan(1);
    }
  });

  it('logits near 500: recomputing the statistics in float64 keeps fudge 0 honest', async () => {
    // |lse| ~ 500 means the float32 lse alone is off by up to 500 * 2^-24 = 3e-5: a backward that
    // trusted it would miss rtol 1e-5 on P. The cpu recomputes lse in float64 and stays within it.
    const shape = { batch: 1, queryHeads: 1, queryLength: 16, headDim: 16 };
    const { grads, exact, lse } = await check(shape, { scale: 8 }, 2.5);
    expect(Math.max(...Array.from(lse, Math.abs))).toBeGreaterThan(100);
    for (const name of ['gradQ', 'gradK', 'gradV'] as const) {
      expect(worstRatio(grads[name], exact[name]), name).toBeLessThan(1);
    }
  });

  it('fully masked rows: zero gradients, no NaN', async () => {
    const shape = { batch: 1, queryHeads: 2, queryLength: 6, keyLength: 3, headDim: 4 };
    const { grads } = await check(shape, { causal: true });
    // queries 0..2 sit at positions -3..-1: nothing visible
    for (let h = 0; h < 2; h++)
      for (let i = 0; i < 3; i++)
        for (let d = 0; d < 4; d++) expect(grads.gradQ[(h * 6 + i) * 4 + d]).toBe(0);
    for (const value of [...grads.gradQ, ...grads.gradK, ...grads.gradV])
      expect(Number.isNaN(value)).toBe(false);
  });

  it('ignores a wrong float32 lse/output it is handed (it recomputes them), unlike a fused kernel', async () => {
    const draw = random(5);
    const shape = { batch: 1, queryHeads: 1, queryLength: 4, headDim: 4 };
    const inputs = { q: draw(16), k: draw(16), v: draw(16), shape };
    const gradOutput = draw(16);
    const forward = referenceAttentionProblem64({ ...validateAttention(inputs), returnLse: true });
    const backend = createCpuBackend();
    const good = await backend.attentionBackward({
      ...inputs,
      output: Float32Array.from(forward.output),
      lse: Float32Array.from(forward.lse as Float64Array),
      gradOutput,
    });
    const shifted = await backend.attentionBackward({
      ...inputs,
      output: new Float32Array(16),
      lse: new Float32Array(4).fill(3),
      gradOutput,
    });
    expect(shifted.gradQ).toEqual(good.gradQ);
    await backend.dispose();
  });
});
