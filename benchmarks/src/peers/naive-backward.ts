import type { ForwardPass, GradientSet } from '../subject.js';
import type { WorkloadInputs } from '../workloads.js';

/**
 * The backward a user would write from the textbook formulas, in plain float64 loops: per head, the
 * full probability matrix `P` and its gradient `dS` as `Lq x Lk` buffers, then one matrix product per
 * gradient (`dV = P^T dO`, `dQ = scale dS K`, `dK = scale dS^T Q`). No tiling, no fusion, no attnkit:
 * the "what you would write yourself" peer of the backward mode. Causal pairs that are masked are
 * skipped (the naive forward skips them too), so it is not charged for work it need not do.
 */

/** The naive forward with its log-sum-exp: the three loops of the naive peer, plus `lse = max + log(sum)`. */
export function naiveForwardWithLse(inputs: WorkloadInputs, causal: boolean): ForwardPass {
  const { q, k, v, shape } = inputs;
  const { queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, keyLength: Lk, headDim: D, valueDim: Dv } = shape;
  const scale = 1 / Math.sqrt(D);
  const group = Hq / Hkv;
  const offset = Lk - Lq;
  const output = new Float32Array(Hq * Lq * Dv);
  const lse = new Float32Array(Hq * Lq);
  const scores = new Float64Array(Lk);
  const row = new Float64Array(Dv);
  for (let h = 0; h < Hq; h++) {
    const g = Math.floor(h / group);
    for (let i = 0; i < Lq; i++) {
      const qBase = (h * Lq + i) * D;
      const end = causal ? Math.min(Lk, i + offset + 1) : Lk;
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < end; j++) {
        const kBase = (g * Lk + j) * D;
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[qBase + d] * k[kBase + d];
        scores[j] = dot * scale;
        if (scores[j] > max) max = scores[j];
      }
      let sum = 0;
      for (let j = 0; j < end; j++) {
        scores[j] = Math.exp(scores[j] - max);
        sum += scores[j];
      }
      row.fill(0);
      for (let j = 0; j < end; j++) {
        const p = scores[j] / sum;
        const vBase = (g * Lk + j) * Dv;
        for (let d = 0; d < Dv; d++) row[d] += p * v[vBase + d];
      }
      output.set(row, (h * Lq + i) * Dv);
      lse[h * Lq + i] = end === 0 ? Number.NEGATIVE_INFINITY : max + Math.log(sum);
    }
  }
  return { output, lse };
}

/** The naive backward from the forward's output and lse (float64 arithmetic, float32 results). */
export function naiveBackward(
  inputs: WorkloadInputs,
  causal: boolean,
  gradOutput: Float32Array,
  forward: ForwardPass,
): GradientSet {
  const { q, k, v, shape } = inputs;
  const { queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, keyLength: Lk, headDim: D, valueDim: Dv } = shape;
  const { output: O, lse } = forward;
  if (lse === null) throw new Error('naive backward: the forward gave no lse');
  const dO = gradOutput;
  const scale = 1 / Math.sqrt(D);
  const group = Hq / Hkv;
  const offset = Lk - Lq;
  // the Lq x Lk buffers the naive formulation needs (one head at a time)
  const P = new Float64Array(Lq * Lk);
  const dS = new Float64Array(Lq * Lk);
  const gradQ = new Float64Array(Hq * Lq * D);
  const gradK = new Float64Array(Hkv * Lk * D);
  const gradV = new Float64Array(Hkv * Lk * Dv);
  for (let h = 0; h < Hq; h++) {
    const g = Math.floor(h / group);
    const qHead = h * Lq;
    const kHead = g * Lk;
    const end = (i: number) => (causal ? Math.min(Lk, i + offset + 1) : Lk);
    // P = exp(scale Q K^T - lse), dS = P * (dO V^T - rowsum(dO * O))
    for (let i = 0; i < Lq; i++) {
      const rowLse = lse[qHead + i];
      const e = rowLse === Number.NEGATIVE_INFINITY ? 0 : end(i);
      let Di = 0;
      for (let d = 0; d < Dv; d++) Di += dO[(qHead + i) * Dv + d] * O[(qHead + i) * Dv + d];
      for (let j = 0; j < e; j++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[(qHead + i) * D + d] * k[(kHead + j) * D + d];
        const p = Math.exp(dot * scale - rowLse);
        let dP = 0;
        for (let d = 0; d < Dv; d++) dP += dO[(qHead + i) * Dv + d] * v[(kHead + j) * Dv + d];
        P[i * Lk + j] = p;
        dS[i * Lk + j] = p * (dP - Di);
      }
    }
    // dV = P^T dO; dQ = scale dS K; dK = scale dS^T Q
    for (let i = 0; i < Lq; i++) {
      const e = lse[qHead + i] === Number.NEGATIVE_INFINITY ? 0 : end(i);
      for (let j = 0; j < e; j++) {
        const p = P[i * Lk + j];
        const ds = dS[i * Lk + j] * scale;
        for (let d = 0; d < Dv; d++) gradV[(kHead + j) * Dv + d] += p * dO[(qHead + i) * Dv + d];
        for (let d = 0; d < D; d++) {
          gradQ[(qHead + i) * D + d] += ds * k[(kHead + j) * D + d];
          gradK[(kHead + j) * D + d] += ds * q[(qHead + i) * D + d];
        }
      }
    }
  }
  return {
    gradQ: Float32Array.from(gradQ),
    gradK: Float32Array.from(gradK),
    gradV: Float32Array.from(gradV),
  };
}
