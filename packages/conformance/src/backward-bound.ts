import {
  type AttentionProblem,
  kvHeadFor,
  queryPosition,
  referenceAttentionProblem64,
  shapeSymbols,
  visibleKeyRange,
} from '@attnkit/spec';

/** Unit roundoff of binary32 with round-to-nearest. */
const U32 = 2 ** -24;

/** Per row of each gradient (the rows `compareGradients` compares over), the bound of {@link logitErrorBound}. */
export interface GradientErrorBound {
  gradQ: Float64Array;
  gradK: Float64Array;
  gradV: Float64Array;
  gradBias?: Float64Array;
  gradSinks?: Float64Array;
}

/**
 * First-order bound of what float32 logits cost a fused backward pass, per row of each gradient.
 *
 * A FlashAttention-style backward recomputes every probability as `P~ = exp(s~ - lse~)` from its
 * own float32 logits `s~` and the float32 `lse~` its forward returned. Unless the forward rounded
 * the very same logits the same way (other blocking, sum order or threads, and it does not), the
 * two errors do not cancel, so `P~_ij = P_ij (1 + eps_ij)` with, to first order,
 *
 * ```text
 * eps_ij <= u (sqrt(D) * |scale| * sum_d |q_id k_jd|  +  |s_ij|  +  2 |lse_i|)      u = 2^-24
 * ```
 *
 * — the dot product's roundings (a float32 sum of D products: about sqrt(D) roundings at the size of
 * `sum |q k|`, the usual probabilistic growth; `|scale|` after it), one rounding at the size of the
 * finished logit (scale, softcap, bias and ALiBi adds), and one ulp of the handed-over lse. The
 * error grows with the logits: at `|s| ~ 40` it is ~1e-5 per probability, beyond any fixed rtol.
 * Propagated through `dS = P (dP - D_i)` (with `D_i = sum_j P_ij dP_ij`, which a kernel may form from
 * its P or from the output; both move by `dD_i <= sum_j P_ij |dP_ij| eps_ij`):
 *
 * ```text
 * a_ij      = P_ij (eps_ij |dP_ij - D_i| + dD_i)       the error of dS_ij (softcap's 1 - tanh^2 <= 1)
 * gradQ_i  += |scale| sum_j a_ij |k_j|      gradK_j += |scale| sum_i a_ij |q_i|
 * gradV_j  += sum_i P_ij eps_ij |dO_i|      gradBias += a_ij over its broadcast dimensions
 * gradSink += sum_i P_sink,i (2u |lse_i| |D_i| + dD_i)
 * ```
 *
 * taken per element, then the largest in each row (`gradQ`/`gradK` rows of D, `gradV` of Dv,
 * `gradBias` of its last axis, one per sink). Everything is evaluated in float64 on the exact
 * values. `compareGradients` takes the larger of this and the naive float32 backward's error as a
 * row's yardstick `err32`, times the declared fudge: the naive composition measures the other
 * roundings (the dP and D dot products, the sums into the gradients), but its logit errors cancel,
 * because its backward recomputes them exactly as its forward rounded them. Non-finite inputs
 * contribute nothing: a gradient they reach is non-finite and compared exactly.
 */
