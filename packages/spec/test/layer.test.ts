import { describe, expect, it } from 'vitest';
import {
  createReferenceBackend,
  mergeHeads,
  multiHeadAttention,
  referenceAttention64,
  referenceMultiHeadAttention64,
  splitHeads,
} from '../src/index.js';

function identity(n: number): Float32Array {
  const m = new Float32Array(n * n);
  for (let i = 0; i < n; i++) m[i * n + i] = 1;
  return m;
}

function seeded(length: number, seed: number): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 31 - 1;
  });
}

describe('split and merge heads', () => {
  it('are inverse transposes', () => {
    const x = Float32Array.from({ length: 2 * 3 * 4 * 5 }, (_, i) => i);
    const split = splitHeads(x, 2, 3, 4, 5);
    // element (b=1, l=2, h=3, d=4) moves to (b=1, h=3, l=2, d=4)
    expect(split[((1 * 4 + 3) * 3 + 2) * 5 + 4]).toBe(x[((1 * 3 + 2) * 4 + 3) * 5 + 4]);
    expect(Array.from(mergeHeads(split, 2, 3, 4, 5))).toEqual(Array.from(x));
  });
});

describe('multiHeadAttention', () => {
  it('with identity projections equals plain attention on the split input', async () => {
    // modelDim = Hq*D = 4 (2 heads of 2): Wq = Wk = Wv = Wo = I
    const B = 1;
    const L = 3;
    const x = seeded(B * L * 4, 7);
    const I = identity(4);
    const backend = createReferenceBackend();
    const layer = await multiHeadAttention(
      backend,
      {
        x,
        weights: { wq: I, wk: I, wv: I, wo: I },
        shape: { batch: B, queryLength: L, modelDim: 4, queryHeads: 2, headDim: 2 },
      },
      { causal: true },
    );
    const heads = splitHeads(x, B, L, 2, 2);
    const plain = referenceAttention64(
      { q: heads, k: heads, v: heads, shape: { batch: B, queryHeads: 2, queryLength: L, headDim: 2 } },
      { causal: true },
    );
    const expected = mergeHeads(plain.output, B, L, 2, 2);
    for (const [i, value] of layer.output.entries()) expect(value).toBeCloseTo(expected[i], 6);
    await backend.dispose();
  });

  it('cross-attention with GQA and biases matches the float64 layer', async () => {
    const shape = {
      batch: 2,
      queryLength: 3,
      keyLength: 5,
      modelDim: 6,
      queryHeads: 4,
      kvHeads: 2,
      headDim: 3,
      valueDim: 2,
    };
    const weights = {
      wq: seeded(6 * 12, 1),
      wk: seeded(6 * 6, 2),
      wv: seeded(6 * 4, 3),
      wo: seeded(8 * 6, 4),
      bq: seeded(12, 5),
      bk: seeded(6, 6),
      bv: seeded(4, 7),
      bo: seeded(6, 8),
    };
    const inputs = { x: seeded(2 * 3 * 6, 9), context: seeded(2 * 5 * 6, 10), weights, shape };
    const backend = createReferenceBackend();
    const got = await multiHeadAttention(backend, inputs, { returnLse: true });
    const want = referenceMultiHeadAttention64(inputs, { returnLse: true });
    expect(got.output.length).toBe(2 * 3 * 6);
    for (const [i, value] of got.output.entries())
      expect(Math.abs(value - want.output[i])).toBeLessThan(1e-5);
    expect(got.lse!.length).toBe(2 * 4 * 3);
    await backend.dispose();
  });

  it('names the bad argument before projecting anything', async () => {
    const backend = createReferenceBackend();
    const I = identity(4);
    await expect(
      multiHeadAttention(backend, {
        x: new Float32Array(12),
        weights: { wq: I, wk: I, wv: I, wo: new Float32Array(3) },
        shape: { batch: 1, queryLength: 3, modelDim: 4, queryHeads: 2, headDim: 2 },
      }),
    ).rejects.toThrow(/weights\.wo\.length must be 16/);
    await expect(
      multiHeadAttention(backend, {
        x: new Float32Array(12),
        weights: { wq: I, wk: I, wv: I, wo: I },
        shape: { batch: 1, queryLength: 3, keyLength: 4, modelDim: 4, queryHeads: 2, headDim: 2 },
      }),
    ).rejects.toThrow(/context must be/);
  });
});
