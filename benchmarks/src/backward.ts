/**
 * The backward mode's correctness side: the float64 reference gradients of a workload and the check
 * of a subject's forward output and gradients against them. Browser-safe (the spec only).
 */
import { naiveAttention32, naiveAttentionBackward32 } from '@attnkit/conformance';
import {
  referenceAttention64,
  referenceAttentionBackward64,
  type Tolerance,
  validateAttention,
} from '@attnkit/spec';
import type { ForwardPass, GradientSet } from './subject.js';
import { makeWorkload, type Workload, type WorkloadInputs } from './workloads.js';

/** The float64 truth a backward row is checked against, and optionally the naive float32 yardstick. */
export interface BackwardReference {
  output: Float64Array;
  gradQ: Float64Array;
  gradK: Float64Array;
  gradV: Float64Array;
  /**
   * The naive float32 composition of the same forward + backward (every operation rounded, the
   * conformance suite's yardstick): its per-row error is what a declared `fudge` multiplies.
   * Computed only when a check needs it. Absent: `atol + rtol * |ref|` alone, which is stricter.
   */
  naive32?: () => NaiveTensors;
}

/** The naive float32 output and gradients. */
export type NaiveTensors = { output: ArrayLike<number> } & { [K in keyof GradientSet]: ArrayLike<number> };

/** The spec's float64 gradients (and forward output) of a backward workload. */
export function backwardReferenceFor(w: Workload, inputs: WorkloadInputs): BackwardReference {
  const { gradOutput } = inputs;
  if (gradOutput === undefined) throw new Error(`${w.id}: a backward workload without gradOutput`);
  // the reference recomputes the forward in float64 and reads neither output nor lse; they only
  // need the right lengths to pass validation
  const { queryHeads: Hq, queryLength: Lq, valueDim: Dv } = inputs.shape;
  const grads = referenceAttentionBackward64(
    {
      q: inputs.q,
      k: inputs.k,
      v: inputs.v,
      shape: inputs.shape,
      output: new Float32Array(Hq * Lq * Dv),
      lse: new Float32Array(Hq * Lq),
      gradOutput,
    },
    { causal: w.causal },
  );
  const output = referenceAttention64(
    { q: inputs.q, k: inputs.k, v: inputs.v, shape: inputs.shape },
    { causal: w.causal },
  ).output;
  let naive: NaiveTensors | null = null;
  const naive32 = (): NaiveTensors => {
    if (naive === null) {
      const problem = validateAttention(
        { q: inputs.q, k: inputs.k, v: inputs.v, shape: inputs.shape },
        { causal: w.causal },
      );
      naive = { output: naiveAttention32(problem).output, ...naiveAttentionBackward32(problem, gradOutput) };
    }
    return naive;
  };
  return { output, gradQ: grads.gradQ, gradK: grads.gradK, gradV: grads.gradV, naive32 };
}

/** Result of checking one backward call: the worst tensor decides. */
export interface BackwardCheck {
  maxAbsError: number;
  /** Largest `|got - ref| / (atol + rtol * |ref| + fudge * err32)`: at most 1 passes. */
  worstRatio: number;
  pass: boolean;
  atol: number;
  rtol: number;
  fudge: number;
  /** The tensor with the worst ratio: `output`, `gradQ`, `gradK` or `gradV`. */
  worstTensor: string;
}

/** Largest `|naive - ref|` per row of `rowLength` elements (non-finite naive values allow nothing). */
function rowErrors(naive: ArrayLike<number> | undefined, ref: Float64Array, rowLength: number): Float64Array {
  const errors = new Float64Array(Math.ceil(ref.length / rowLength));
  if (naive === undefined || naive.length !== ref.length) return errors;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(naive[i] - ref[i]);
    if (Number.isFinite(e) && e > errors[Math.floor(i / rowLength)]) errors[Math.floor(i / rowLength)] = e;
  }
  return errors;
}

/**
 * Checks a subject's forward output and gradients against the float64 reference with the
 * conformance suite's model, `|got - ref| <= atol + rtol*|ref| + fudge*err32`, where `err32` is the
 * naive float32 composition's worst error in the element's row (an output or gradient row of D or
 * Dv values). A missing tensor, a wrong length or a NaN fails.
 */
export function checkBackward(
  forward: ForwardPass,
  grads: GradientSet,
  ref: BackwardReference,
  tolerance: Tolerance,
  shape: { headDim: number; valueDim: number },
): BackwardCheck {
  const fudge = tolerance.fudge ?? 0;
  const result: BackwardCheck = {
    maxAbsError: 0,
    worstRatio: 0,
    pass: true,
    atol: tolerance.atol,
    rtol: tolerance.rtol,
    fudge,
    worstTensor: 'output',
  };
  const tensors: [keyof BackwardReference & string, Float32Array | undefined, number][] = [
    ['output', forward.output, shape.valueDim],
    ['gradQ', grads.gradQ, shape.headDim],
    ['gradK', grads.gradK, shape.headDim],
    ['gradV', grads.gradV, shape.valueDim],
  ];
  for (const [name, got, rowLength] of tensors) {
    const expected = ref[name] as Float64Array;
    let worst = 0;
    let maxAbs = 0;
    if (got === undefined || got.length !== expected.length) {
      worst = Number.POSITIVE_INFINITY;
      maxAbs = Number.POSITIVE_INFINITY;
    } else {
      // the naive yardstick only where atol + rtol alone would fail, as the suite does
      let err32: Float64Array | null = null;
      for (let i = 0; i < got.length; i++) {
        const error = Math.abs(got[i] - expected[i]);
        let bound = tolerance.atol + tolerance.rtol * Math.abs(expected[i]);
        if (!(error <= bound) && fudge > 0 && ref.naive32 !== undefined) {
          err32 ??= rowErrors(ref.naive32()[name as keyof NaiveTensors], expected, rowLength);
          bound += fudge * err32[Math.floor(i / rowLength)];
        }
        const ratio = error / bound;
        // NaN must fail: compared negated, a NaN counts as the worst
        if (!(error <= maxAbs)) maxAbs = Number.isNaN(error) ? Number.POSITIVE_INFINITY : error;
        if (!(ratio <= worst)) worst = Number.isNaN(ratio) ? Number.POSITIVE_INFINITY : ratio;
      }
    }
    result.maxAbsError = Math.max(result.maxAbsError, maxAbs);
    if (worst > result.worstRatio) {
      result.worstRatio = worst;
      result.worstTensor = name;
    }
  }
  result.pass = result.worstRatio <= 1;
  return result;
}

/** Size of the correctness gate every backward series runs before timing: small, so the float64 reference is cheap. */
export const BACKWARD_GATE_SIZE = 128;

/** The gate's workload for a series: the series' axes at the gate size. */
export function gateWorkload(w: Workload, n: number = BACKWARD_GATE_SIZE): Workload {
  return makeWorkload('backward', w.causal, w.headDim, w.heads, n);
}