export function logitErrorBound(
  problem: AttentionProblem,
  gradOutput: ArrayLike<number>,
): GradientErrorBound {
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(problem.shape);
  const { q, k, v, softcap, bias, alibiSlopes, sinks, keyMask } = problem;
  const scale = Math.abs(problem.scale);
  const forward = referenceAttentionProblem64({ ...problem, returnLse: true, returnWeights: false });
  const O = forward.output;
  const lse = forward.lse as Float64Array;
  const dO = gradOutput;
  const growth = Math.sqrt(D);
  const gradQ = new Float64Array(B * Hq * Lq * D);
  const gradK = new Float64Array(B * Hkv * Lk * D);
  const gradV = new Float64Array(B * Hkv * Lk * Dv);
  const gradBias = bias === null ? undefined : new Float64Array(bias.data.length);
  const gradSinks = sinks === null ? undefined : new Float64Array(Hq);
  const finite = (x: number) => (Number.isFinite(x) ? x : 0);
  // one row's visible keys: P, dP and eps, reused across rows
  const p = new Float64Array(Lk);
  const dP = new Float64Array(Lk);
  const eps = new Float64Array(Lk);

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const kBase = (b * Hkv + kvHeadFor(h, Hq, Hkv)) * Lk;
      for (let i = 0; i < Lq; i++) {
        const row = (b * Hq + h) * Lq + i;
        const rowLse = lse[row];
        if (!Number.isFinite(rowLse)) continue;
        let Di = 0;
        for (let d = 0; d < Dv; d++) Di += dO[row * Dv + d] * O[row * Dv + d];
        Di = finite(Di);
        const position = queryPosition(i, Lq, Lk);
        const range = visibleKeyRange(position, Lk, problem.causal, problem.slidingWindow);
        let dD = 0;
        for (let j = range.start; j < range.end; j++) {
          p[j] = 0;
          if (keyMask !== null && keyMask[b * Lk + j] === 0) continue;
          let dot = 0;
          let absDot = 0;
          for (let d = 0; d < D; d++) {
            const product = q[row * D + d] * k[(kBase + j) * D + d];
            dot += product;
            absDot += Math.abs(product);
          }
          let s = problem.scale * dot;
          if (softcap !== null) s = softcap * Math.tanh(s / softcap);
          if (bias !== null) {
            const [sb, sh, si, sj] = bias.strides;
            s += bias.data[b * sb + h * sh + i * si + j * sj];
          }
          if (alibiSlopes !== null) s += -alibiSlopes[h] * (position - j);
          let dp = 0;
          for (let d = 0; d < Dv; d++) dp += dO[row * Dv + d] * v[(kBase + j) * Dv + d];
          p[j] = finite(Math.exp(s - rowLse));
          dP[j] = finite(dp);
          eps[j] = finite(U32 * (growth * scale * absDot + Math.abs(s) + 2 * Math.abs(rowLse)));
          dD += p[j] * Math.abs(dP[j]) * eps[j];
        }
        if (gradSinks !== undefined && sinks !== null) {
          const pSink = finite(Math.exp(sinks[h] - rowLse));
          gradSinks[h] += pSink * (2 * U32 * Math.abs(rowLse) * Math.abs(Di) + dD);
        }
        for (let j = range.start; j < range.end; j++) {
          if (p[j] === 0) continue;
          const a = p[j] * (eps[j] * Math.abs(dP[j] - Di) + dD);
          const kRow = (kBase + j) * D;
          for (let d = 0; d < D; d++) {
            gradQ[row * D + d] += scale * a * finite(Math.abs(k[kRow + d]));
            gradK[kRow + d] += scale * a * finite(Math.abs(q[row * D + d]));
          }
          const vRow = (kBase + j) * Dv;
          for (let d = 0; d < Dv; d++) gradV[vRow + d] += p[j] * eps[j] * finite(Math.abs(dO[row * Dv + d]));
          if (gradBias !== undefined && bias !== null) {
            const [sb, sh, si, sj] = bias.strides;
            gradBias[b * sb + h * sh + i * si + j * sj] += a;
          }
        }
      }
    }
  }
  return {
    gradQ: rowMax(gradQ, D),
    gradK: rowMax(gradK, D),
    gradV: rowMax(gradV, Dv),
    ...(gradBias && bias && { gradBias: rowMax(gradBias, bias.shape[3]) }),
    ...(gradSinks && { gradSinks }),
  };
}

/** The largest value in each row of `rowLength`. */
function rowMax(values: Float64Array, rowLength: number): Float64Array {
  const rows = new Float64Array(Math.ceil(values.length / rowLength));
  for (let index = 0; index < values.length; index++) {
    const row = Math.floor(index / rowLength);
    if (values[index] > rows[row]) rows[row] = values[index];
  }
  return rows;
}
