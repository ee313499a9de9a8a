import { describe, expect, it } from 'vitest';
import {
  AttnkitError,
  createReferenceBackend,
  type LayerWeights,
  mergeHeads,
  multiHeadAttentionStep,
  type RotaryOptions,
  referenceAttentionProblem64,
  referenceMatmul64,
  resolveRotary,
  rotateInPlace,
  splitHeads,
} from '../src/index.js';

function draw(seed: number) {
  let state = seed >>> 0;
  return (length: number) =>
    Float32Array.from({ length }, () => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return state / 2 ** 32 - 0.5;
    });
}

const B = 2;
const M = 12;
const Hq = 4;
const Hkv = 2;
const D = 6;
const Dv = 6;

function weights(random: (n: number) => Float32Array): LayerWeights {
  return {
    wq: random(M * Hq * D),
    wk: random(M * Hkv * D),
    wv: random(M * Hkv * Dv),
    wo: random(Hq * Dv * M),
    bq: random(Hq * D),
    bk: random(Hkv * D),
    bv: random(Hkv * Dv),
    bo: random(M),
  };
}

/**
 * The stateless definition in float64: every token of the sequence projected, rotated at positions
 * 0..L-1, causal attention over all of them, merged and projected out. Returns `[B, L, M]`.
 */
function fullSequence64(x: Float32Array, L: number, w: LayerWeights, rotary: RotaryOptions | null) {
  const q = splitHeads(referenceMatmul64(x, w.wq, B * L, M, Hq * D, w.bq ?? null), B, L, Hq, D);
  const k = splitHeads(referenceMatmul64(x, w.wk, B * L, M, Hkv * D, w.bk ?? null), B, L, Hkv, D);
  const v = splitHeads(referenceMatmul64(x, w.wv, B * L, M, Hkv * Dv, w.bv ?? null), B, L, Hkv, Dv);
  if (rotary !== null) {
    const resolved = resolveRotary(rotary, D);
    rotateInPlace(q, { batch: B, heads: Hq, length: L, headDim: D }, [0, 0], resolved);
    rotateInPlace(k, { batch: B, heads: Hkv, length: L, headDim: D }, [0, 0], resolved);
  }
  const shape = {
    batch: B,
    queryHeads: Hq,
    kvHeads: Hkv,
    queryLength: L,
    keyLength: L,
    headDim: D,
    valueDim: Dv,
  };
  const attended = referenceAttentionProblem64({
    q,
    k,
    v,
    shape,
    scale: 1 / Math.sqrt(D),
    causal: true,
    slidingWindow: null,
    keyMask: null,
    bias: null,
    alibiSlopes: null,
    softcap: null,
    sinks: null,
    returnLse: false,
    returnWeights: false,
  });
  return referenceMatmul64(mergeHeads(attended.output, B, L, Hq, Dv), w.wo, B * L, Hq * Dv, M, w.bo ?? null);
}

/** Rows `[from, to)` of every batch of a `[B, L, M]` tensor. */
function rows(values: ArrayLike<number>, L: number, from: number, to: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < B; b++)
    for (let l = from; l < to; l++) for (let m = 0; m < M; m++) out.push(values[(b * L + l) * M + m]);
  return out;
}

