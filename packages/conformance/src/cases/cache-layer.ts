import {
  type LayerWeights,
  mergeHeads,
  multiHeadAttentionStep,
  type RotaryOptions,
  referenceAttentionProblem64,
  referenceMatmul64,
  resolveOptions,
  resolveRotary,
  rotateInPlace,
  splitHeads,
} from '@attnkit/spec';
import { expectRejection, outcomeOf } from '../check.js';
import { Comparison, describe } from '../compare.js';
import { naiveAttention32, naiveMatmul32 } from '../naive.js';
import { DataSource, hashString } from '../random.js';
import type { ConformanceCase } from '../types.js';
import { customCase } from './helpers.js';

interface StepCase {
  batch: number;
  modelDim: number;
  queryHeads: number;
  kvHeads: number;
  headDim: number;
  prompt: number;
  steps: number;
  rotary: RotaryOptions | null;
}

/**
 * The stateless layer over the whole sequence: every token projected, q and k rotated at positions
 * 0..L-1, causal attention, merged and projected out. `float64` builds the reference (every step in
 * float64); otherwise the naive float32 yardstick (naive matmuls, the rotation rounded once per
 * element as the layer rounds it, naive attention). Returns `[B, L, M]`.
 */
function wholeSequence(c: StepCase, x: Float32Array, w: LayerWeights, float64: boolean): ArrayLike<number> {
  const { batch: B, modelDim: M, queryHeads: Hq, kvHeads: Hkv, headDim: D } = c;
  const L = c.prompt + c.steps;
  const matmul = float64 ? referenceMatmul64 : naiveMatmul32;
  const project = (weights: Float32Array, bias: Float32Array | undefined, heads: number) =>
    splitHeads(matmul(x, weights, B * L, M, heads * D, bias ?? null), B, L, heads, D);
  const q = project(w.wq, w.bq, Hq);
  const k = project(w.wk, w.bk, Hkv);
  const v = project(w.wv, w.bv, Hkv);
  if (c.rotary !== null) {
    const rotary = resolveRotary(c.rotary, D);
    const starts = new Array<number>(B).fill(0);
    rotateInPlace(q, { batch: B, heads: Hq, length: L, headDim: D }, starts, rotary);
    rotateInPlace(k, { batch: B, heads: Hkv, length: L, headDim: D }, starts, rotary);
  }
  const shape = {
    batch: B,
    queryHeads: Hq,
    kvHeads: Hkv,
    queryLength: L,
    keyLength: L,
    headDim: D,
    valueDim: D,
  };
  const options = resolveOptions({ causal: true }, shape);
  if (float64) {
    const attended = referenceAttentionProblem64({ q, k, v, shape, ...options });
    return referenceMatmul64(mergeHeads(attended.output, B, L, Hq, D), w.wo, B * L, Hq * D, M, w.bo ?? null);
  }
  const attended = naiveAttention32({
    q: q as Float32Array,
    k: k as Float32Array,
    v: v as Float32Array,
    shape,
    ...options,
  });
  return naiveMatmul32(mergeHeads(attended.output, B, L, Hq, D), w.wo, B * L, Hq * D, M, w.bo ?? null);
}

/** Rows `[from, to)` of every batch row of a `[B, L, M]` tensor, as `[B, to - from, M]`. */
function rowsOf(
  values: ArrayLike<number>,
  B: number,
  L: number,
  M: number,
  from: number,
  to: number,
): Float64Array {
  const out = new Float64Array(B * (to - from) * M);
  for (let b = 0; b < B; b++)
    for (let l = from; l < to; l++)
      for (let m = 0; m < M; m++) out[(b * (to - from) + l - from) * M + m] = values[(b * L + l) * M + m];
  return out;
}

function stepCase(id: string, title: string, c: StepCase): ConformanceCase {
  const L = c.prompt + c.steps;
  const work =
    c.batch * L * c.modelDim * (c.queryHeads + 2 * c.kvHeads) * c.headDim * 2 +
    c.batch * c.queryHeads * L * L * 2 * c.headDim;
  return customCase(id, title, work, async (context) => {
    const backend = await context.backend();
    const { batch: B, modelDim: M, queryHeads: Hq, kvHeads: Hkv, headDim: D } = c;
    const config = { batch: B, kvHeads: Hkv, headDim: D };
    if (!context.capabilities.features.includes('kvCache')) {
      const outcome = await expectRejection(() => backend.createKVCache(config), 'unsupported', 'kvCache');
      return {
        ...outcome,
        message: outcome.ok ? `rejected as expected: ${outcome.message}` : outcome.message,
      };
    }
    // Weights and inputs on a 1/8 grid, small: float32 projections are exact, only attention (and
    // the rotation, rounded once per element) rounds.
    const data = new DataSource(hashString(id));
    const grid = (n: number) => data.grid(n, -2, 2, 1 / 8);
    const w: LayerWeights = {
      wq: grid(M * Hq * D),
      wk: grid(M * Hkv * D),
      wv: grid(M * Hkv * D),
      wo: grid(Hq * D * M),
      bq: grid(Hq * D),
      bk: grid(Hkv * D),
      bv: grid(Hkv * D),
      bo: grid(M),
    };
    const x = grid(B * L * M);
    const reference = wholeSequence(c, x, w, true);
    let naive: ArrayLike<number> | null = null;
    const naiveWhole = () => {
      naive ??= wholeSequence(c, x, w, false);
      return naive;
    };
    const comparison = new Comparison(context.tolerance);
    const cache = await backend.createKVCache(config);
    try {
      const options = { causal: true, ...(c.rotary && { rotary: c.rotary }) };
      const chunks: [number, number][] = [[0, c.prompt]];
      for (let t = c.prompt; t < L; t++) chunks.push([t, t + 1]);
      for (const [from, to] of chunks) {
        const T = to - from;
        const input = Float32Array.from(rowsOf(x, B, L, M, from, to));
        const shape = { batch: B, queryLength: T, modelDim: M, queryHeads: Hq, kvHeads: Hkv, headDim: D };
        let result: Awaited<ReturnType<typeof multiHeadAttentionStep>>;
        try {
          result = await multiHeadAttentionStep(backend, cache, { x: input, weights: w, shape }, options);
        } catch (error) {
          comparison.fail(`tokens ${from}..${to - 1}: multiHeadAttentionStep rejected: ${describe(error)}`);
          break;
        }
        comparison.tensor(
          `tokens ${from}..${to - 1} output`,
          result.output,
          rowsOf(reference, B, L, M, from, to),
          () => rowsOf(naiveWhole(), B, L, M, from, to),
          M,
        );
      }
    } finally {
      await cache.dispose();
    }
    return outcomeOf(comparison);
  });
}

/** The decoder layer over a cache (`multiHeadAttentionStep`): prefill then decode equals the stateless layer. */
export function cacheLayerCases(): ConformanceCase[] {
  const base = { batch: 2, modelDim: 16, queryHeads: 4, kvHeads: 2, headDim: 8, prompt: 7, steps: 5 };
  return [
    stepCase(
      'cache/layer-step',
      'decoder layer step: prefill 7 then decode 5, GQA 4/2, equals the stateless layer',
      {
        ...base,
        rotary: null,
      },
    ),
    stepCase('cache/layer-step-rope', 'decoder layer step with RoPE (half-split, base 10000)', {
      ...base,
      rotary: {},
    }),
    stepCase(
      'cache/layer-step-rope-interleaved',
      'decoder layer step with interleaved RoPE on 4 of 8 dims, base 500',
      {
        ...base,
        rotary: { interleaved: true, rotaryDim: 4, base: 500 },
      },
    ),
  ];
}
