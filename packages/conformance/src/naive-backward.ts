import {
  type AttentionProblem,
  kvHeadFor,
  queryPosition,
  shapeSymbols,
  visibleKeyRange,
} from '@attnkit/spec';
import { naiveAttention32 } from './naive.js';

/**
 * The yardstick of the backward tolerance model: the spec's forward composed naively in float32
 * (`naiveAttention32`: its own float32 output and lse), then the backward written from the spec's
 * derivative the plainest way in float32 — every operation rounded, sums in order, nothing
 * compensated. Like the forward yardstick it calls no backend. It uses the float32 lse and output
 * the way a fused kernel must (the kernel receives them from the forward), so the error of
 * recomputing P from a rounded lse is part of what float32 costs. Its backward recomputes the very
 * logits its forward rounded, the same way, so their errors cancel in `exp(s - lse)`: a kernel whose
 * forward and backward round the logits differently has no such luck, which `logitErrorBound`
 * (backward-bound.ts) allows for.
 */
const f = Math.fround;
const exp32 = (x: number): number => f(Math.exp(x));
const tanh32 = (x: number): number => f(Math.tanh(x));

export interface NaiveGradients32 {
  gradQ: Float32Array;
  gradK: Float32Array;
  gradV: Float32Array;
  gradBias?: Float32Array;
  gradSinks?: Float32Array;
}

/** Naive float32 gradients of a validated problem for `gradOutput` (see referenceAttentionBackwardProblem64). */
export function naiveAttentionBackward32(
  problem: AttentionProblem,
  gradOutput: Float32Array,
): NaiveGradients32 {
  const forward = naiveAttention32({ ...problem, returnLse: true, returnWeights: false });
  return naiveBackwardOfForward32(problem, forward.output, forward.lse as Float32Array, gradOutput);
}

/**
 * The naive float32 backward given the forward's float32 `output` and `lse` (as a fused kernel gets
 * them): P recomputed from `lse`, D_i = rowsum(dO * O), every product and sum rounded, sums in key
 * order. The layer's yardstick calls it with the naive layer forward's values.
 */
export function naiveBackwardOfForward32(
  problem: AttentionProblem,
  O: Float32Array,
  lse: Float32Array,
  dO: Float32Array,
): NaiveGradients32 {
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(problem.shape);
  const { q, k, v, softcap, bias, alibiSlopes, sinks, keyMask } = problem;
  const scale = f(problem.scale);
  const cap = softcap === null ? null : f(softcap);
  const gradQ = new Float32Array(B * Hq * Lq * D);
  const gradK = new Float32Array(B * Hkv * Lk * D);
  const gradV = new Float32Array(B * Hkv * Lk * Dv);
  const gradBias = bias === null ? undefined : new Float32Array(bias.data.length);
  const gradSinks = sinks === null ? undefined : new Float32Array(Hq);

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const g = kvHeadFor(h, Hq, Hkv);
      const kBase = (b * Hkv + g) * Lk;
      const slope = alibiSlopes === null ? 0 : alibiSlopes[h];
      for (let i = 0; i < Lq; i++) {
        const row = (b * Hq + h) * Lq + i;
        const rowLse = lse[row];
        if (rowLse === Number.NEGATIVE_INFINITY) continue;
        let Di = 0;
        for (let d = 0; d < Dv; d++) Di = f(Di + f(dO[row * Dv + d] * O[row * Dv + d]));
        if (gradSinks !== undefined && sinks !== null) {
          gradSinks[h] = f(gradSinks[h] - f(exp32(f(sinks[h] - rowLse)) * Di));
        }
        const position = queryPosition(i, Lq, Lk);
        const range = visibleKeyRange(position, Lk, problem.causal, problem.slidingWindow);
        for (let j = range.start; j < range.end; j++) {
          if (keyMask !== null && keyMask[b * Lk + j] === 0) continue;
          let dot = 0;
          for (let d = 0; d < D; d++) dot = f(dot + f(q[row * D + d] * k[(kBase + j) * D + d]));
          let s = f(scale * dot);
          let tanh = 0;
          if (cap !== null) {
            tanh = tanh32(f(s / cap));
            s = f(cap * tanh);
          }
          let biasIndex = -1;
          if (bias !== null) {
            const [sb, sh, si, sj] = bias.strides;
            biasIndex = b * sb + h * sh + i * si + j * sj;
            s = f(s + bias.data[biasIndex]);
          }
          if (alibiSlopes !== null) s = f(s + f(-slope * (position - j)));
          const p = exp32(f(s - rowLse));
          const vBase = (kBase + j) * Dv;
          let dP = 0;
          for (let d = 0; d < Dv; d++) {
            dP = f(dP + f(dO[row * Dv + d] * v[vBase + d]));
            gradV[vBase + d] = f(gradV[vBase + d] + f(p * dO[row * Dv + d]));
          }
          const dS = f(p * f(dP - Di));
          if (gradBias !== undefined) gradBias[biasIndex] = f(gradBias[biasIndex] + dS);
          const dR = f(scale * (cap === null ? dS : f(dS * f(1 - f(tanh * tanh)))));
          for (let d = 0; d < D; d++) {
            gradQ[row * D + d] = f(gradQ[row * D + d] + f(dR * k[(kBase + j) * D + d]));
            gradK[(kBase + j) * D + d] = f(gradK[(kBase + j) * D + d] + f(dR * q[row * D + d]));
          }
        }
      }
    }
  }
  return { gradQ, gradK, gradV, ...(gradBias && { gradBias }), ...(gradSinks && { gradSinks }) };
}
