import {
  type AttentionOptions,
  type AttentionProblem,
  kvHeadFor,
  type LayerInputs,
  type MatmulInputs,
  mergeHeads,
  queryPosition,
  shapeSymbols,
  splitHeads,
  validateAttention,
  validateLayer,
  validateMatmul,
  visibleKeyRange,
} from '@attnkit/spec';

/**
 * The yardstick of the tolerance model: the spec's semantics written the plainest way in float32,
 * every operation rounded (`Math.fround`), sums in key order, nothing compensated or blocked. It is
 * what "float32 arithmetic" costs on these inputs; a backend is allowed `fudge` times its error
 * against the float64 reference on top of `atol + rtol * |ref|` (the way PyTorch tests its fused
 * attention kernels against a low-precision math composition). Written from the spec text on
 * purpose: it must never call a backend, or a backend's error would grade itself.
 */
const f = Math.fround;

export interface NaiveResult32 {
  output: Float32Array;
  lse?: Float32Array;
  weights?: Float32Array;
}

/** `exp`/`log`/`tanh` evaluated in float64 then rounded: a correctly-rounded-ish float32 libm. */
const exp32 = (x: number): number => f(Math.exp(x));
const log32 = (x: number): number => f(Math.log(x));
const tanh32 = (x: number): number => f(Math.tanh(x));

/** Naive float32 attention of a validated problem (same semantics as `referenceAttentionProblem64`). */
export function naiveAttention32(problem: AttentionProblem): NaiveResult32 {
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(problem.shape);
  const { q, k, v, softcap, bias, alibiSlopes, sinks, keyMask } = problem;
  const scale = f(problem.scale);
  const cap = softcap === null ? null : f(softcap);
  const output = new Float32Array(B * Hq * Lq * Dv);
  const lse = problem.returnLse ? new Float32Array(B * Hq * Lq) : undefined;
  const weights = problem.returnWeights ? new Float32Array(B * Hq * Lq * Lk) : undefined;
  const logits = new Float32Array(Lk);

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const g = kvHeadFor(h, Hq, Hkv);
      const kBase = (b * Hkv + g) * Lk;
      const slope = alibiSlopes === null ? 0 : alibiSlopes[h];
      for (let i = 0; i < Lq; i++) {
        const row = (b * Hq + h) * Lq + i;
        const position = queryPosition(i, Lq, Lk);
        const range = visibleKeyRange(position, Lk, problem.causal, problem.slidingWindow);
        const sink = sinks === null ? Number.NEGATIVE_INFINITY : sinks[h];
        let max = sink;
        for (let j = 0; j < Lk; j++) {
          const visible =
            j >= range.start && j < range.end && (keyMask === null || keyMask[b * Lk + j] !== 0);
          if (!visible) {
            logits[j] = Number.NEGATIVE_INFINITY;
            continue;
          }
          let dot = 0;
          for (let d = 0; d < D; d++) dot = f(dot + f(q[row * D + d] * k[(kBase + j) * D + d]));
          let s = f(scale * dot);
          if (cap !== null) s = f(cap * tanh32(f(s / cap)));
          if (bias !== null) {
            const [sb, sh, si, sj] = bias.strides;
            s = f(s + bias.data[b * sb + h * sh + i * si + j * sj]);
          }
          // position - j is an integer below 2^24 here: exact in float32.
          if (alibiSlopes !== null) s = f(s + f(-slope * (position - j)));
          logits[j] = s;
          max = Math.max(max, s); // NaN-propagating, as the spec requires
        }
        if (max === Number.NEGATIVE_INFINITY) {
          if (lse) lse[row] = Number.NEGATIVE_INFINITY;
          continue;
        }
        let denominator = sinks === null ? 0 : exp32(f(sink - max));
        for (let j = 0; j < Lk; j++) {
          const e = exp32(f(logits[j] - max));
          logits[j] = e;
          denominator = f(denominator + e);
        }
        const outBase = row * Dv;
        for (let j = 0; j < Lk; j++) {
          const w = f(logits[j] / denominator);
          if (weights) weights[row * Lk + j] = w;
          if (w === 0) continue; // a masked key contributes nothing, as in the spec
          const vBase = (kBase + j) * Dv;
          for (let d = 0; d < Dv; d++) output[outBase + d] = f(output[outBase + d] + f(w * v[vBase + d]));
        }
        if (lse) lse[row] = f(max + log32(denominator));
      }
    }
  }
  return { output, ...(lse && { lse }), ...(weights && { weights }) };
}

/** `a [m, k] @ b [k, n] (+ bias [n])`, float32, sums in order, the bias added last. */
export function naiveMatmul32(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  m: number,
  k: number,
  n: number,
  bias: ArrayLike<number> | null = null,
): Float32Array {
  const c = new Float32Array(m * n);
  for (let row = 0; row < m; row++) {
    for (let col = 0; col < n; col++) {
      let sum = 0;
      for (let t = 0; t < k; t++) sum = f(sum + f(a[row * k + t] * b[t * n + col]));
      c[row * n + col] = bias === null ? sum : f(sum + bias[col]);
    }
  }
  return c;
}

/** Naive float32 matmul of unvalidated inputs. */
export function naiveMatmulInputs32(inputs: MatmulInputs): Float32Array {
  const { a, b, bias, shape } = validateMatmul(inputs);
  return naiveMatmul32(a, b, shape.m, shape.k, shape.n, bias);
}

/**
 * The naive float32 projections of a validated layer call, split into heads, and the attention
 * shape: where the naive layer and its naive backward both start.
 */
export function naiveProjections32(inputs: LayerInputs, r: ReturnType<typeof validateLayer>['shape']) {
  const { B, Lq, Lk, Hq, Hkv, D, Dv } = shapeSymbols(r);
  const M = r.modelDim;
  const { weights: w } = inputs;
  const source = inputs.context ?? inputs.x;
  const q = splitHeads(naiveMatmul32(inputs.x, w.wq, B * Lq, M, Hq * D, w.bq ?? null), B, Lq, Hq, D);
  const k = splitHeads(naiveMatmul32(source, w.wk, B * Lk, M, Hkv * D, w.bk ?? null), B, Lk, Hkv, D);
  const v = splitHeads(naiveMatmul32(source, w.wv, B * Lk, M, Hkv * Dv, w.bv ?? null), B, Lk, Hkv, Dv);
  const shape = {
    batch: B,
    queryHeads: Hq,
    kvHeads: Hkv,
    queryLength: Lq,
    keyLength: Lk,
    headDim: D,
    valueDim: Dv,
  };
  return { q, k, v, shape };
}

/** The multi-head attention layer composed of the naive float32 matmul and attention. */
export function naiveMultiHeadAttention32(
  inputs: LayerInputs,
  options: AttentionOptions = {},
): NaiveResult32 {
  const r = validateLayer(inputs, options).shape;
  const { batch: B, queryLength: Lq, modelDim: M, queryHeads: Hq, valueDim: Dv } = r;
  const { weights: w } = inputs;
  const { q, k, v, shape } = naiveProjections32(inputs, r);
  // The same call `multiHeadAttention` makes, so the same option resolution.
  const attended = naiveAttention32(validateAttention({ q, k, v, shape }, options));
  const merged = mergeHeads(attended.output, B, Lq, Hq, Dv);
  return { ...attended, output: naiveMatmul32(merged, w.wo, B * Lq, Hq * Dv, M, w.bo ?? null) };
}
