import {
  type AttentionBackwardProblem,
  type AttentionGradients,
  allocating,
  kvHeadFor,
  queryPosition,
  shapeSymbols,
  visibleKeyRange,
} from '@attnkit/spec';
import { dots1, dots2 } from './attention.js';

/** An accumulator or row buffer; an engine that cannot allocate it rejects with `unavailable` naming it. */
function float64(what: string, elements: number): Float64Array {
  return allocating('attentionBackward', what, elements * 8, () => new Float64Array(elements));
}

/** Query rows of one head differentiated together: each key's k, v, dK and dV rows are touched once per block. */
const ROWS = 4;
const NEG_INF = Number.NEGATIVE_INFINITY;

/**
 * The backward pass in float64, blocks of {@link ROWS} query rows of one head at a time, never an
 * `Lq x Lk` buffer: `ROWS` rows of `Lk` probabilities (reused) and float64 accumulators the size of
 * the gradients.
 *
 * The cpu backend is float64 inside and declares fudge 0, so it does not trust the float32 `lse` and
 * `output` it is handed (their rounding alone would cost up to `|lse| * 2^-24` relative in P, above
 * its rtol for logits past ~100): it recomputes each row's statistics and output in float64 from the
 * scores it needs anyway, then differentiates (spec `referenceAttentionBackwardProblem64`):
 *
 * ```text
 * pass 1, per row (visible keys): s_j, m = max(s, sink), den, P_j = exp(s_j - lse), O_i = sum_j P_j v_j
 * D_i = dot(dO_i, O_i)
 * pass 2, per key j of the block's visible hull, for the block's rows r together:
 *   dP_rj = dot(dO_r, v_j), dS_rj = P_rj (dP_rj - D_r), dR = dS (1 - tanh^2) with softcap
 *   dV_j += sum_r P_rj dO_r, dK_j += scale sum_r dR_rj q_r, dQ_r += scale dR_rj k_j, dBias += dS
 * dSink_h -= P_sink D_i
 * ```
 * Multiply-adds per visible pair: `3 (D + Dv)` (three forwards), with `k_j`, `v_j`, `dK_j` and `dV_j`
 * read once per block rather than once per row.
 */
