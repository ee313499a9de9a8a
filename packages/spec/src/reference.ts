import { roundToF16 } from './f16.js';
import { kvHeadFor, queryPosition, visibleKeyRange } from './masking.js';
import { shapeSymbols } from './symbols.js';
import type {
  AttentionInputs,
  AttentionOptions,
  AttentionProblem,
  MatmulInputs,
  StoragePrecision,
} from './types.js';
import { validateAttention, validateMatmul } from './validate.js';

/** The reference's float64 results, before any rounding to float32. */
export interface ReferenceResult64 {
  output: Float64Array;
  lse?: Float64Array;
  weights?: Float64Array;
}

/** A problem whose tensors may be float64 (the MHA reference feeds its own float64 projections). */
export type ReferenceProblem = Omit<AttentionProblem, 'q' | 'k' | 'v' | 'precision'> & {
  q: ArrayLike<number>;
  k: ArrayLike<number>;
  v: ArrayLike<number>;
  /** Absent means `'f32'` (the reference's internal callers: the layer and the cache). */
  precision?: StoragePrecision;
};

/** `values` rounded to binary16 by the arithmetic definition, {@link roundToF16}. */
function roundedToF16(values: ArrayLike<number>): Float64Array {
  return Float64Array.from(values as ArrayLike<number>, roundToF16);
}

/** Max that lets NaN through, as IEEE arithmetic would (Math.max does; a plain `>` would drop it). */
function nanMax(a: number, b: number): number {
  return Math.max(a, b);
}

/**
 * The executable definition of attention, in float64, two passes per query row and nothing clever.
 * Equivalent to, per batch `b`, query head `h`, row `i`, with `g = kvHeadFor(h)` and `p = (Lk-Lq)+i`:
 *
 * ```text
 * s_j = scale * dot(q[b,h,i], k[b,g,j])
 * s_j = softcap ? softcap * tanh(s_j / softcap) : s_j
 * s_j = s_j + bias[b,h,i,j] - alibi[h] * (p - j)
 * s_j = visible(i, j) ? s_j : -inf              // causal, slidingWindow, keyMask
 * m   = max(s_0..s_{Lk-1}, sink[h])
 * if m == -inf: output row = 0, lse = -inf, weights = 0
 * den = sum_j exp(s_j - m) + exp(sink[h] - m)
 * w_j = exp(s_j - m) / den;  o = sum_j w_j v[b,g,j];  lse = m + ln(den)
 * ```
 *
 * With `precision: 'f16-storage'`, q, k and v are first rounded to binary16 ({@link roundToF16}).
 */
export function referenceAttentionProblem64(problem: ReferenceProblem): ReferenceResult64 {
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(problem.shape);
  const { scale, softcap, bias, alibiSlopes, sinks, keyMask } = problem;
  const f16 = problem.precision === 'f16-storage';
  const q = f16 ? roundedToF16(problem.q) : problem.q;
  const k = f16 ? roundedToF16(problem.k) : problem.k;
  const v = f16 ? roundedToF16(problem.v) : problem.v;
  const output = new Float64Array(B * Hq * Lq * Dv);
  const lse = problem.returnLse ? new Float64Array(B * Hq * Lq) : undefined;
  const weights = problem.returnWeights ? new Float64Array(B * Hq * Lq * Lk) : undefined;
  const logits = new Float64Array(Lk);

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const g = kvHeadFor(h, Hq, Hkv);
      const kBase = (b * Hkv + g) * Lk;
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
          for (let d = 0; d < D; d++) dot += q[row * D + d] * k[(kBase + j) * D + d];
          let s = scale * dot;
          if (softcap !== null) s = softcap * Math.tanh(s / softcap);
          if (bias !== null) {
            const [sb, sh, si, sj] = bias.strides;
            s += bias.data[b * sb + h * sh + i * si + j * sj];
          }
          if (alibiSlopes !== null) s += -alibiSlopes[h] * (position - j);
          logits[j] = s;
          max = nanMax(max, s);
        }
        if (max === Number.NEGATIVE_INFINITY) {
          if (lse) lse[row] = Number.NEGATIVE_INFINITY;
          continue; // output and weights rows stay zero
        }
        let denominator = sinks === null ? 0 : Math.exp(sink - max);
        for (let j = 0; j < Lk; j++) {
          const e = Math.exp(logits[j] - max);
          logits[j] = e;
          denominator += e;
        }
        const outBase = row * Dv;
        for (let j = 0; j < Lk; j++) {
          const w = logits[j] / denominator;
          if (weights) weights[row * Lk + j] = w;
          if (w === 0) continue; // masked key: 0 * v must not turn an infinite v into NaN
          const vBase = (kBase + j) * Dv;
          for (let d = 0; d < Dv; d++) output[outBase + d] += w * v[vBase + d];
        }
        if (lse) lse[row] = max + Math.log(denominator);
      }
    }
  }
  return { output, ...(lse && { lse }), ...(weights && { weights }) };
}

/** Validates, then runs the float64 reference. The values conformance compares against. */
export function referenceAttention64(
  inputs: AttentionInputs,
  options: AttentionOptions = {},
): ReferenceResult64 {
  return referenceAttentionProblem64(validateAttention(inputs, options));
}

/** `a [m, k] @ b [k, n] (+ bias [n])` in float64. */
export function referenceMatmul64(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  m: number,
  k: number,
  n: number,
  bias: ArrayLike<number> | null = null,
): Float64Array {
  const c = new Float64Array(m * n);
  for (let row = 0; row < m; row++) {
    for (let col = 0; col < n; col++) {
      let sum = bias === null ? 0 : bias[col];
      for (let t = 0; t < k; t++) sum += a[row * k + t] * b[t * n + col];
      c[row * n + col] = sum;
    }
  }
  return c;
}

/** Validates, then multiplies in float64. */
export function referenceMatmulInputs64(inputs: MatmulInputs): Float64Array {
  const { a, b, bias, shape } = validateMatmul(inputs);
  return referenceMatmul64(a, b, shape.m, shape.k, shape.n, bias);
}