describe('multiHeadAttentionStep: prefill then decode over a KV cache', () => {
  for (const rotary of [
    null,
    {},
    { interleaved: true, rotaryDim: 4, base: 500 },
  ] as (RotaryOptions | null)[]) {
    it(`equals the stateless layer over the whole sequence (rotary ${JSON.stringify(rotary)})`, async () => {
      const random = draw(3);
      const w = weights(random);
      const prompt = 5;
      const steps = 4;
      const L = prompt + steps;
      const x = random(B * L * M);
      const expected = fullSequence64(x, L, w, rotary);
      const backend = createReferenceBackend();
      const cache = await backend.createKVCache({ batch: B, kvHeads: Hkv, headDim: D });
      const shape = (T: number) => ({
        batch: B,
        queryLength: T,
        modelDim: M,
        queryHeads: Hq,
        kvHeads: Hkv,
        headDim: D,
      });
      const options = { causal: true, ...(rotary && { rotary }) };
      const slice = (from: number, to: number) => Float32Array.from(rows(x, L, from, to));
      // prefill the prompt in one step, then one token per step
      const prefill = await multiHeadAttentionStep(
        backend,
        cache,
        { x: slice(0, prompt), weights: w, shape: shape(prompt) },
        options,
      );
      const got = [rows(prefill.output, prompt, 0, prompt)];
      for (let t = prompt; t < L; t++) {
        const step = await multiHeadAttentionStep(
          backend,
          cache,
          { x: slice(t, t + 1), weights: w, shape: shape(1) },
          options,
        );
        got.push(rows(step.output, 1, 0, 1));
      }
      expect(cache.lengths).toEqual([L, L]);
      // batch-major comparison: prefill rows of batch b, then each step's row of batch b
      for (let b = 0; b < B; b++) {
        for (let l = 0; l < L; l++) {
          const chunk =
            l < prompt
              ? got[0].slice((b * prompt + l) * M, (b * prompt + l + 1) * M)
              : got[l - prompt + 1].slice(b * M, (b + 1) * M);
          for (let m = 0; m < M; m++) {
            // each stage rounds once to float32 (relative 6e-8) on values of size ~1: 1e-6 is ample
            expect(Math.abs(chunk[m] - expected[(b * L + l) * M + m])).toBeLessThan(1e-6);
          }
        }
      }
      await backend.dispose();
    });
  }

  it('rows of different lengths decode in one call: rotary positions follow each row', async () => {
    const random = draw(9);
    const w = weights(random);
    const backend = createReferenceBackend();
    const cache = await backend.createKVCache({ batch: B, kvHeads: Hkv, headDim: D });
    const shape = { batch: B, queryLength: 3, modelDim: M, queryHeads: Hq, kvHeads: Hkv, headDim: D };
    await multiHeadAttentionStep(
      backend,
      cache,
      { x: random(B * 3 * M), weights: w, shape },
      { causal: true, rotary: {} },
    );
    await cache.truncate([3, 1]);
    const step = await multiHeadAttentionStep(
      backend,
      cache,
      { x: random(B * M), weights: w, shape: { ...shape, queryLength: 1 } },
      { rotary: {} },
    );
    expect(cache.lengths).toEqual([4, 2]);
    expect(step.output.length).toBe(B * M);
    await backend.dispose();
  });

  it('rejects bad input before projecting anything', async () => {
    const random = draw(1);
    const w = weights(random);
    let matmuls = 0;
    const backend = createReferenceBackend();
    const counting = {
      matmul: (inputs: Parameters<typeof backend.matmul>[0]) => {
        matmuls++;
        return backend.matmul(inputs);
      },
    };
    const cache = await backend.createKVCache({ batch: B, kvHeads: Hkv, headDim: D });
    const shape = { batch: B, queryLength: 1, modelDim: M, queryHeads: Hq, kvHeads: Hkv, headDim: D };
    const x = random(B * M);
    const reject = async (call: Promise<unknown>, code: string, argument: string) => {
      const error = await call.then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(AttnkitError);
      expect((error as AttnkitError).code).toBe(code);
      expect((error as AttnkitError).argument).toBe(argument);
    };
    await reject(
      multiHeadAttentionStep(counting, cache, { x, weights: w, shape: { ...shape, headDim: 5 } }),
      'invalid-argument',
      'weights.wq.length',
    );
    await reject(
      multiHeadAttentionStep(counting, cache, { x, weights: w, shape: { ...shape, kvHeads: 4 } }),
      'invalid-argument',
      'weights.wk.length',
    );
    await reject(
      multiHeadAttentionStep(counting, cache, { x, weights: w, shape: { ...shape, batch: 1 } }),
      'invalid-argument',
      'x.length',
    );
    await reject(
      multiHeadAttentionStep(counting, cache, {
        x: random(M),
        weights: w,
        shape: { ...shape, batch: 1 },
      } as never).catch((e) => Promise.reject(e)),
      'invalid-argument',
      'shape.batch',
    );
    await reject(
      multiHeadAttentionStep(counting, cache, { x, weights: w, shape }, { rotary: { rotaryDim: 3 } }),
      'invalid-argument',
      'options.rotary.rotaryDim',
    );
    await reject(
      multiHeadAttentionStep(counting, cache, { x, weights: w, shape }, { bias: {} } as never),
      'unsupported',
      'options.bias',
    );
    expect(matmuls).toBe(0);
    expect(cache.lengths).toEqual([0, 0]);
    await backend.dispose();
  });
});
