import {
  type AttentionBackwardProblem,
  type AttentionGradients,
  allocating,
  kvHeadFor,
  queryPosition,
  visibleKeyRange,
} from '@attnkit/spec';

/** A result array; an engine that cannot allocate it rejects with `unavailable` naming it. */
function float64(what: string, elements: number): Float64Array {
  return allocating('attentionBackward', what, elements * 8, () => new Float64Array(elements));
}

/**
 * The backward pass in float64, one query row at a time, never an `Lq x Lk` buffer: one row of
 * `Lk` scores (reused) and float64 accumulators the size of the gradients.
 *
 * The cpu backend is float64 inside and declares fudge 0, so it does not trust the float32 `lse` and
 * `output` it is handed (their rounding alone would cost up to `|lse| * 2^-24` relative in P, above
 * its rtol for logits past ~100): it recomputes each row's statistics and output in float64 from the
 * scores it needs anyway, then differentiates (spec `referenceAttentionBackwardProblem64`):
 *
 * ```text
 * pass 1 (visible keys): s_j, m = max(s, sink), den, O_i = sum_j e_j v_j / den, lse = m + ln(den)
 * D_i = dot(dO_i, O_i)
 * pass 2: P_j = exp(s_j - lse), dP_j = dot(dO_i, v_j), dS_j = P_j (dP_j - D_i)
 *         dV_j += P_j dO_i, dBias += dS_j, dR_j = dS_j (1 - tanh^2) with softcap,
 *         dQ_i += scale dR_j k_j, dK_j += scale dR_j q_i;  dSink_h -= P_sink D_i
 * ```
 * Flops per visible pair: `3 (D + Dv)` multiply-adds, three times the forward's.
 */
export function rowwiseBackward(problem: AttentionBackwardProblem): AttentionGradients {
  const {
    batch: B,
    queryHeads: Hq,
    kvHeads: Hkv,
    queryLength: Lq,
    keyLength: Lk,
    headDim: D,
    valueDim: Dv,
  } = problem.shape;
  const { q, k, v, gradOutput: dO, scale, softcap, bias, alibiSlopes, sinks, keyMask } = problem;
  const gradQ = new Float32Array(B * Hq * Lq * D);
  const gradK = float64('gradK accumulator', B * Hkv * Lk * D);
  const gradV = float64('gradV accumulator', B * Hkv * Lk * Dv);
  const gradBias = bias === null ? null : float64('gradBias accumulator', bias.data.length);
  const gradSinks = sinks === null ? null : new Float64Array(Hq);
  const scores = float64('score row', Lk);
  const tanhRow = softcap === null ? null : float64('softcap row', Lk);
  const rowQ = new Float64Array(D);
  const rowO = new Float64Array(Dv);
  const [sb, sh, si, sj] = bias === null ? [0, 0, 0, 0] : bias.strides;

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const g = kvHeadFor(h, Hq, Hkv);
      const kBase = (b * Hkv + g) * Lk;
      const slope = alibiSlopes === null ? 0 : alibiSlopes[h];
      const sink = sinks === null ? Number.NEGATIVE_INFINITY : sinks[h];
      for (let i = 0; i < Lq; i++) {
        const row = (b * Hq + h) * Lq + i;
        const position = queryPosition(i, Lq, Lk);
        const { start, end } = visibleKeyRange(position, Lk, problem.causal, problem.slidingWindow);
        const qo = row * D;
        // pass 1: scores of the visible keys (masked ones -inf), their max and the denominator
        let max = sink;
        for (let j = start; j < end; j++) {
          if (keyMask !== null && keyMask[b * Lk + j] === 0) {
            scores[j] = Number.NEGATIVE_INFINITY;
            continue;
          }
          const ko = (kBase + j) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qo + d] * k[ko + d];
          let s = scale * dot;
          if (tanhRow !== null && softcap !== null) {
            const t = Math.tanh(s / softcap);
            tanhRow[j] = t;
            s = softcap * t;
          }
          if (bias !== null) s += bias.data[b * sb + h * sh + i * si + j * sj];
          if (alibiSlopes !== null) s += -slope * (position - j);
          scores[j] = s;
          max = Math.max(max, s); // NaN-propagating, as the reference
        }
        if (max === Number.NEGATIVE_INFINITY) continue; // nothing visible, no sink: zero gradients
        let denominator = sinks === null ? 0 : Math.exp(sink - max);
        for (let j = start; j < end; j++) denominator += Math.exp(scores[j] - max);
        const lse = max + Math.log(denominator);
        rowO.fill(0);
        for (let j = start; j < end; j++) {
          const w = Math.exp(scores[j] - max) / denominator;
          if (w === 0) continue; // a masked key: 0 * v must not turn an infinite v into NaN
          const vo = (kBase + j) * Dv;
          for (let d = 0; d < Dv; d++) rowO[d] += w * v[vo + d];
        }
        const go = row * Dv;
        let Di = 0;
        for (let d = 0; d < Dv; d++) Di += dO[go + d] * rowO[d];
        if (gradSinks !== null) gradSinks[h] += -Math.exp(sink - lse) * Di;
        // pass 2: the derivative, key by key
        rowQ.fill(0);
        for (let j = start; j < end; j++) {
          if (keyMask !== null && keyMask[b * Lk + j] === 0) continue;
          const p = Math.exp(scores[j] - lse);
          const vo = (kBase + j) * Dv;
          let dP = 0;
          for (let d = 0; d < Dv; d++) {
            const grad = dO[go + d];
            dP += grad * v[vo + d];
            gradV[vo + d] += p * grad;
          }
          const dS = p * (dP - Di);
          if (gradBias !== null) gradBias[b * sb + h * sh + i * si + j * sj] += dS;
          let dR = dS;
          if (tanhRow !== null) {
            const t = tanhRow[j];
            dR = dS * (1 - t * t);
          }
          const factor = scale * dR;
          const ko = (kBase + j) * D;
          for (let d = 0; d < D; d++) {
            rowQ[d] += factor * k[ko + d];
            gradK[ko + d] += factor * q[qo + d];
          }
        }
        for (let d = 0; d < D; d++) gradQ[qo + d] = rowQ[d];
      }
    }
  }
  return {
    gradQ,
    gradK: Float32Array.from(gradK),
    gradV: Float32Array.from(gradV),
    ...(gradBias !== null && { gradBias: Float32Array.from(gradBias) }),
    ...(gradSinks !== null && { gradSinks: Float32Array.from(gradSinks) }),
  };
}
