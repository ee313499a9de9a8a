/**
 * Binary16 storage (`precision: 'f16-storage'`) of a stateless call's q, k and v and of a KV cache's
 * K and V: the rounding it costs and the error bound it declares. The kernels accumulate in float32
 * as before; only the stored tensors are rounded.
 */
import { shapeSymbols } from './symbols.js';
import type { ResolvedShape } from './types.js';

/** Unit roundoff of binary16 with round-to-nearest: `|fl16(x) - x| <= 2^-11 |x|` in the normal range. */
export const F16_UNIT_ROUNDOFF = 2 ** -11;

/**
 * Absolute error allowed per stored value below the normal range: the smallest normal binary16 value,
 * `2^-14`. Rounding a subnormal costs at most `2^-25`, but WGSL lets an implementation flush
 * subnormal values to zero when it reads them, which costs up to `2^-14`; the bound takes the worse.
 */
export const F16_SUBNORMAL_ERROR = 2 ** -14;

/** Largest finite binary16 value. */
export const F16_MAX = 65504;

/** Magnitudes at or above this round to infinity in binary16 (`65504 + half an ulp`): an append rejects them. */
export const F16_ROUNDS_TO_INFINITY = 65520;

/**
 * `x` rounded to the nearest binary16 value, ties to even (the definition of what f16 storage keeps),
 * as a number. Written with arithmetic rather than bit manipulation, so a backend's bit conversion is
 * checked against an independent one. Magnitudes at or above {@link F16_ROUNDS_TO_INFINITY} give
 * infinity; NaN and infinities pass through.
 */
export function roundToF16(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  if (a >= F16_ROUNDS_TO_INFINITY) return x > 0 ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
  // The spacing of binary16 values around a: 2^-24 below the normal range, else 2^(e - 10).
  let ulp = 2 ** -24;
  if (a >= 2 ** -14) {
    let e = Math.floor(Math.log2(a));
    if (2 ** e > a) e--;
    if (2 ** (e + 1) <= a) e++;
    ulp = 2 ** (e - 10);
  }
  const t = a / ulp;
  const floor = Math.floor(t);
  const rest = t - floor;
  const n = rest > 0.5 || (rest === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
  return Math.sign(x) * n * ulp;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The binary16 bits of `x` rounded to nearest, ties to even (NaN stays NaN, overflow is infinity). */
export function f16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa === 0 ? 0 : 0x200 | (mantissa >>> 13));
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal (or zero): the 24-bit significand shifted right by 14 - e, rounded half to even.
    if (e < -10) return sign;
    const significand = mantissa | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    return sign | ((significand + half - 1 + ((significand >>> shift) & 1)) >>> shift);
  }
  // A carry out of the mantissa moves into the exponent, which is the right next value (up to infinity).
  const rounded = (e << 10) + ((mantissa + 0xfff + ((mantissa >>> 13) & 1)) >>> 13);
  return sign | Math.min(rounded, 0x7c00);
}

/** The value of binary16 bits `bits` (the inverse of {@link f16Bits}; NaN for every NaN pattern). */
export function f16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  return sign * (1024 + mantissa) * 2 ** (exponent - 25);
}

/**
 * `values` with every element rounded to binary16 (ties to even) and held in float32, which holds
 * every binary16 value exactly: what a kernel that stores them as binary16 computes with. A fast
 * bit conversion ({@link f16Bits}), checked against {@link roundToF16} by the spec's tests.
 */
export function roundArrayToF16(values: Float32Array): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f16Value(f16Bits(values[i]));
  return out;
}

/**
 * A problem with q, k and v as f16 storage holds them (each rounded by {@link roundArrayToF16}); the
 * rest unchanged. A backend without a binary16 path of its own implements `precision: 'f16-storage'`
 * by running its float32 kernel on this (the result the spec defines; no memory saved).
 */
export function withF16StoredInputs<P extends { q: Float32Array; k: Float32Array; v: Float32Array }>(
  problem: P,
): P {
  return {
    ...problem,
    q: roundArrayToF16(problem.q),
    k: roundArrayToF16(problem.k),
    v: roundArrayToF16(problem.v),
  };
}