export function blockedBackward(problem: AttentionBackwardProblem): AttentionGradients {
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(problem.shape);
  const { q, k, v, gradOutput: dO, scale, softcap, bias, alibiSlopes, sinks, keyMask } = problem;
  const gradQ = new Float32Array(B * Hq * Lq * D);
  const gradK = float64('gradK accumulator', B * Hkv * Lk * D);
  const gradV = float64('gradV accumulator', B * Hkv * Lk * Dv);
  const gradBias = bias === null ? null : float64('gradBias accumulator', bias.data.length);
  const gradSinks = sinks === null ? null : new Float64Array(Hq);
  // probabilities (after pass 1) of each row of the block, and their tanh when softcapped
  const probs = float64('probability rows', ROWS * Lk);
  const tanhs = softcap === null ? null : float64('softcap rows', ROWS * Lk);
  const rowQ = new Float64Array(ROWS * D);
  const rowO = new Float64Array(Dv);
  const rowD = new Float64Array(ROWS);
  const starts = new Int32Array(ROWS);
  const ends = new Int32Array(ROWS);
  const live = new Uint8Array(ROWS);
  const [sb, sh, si, sj] = bias === null ? [0, 0, 0, 0] : bias.strides;

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const g = kvHeadFor(h, Hq, Hkv);
      const kBase = (b * Hkv + g) * Lk;
      const slope = alibiSlopes === null ? 0 : alibiSlopes[h];
      const sink = sinks === null ? NEG_INF : sinks[h];
      for (let i0 = 0; i0 < Lq; i0 += ROWS) {
        const rows = Math.min(ROWS, Lq - i0);
        let hullStart = Lk;
        let hullEnd = 0;
        // pass 1: raw dots, two rows at a time where their ranges allow
        for (let r = 0; r < rows; r++) {
          const range = visibleKeyRange(
            queryPosition(i0 + r, Lq, Lk),
            Lk,
            problem.causal,
            problem.slidingWindow,
          );
          starts[r] = range.start;
          ends[r] = range.end;
        }
        for (let r = 0; r < rows; r++) {
          const qo = ((b * Hq + h) * Lq + i0 + r) * D;
          if (r + 1 < rows) {
            // over the pair's hull: a row's dots outside its own range are computed and never read
            const from = Math.min(starts[r], starts[r + 1]);
            const to = Math.max(ends[r], ends[r + 1]);
            if (from < to) dots2(q, qo, qo + D, k, kBase, D, from, to, probs, r * Lk, (r + 1) * Lk);
            r++;
          } else {
            dots1(q, qo, k, kBase, D, starts[r], ends[r], probs, r * Lk);
          }
        }
        // pass 1, continued: logits, statistics, output and D_i of each row (in float64)
        for (let r = 0; r < rows; r++) {
          const i = i0 + r;
          const row = (b * Hq + h) * Lq + i;
          const position = queryPosition(i, Lq, Lk);
          const base = r * Lk;
          const start = starts[r];
          const end = ends[r];
          let max = sink;
          for (let j = start; j < end; j++) {
            if (keyMask !== null && keyMask[b * Lk + j] === 0) {
              probs[base + j] = NEG_INF;
              continue;
            }
            let s = scale * probs[base + j];
            if (tanhs !== null && softcap !== null) {
              const t = Math.tanh(s / softcap);
              tanhs[base + j] = t;
              s = softcap * t;
            }
            if (bias !== null) s += bias.data[b * sb + h * sh + i * si + j * sj];
            if (alibiSlopes !== null) s += -slope * (position - j);
            probs[base + j] = s;
            max = Math.max(max, s); // NaN-propagating, as the reference
          }
          live[r] = max === NEG_INF ? 0 : 1; // nothing visible, no sink: zero gradients
          if (!live[r]) continue;
          hullStart = Math.min(hullStart, start);
          hullEnd = Math.max(hullEnd, end);
          let denominator = sinks === null ? 0 : Math.exp(sink - max);
          for (let j = start; j < end; j++) denominator += Math.exp(probs[base + j] - max);
          const lse = max + Math.log(denominator);
          rowO.fill(0);
          for (let j = start; j < end; j++) {
            const p = Math.exp(probs[base + j] - lse);
            probs[base + j] = p;
            if (p === 0) continue; // a masked key: 0 * v must not turn an infinite v into NaN
            const vo = (kBase + j) * Dv;
            for (let d = 0; d < Dv; d++) rowO[d] += p * v[vo + d];
          }
          const go = row * Dv;
          let Di = 0;
          for (let d = 0; d < Dv; d++) Di += dO[go + d] * rowO[d];
          rowD[r] = Di;
          if (gradSinks !== null) gradSinks[h] += -Math.exp(sink - lse) * Di;
        }
        // pass 2: each key of the hull once, for every live row of the block that sees it
        rowQ.fill(0);
        const rowBase = (b * Hq + h) * Lq + i0;
        const full = rows === ROWS && live[0] + live[1] + live[2] + live[3] === ROWS;
        for (let j = hullStart; j < hullEnd; j++) {
          if (keyMask !== null && keyMask[b * Lk + j] === 0) continue;
          const vo = (kBase + j) * Dv;
          const ko = (kBase + j) * D;
          if (
            full &&
            j >= Math.max(starts[0], starts[1], starts[2], starts[3]) &&
            j < Math.min(ends[0], ends[1], ends[2], ends[3])
          ) {
            // all four rows see key j: one pass over v_j, dV_j, k_j and dK_j for the four of them
            const g0 = rowBase * Dv;
            const g1 = g0 + Dv;
            const g2 = g1 + Dv;
            const g3 = g2 + Dv;
            let dP0 = 0;
            let dP1 = 0;
            let dP2 = 0;
            let dP3 = 0;
            for (let d = 0; d < Dv; d++) {
              const x = v[vo + d];
              dP0 += dO[g0 + d] * x;
              dP1 += dO[g1 + d] * x;
              dP2 += dO[g2 + d] * x;
              dP3 += dO[g3 + d] * x;
            }
            const p0 = probs[j];
            const p1 = probs[Lk + j];
            const p2 = probs[2 * Lk + j];
            const p3 = probs[3 * Lk + j];
            for (let d = 0; d < Dv; d++) {
              gradV[vo + d] += p0 * dO[g0 + d] + p1 * dO[g1 + d] + p2 * dO[g2 + d] + p3 * dO[g3 + d];
            }
            const dS0 = p0 * (dP0 - rowD[0]);
            const dS1 = p1 * (dP1 - rowD[1]);
            const dS2 = p2 * (dP2 - rowD[2]);
            const dS3 = p3 * (dP3 - rowD[3]);
            if (gradBias !== null) {
              const cell = b * sb + h * sh + i0 * si + j * sj;
              gradBias[cell] += dS0;
              gradBias[cell + si] += dS1;
              gradBias[cell + 2 * si] += dS2;
              gradBias[cell + 3 * si] += dS3;
            }
            let f0 = scale * dS0;
            let f1 = scale * dS1;
            let f2 = scale * dS2;
            let f3 = scale * dS3;
            if (tanhs !== null) {
              const t0 = tanhs[j];
              const t1 = tanhs[Lk + j];
              const t2 = tanhs[2 * Lk + j];
              const t3 = tanhs[3 * Lk + j];
              f0 *= 1 - t0 * t0;
              f1 *= 1 - t1 * t1;
              f2 *= 1 - t2 * t2;
              f3 *= 1 - t3 * t3;
            }
            const q0 = rowBase * D;
            const q1 = q0 + D;
            const q2 = q1 + D;
            const q3 = q2 + D;
            for (let d = 0; d < D; d++) {
              const x = k[ko + d];
              rowQ[d] += f0 * x;
              rowQ[D + d] += f1 * x;
              rowQ[2 * D + d] += f2 * x;
              rowQ[3 * D + d] += f3 * x;
              gradK[ko + d] += f0 * q[q0 + d] + f1 * q[q1 + d] + f2 * q[q2 + d] + f3 * q[q3 + d];
            }
            continue;
          }
          for (let r = 0; r < rows; r++) {
            if (!live[r] || j < starts[r] || j >= ends[r]) continue;
            const i = i0 + r;
            const go = (rowBase + r) * Dv;
            const qo = (rowBase + r) * D;
            const p = probs[r * Lk + j];
            let dP = 0;
            for (let d = 0; d < Dv; d++) {
              const grad = dO[go + d];
              dP += grad * v[vo + d];
              gradV[vo + d] += p * grad;
            }
            const dS = p * (dP - rowD[r]);
            if (gradBias !== null) gradBias[b * sb + h * sh + i * si + j * sj] += dS;
            let dR = dS;
            if (tanhs !== null) {
              const t = tanhs[r * Lk + j];
              dR = dS * (1 - t * t);
            }
            const factor = scale * dR;
            const qr = r * D;
            for (let d = 0; d < D; d++) {
              rowQ[qr + d] += factor * k[ko + d];
              gradK[ko + d] += factor * q[qo + d];
            }
          }
        }
        for (let r = 0; r < rows; r++) {
          const qo = ((b * Hq + h) * Lq + i0 + r) * D;
          for (let d = 0; d < D; d++) gradQ[qo + d] = rowQ[r * D + d];
        }
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
