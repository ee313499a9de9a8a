import type { AttentionBackend } from './backend.js';
import type { KVCache, KVCacheAttentionOptions } from './cache.js';
import { AttnkitError, invalidArgument } from './errors.js';
import { type LayerWeights, mergeHeads, splitHeads, validateLayer } from './layer.js';
import { type ResolvedRotary, type RotaryOptions, resolveRotary, rotateInPlace } from './rope.js';
import type { AttentionResult } from './types.js';

const STEP = 'multiHeadAttentionStep';

/** Sizes of one step: `queryLength` new tokens per row (1 when decoding, the prompt when prefilling). */
export interface LayerStepShape {
  batch: number;
  /** New tokens per row this step. */
  queryLength: number;
  modelDim: number;
  queryHeads: number;
  /** Default `queryHeads`; must equal the cache's `kvHeads`. */
  kvHeads?: number;
  /** Must equal the cache's `headDim`. */
  headDim: number;
  /** Default `headDim`; must equal the cache's `valueDim`. */
  valueDim?: number;
}

/** One step of a decoder layer over a KV cache. */
export interface LayerStepInputs {
  /** `[B, T, modelDim]`: the new tokens only. */
  x: Float32Array;
  weights: LayerWeights;
  shape: LayerStepShape;
}

/** The cache's attention options, plus rotary embeddings applied to the new queries and keys. */
export interface LayerStepOptions extends KVCacheAttentionOptions {
  /** RoPE on q and k at each token's absolute position (the row's cache length before the step, plus its index). */
  rotary?: RotaryOptions;
}

/** Options the cache rejects; rejected here before anything is projected. */
const CACHE_UNSUPPORTED = ['keyMask', 'bias', 'returnWeights'] as const;

function splitOptions(given: LayerStepOptions | undefined): {
  rotary: unknown;
  attention: KVCacheAttentionOptions;
} {
  if (given === undefined) return { rotary: undefined, attention: {} };
  if (typeof given !== 'object' || given === null) invalidArgument(STEP, 'options', 'an object', given);
  const { rotary, ...attention } = given;
  for (const key of CACHE_UNSUPPORTED) {
    if ((attention as Record<string, unknown>)[key] !== undefined) {
      throw new AttnkitError('unsupported', `${STEP}: options.${key} is not supported over a KV cache`, {
        argument: `options.${key}`,
        expected:
          'absent (a KV cache supports scale, causal, slidingWindow, alibiSlopes, softcap, sinks, returnLse)',
        actual: 'given',
      });
    }
  }
  return { rotary, attention };
}

/**
 * One step of a multi-head attention decoder layer over a KV cache: project only the new tokens
 * (`x Wq + bq`, `x Wk + bk`, `x Wv + bv` through the backend's matmul), rotate the new queries and keys
 * by their absolute positions when `rotary` is set, append the keys and values to `cache`, attend
 * from the new queries over everything the cache holds (`cache.attention`), merge heads and project
 * out (`Wo + bo`). Returns `output [B, T, modelDim]` (and `lse` if asked).
 *
 * Equivalent to the stateless layer over the whole sequence so far (every token projected, keys at
 * positions `0..L-1`, the queries the last `T`), restricted to the new rows — what the tests check.
 * Prefill is a step with `T` = the prompt length and `causal: true`; decoding, steps of `T = 1`.
 * Row `b`'s new tokens sit at `cache.lengths[b] + t`, so rows of different lengths (ragged prompts,
 * appended with `cache.append({ lengths })` or rolled back with `truncate`) decode in one call.
 *
 * Everything is validated before the first projection: the shape against `cache.config`, `x`, the
 * weights, the options (keyMask, bias and returnWeights are `unsupported` over a cache) and `rotary`.
 */
export async function multiHeadAttentionStep(
  backend: Pick<AttentionBackend, 'matmul'>,
  cache: KVCache,
  inputs: LayerStepInputs,
  options?: LayerStepOptions,
): Promise<AttentionResult> {
  const { rotary: rotaryGiven, attention } = splitOptions(options);
  if (typeof inputs !== 'object' || inputs === null) invalidArgument(STEP, 'inputs', 'an object', inputs);
  const r = validateLayer({ x: inputs.x, weights: inputs.weights, shape: inputs.shape }, attention).shape;
  const { batch: B, queryLength: T, modelDim: M, queryHeads: Hq, kvHeads: Hkv, headDim: D, valueDim: Dv } = r;
  const config = cache.config;
  const mismatch: [keyof typeof config, number][] = [
    ['batch', B],
    ['kvHeads', Hkv],
    ['headDim', D],
    ['valueDim', Dv],
  ];
  for (const [key, value] of mismatch) {
    if (config[key] !== value) {
      invalidArgument(STEP, `shape.${key}`, `${config[key]} (the cache's config.${key})`, value);
    }
  }
  const rotary: ResolvedRotary | null =
    rotaryGiven === undefined ? null : resolveRotary(rotaryGiven, D, STEP, 'options.rotary');
  const starts = cache.lengths;
  const { weights: w, x } = inputs;
  const project = (b: Float32Array, n: number, bias?: Float32Array) =>
    backend.matmul({ a: x, b, shape: { m: B * T, k: M, n }, ...(bias && { bias }) });
  const [qFlat, kFlat, vFlat] = await Promise.all([
    project(w.wq, Hq * D, w.bq),
    project(w.wk, Hkv * D, w.bk),
    project(w.wv, Hkv * Dv, w.bv),
  ]);
  const q = splitHeads(qFlat, B, T, Hq, D);
  const k = splitHeads(kFlat, B, T, Hkv, D);
  if (rotary !== null) {
    rotateInPlace(q, { batch: B, heads: Hq, length: T, headDim: D }, starts, rotary);
    rotateInPlace(k, { batch: B, heads: Hkv, length: T, headDim: D }, starts, rotary);
  }
  await cache.append({ k, v: splitHeads(vFlat, B, T, Hkv, Dv), tokens: T });
  const attended = await cache.attention({ q, queryHeads: Hq, queryLength: T }, attention);
  const output = await backend.matmul({
    a: mergeHeads(attended.output, B, T, Hq, Dv),
    b: w.wo,
    shape: { m: B * T, k: Hq * Dv, n: M },
    ...(w.bo && { bias: w.bo }),
  });
  return { ...attended, output };
}