/** An attention problem's tensors and shape as the bound reads them (the inputs before any rounding). */
export interface F16StorageBoundInputs {
  /** `[B, Hq, Lq, D]`. */
  q: Float32Array;
  /** `[B, Hkv, Lk, D]`. */
  k: Float32Array;
  /** `[B, Hkv, Lk, Dv]`. */
  v: Float32Array;
  /** Every dimension given (a validated problem's `shape`; a cache row's with `batch: 1`). */
  shape: ResolvedShape;
  scale: number;
  /**
   * Whether q is rounded too: `true` for stateless `attention` with `precision: 'f16-storage'`
   * (q, k and v stored as binary16), `false` (default) for a KV cache (only K and V are stored).
   */
  roundsQuery?: boolean;
}

/** Per query row (`(b * Hq + h) * Lq + i`): the extra error f16 storage may add to each output value and to the lse. */
export interface F16StorageBound {
  output: Float64Array;
  lse: Float64Array;
}

/**
 * The error that rounding K and V (and with `roundsQuery`, q) to binary16 may add to an attention
 * result, per query row, on top of the backend's float32 tolerance (spec README, "f16 storage"). With
 * `u = 2^-11`, `eta = 2^-14` and every stored value `x~ = x (1 + delta) + e`, `|delta| <= u`, `|e| <= eta`:
 *
 * - each logit moves by at most `E = |scale| * max_j sum_d |q_d| (u |k_jd| + eta)` (softcap is
 *   1-Lipschitz; ALiBi and the sink do not depend on q or K), so `|lse~ - lse| <= E`; when q is
 *   rounded too, `|q~ k~ - q k| <= |q~| |k~ - k| + |q~ - q| |k|` makes the sum's term
 *   `((1 + u)|q_d| + eta)(u |k_jd| + eta) + (u |q_d| + eta)|k_jd|`;
 * - each weight moves by a factor in `[e^-2E, e^2E]`, so `|p~_j - p_j| <= (e^2E - 1) p_j`, and with
 *   `sum_j p_j <= 1` (a sink only lowers it) and `Vmax = max_j,d |v_jd|`:
 *   `|o~ - o| <= (e^2E - 1)(1 + u) Vmax + u Vmax + eta`.
 *
 * The maxima run over every key of the row, masked or not (an upper bound). Non-finite inputs are
 * skipped: a result they reach is non-finite and compared exactly.
 */
export function f16StorageErrorBound(inputs: F16StorageBoundInputs): F16StorageBound {
  const { q, k, v } = inputs;
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(inputs.shape);
  const u = F16_UNIT_ROUNDOFF;
  const eta = F16_SUBNORMAL_ERROR;
  const scale = Math.abs(inputs.scale);
  const roundsQuery = inputs.roundsQuery === true;
  const group = Hq / Hkv;
  const output = new Float64Array(B * Hq * Lq);
  const lse = new Float64Array(B * Hq * Lq);
  const finiteAbs = (x: number) => (Number.isFinite(x) ? Math.abs(x) : 0);
  // vMax per (batch row, kv head): the largest |v| a row's output can mix.
  const vMax = new Float64Array(B * Hkv);
  for (let g = 0; g < B * Hkv; g++) {
    let m = 0;
    for (let e = g * Lk * Dv; e < (g + 1) * Lk * Dv; e++) m = Math.max(m, finiteAbs(v[e]));
    vMax[g] = m;
  }
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const g = b * Hkv + Math.floor(h / group);
      for (let i = 0; i < Lq; i++) {
        const row = (b * Hq + h) * Lq + i;
        const qRow = row * D;
        let shift = 0;
        for (let j = 0; j < Lk; j++) {
          const kRow = (g * Lk + j) * D;
          let s = 0;
          if (roundsQuery) {
            // |q~ k~ - q k| <= |q~| |k~ - k| + |q~ - q| |k|, with |q~| <= (1 + u)|q| + eta.
            for (let d = 0; d < D; d++) {
              const aq = finiteAbs(q[qRow + d]);
              const ak = finiteAbs(k[kRow + d]);
              s += ((1 + u) * aq + eta) * (u * ak + eta) + (u * aq + eta) * ak;
            }
          } else {
            for (let d = 0; d < D; d++) s += finiteAbs(q[qRow + d]) * (u * finiteAbs(k[kRow + d]) + eta);
          }
          shift = Math.max(shift, s);
        }
        const E = scale * shift;
        lse[row] = E;
        output[row] = Math.expm1(2 * E) * (1 + u) * vMax[g] + u * vMax[g] + eta;
      }
    }
  }
  return { output, lse };
}
