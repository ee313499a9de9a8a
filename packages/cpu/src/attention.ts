import { type AttentionProblem, type AttentionResult, visibleKeyRange } from '@attnkit/spec';
import type { Scratch } from './scratch.js';

/** Tile sizes of the blocked kernel. */
export interface BlockSizes {
  /** Query rows per head in one block; `null` picks one from the GQA group size. */
  queryBlock: number | null;
  /** Keys per tile. */
  keyBlock: number;
}

/** Rows (heads of one kv group times query rows) a block aims for when `queryBlock` is not set. */
const TARGET_BLOCK_ROWS = 64;
const MAX_QUERY_BLOCK = 32;
const NEG_INF = Number.NEGATIVE_INFINITY;

/** Query rows per head in a block: the whole GQA group shares a K/V tile, so fewer rows per head when it is large. */
export function queryBlockFor(sizes: BlockSizes, groupSize: number): number {
  if (sizes.queryBlock !== null) return sizes.queryBlock;
  return Math.max(1, Math.min(MAX_QUERY_BLOCK, Math.floor(TARGET_BLOCK_ROWS / groupSize)));
}

/**
 * Raw dot products `q_row . k_j` for keys `[js, je)`, written to `out[base + j - j0]`. Four keys at a
 * time so each query element is loaded once per four multiply-adds; each dot still sums over `d` in
 * order, so a key's score has the same bits whichever group of four it falls in.
 */
function dots(
  q: Float32Array,
  qo: number,
  k: Float32Array,
  kBase: number,
  D: number,
  js: number,
  je: number,
  out: Float64Array,
  base: number,
): void {
  let j = js;
  for (; j + 3 < je; j += 4) {
    const k0 = (kBase + j) * D;
    const k1 = k0 + D;
    const k2 = k1 + D;
    const k3 = k2 + D;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    for (let d = 0; d < D; d++) {
      const x = q[qo + d];
      s0 += x * k[k0 + d];
      s1 += x * k[k1 + d];
      s2 += x * k[k2 + d];
      s3 += x * k[k3 + d];
    }
    out[base + j] = s0;
    out[base + j + 1] = s1;
    out[base + j + 2] = s2;
    out[base + j + 3] = s3;
  }
  for (; j < je; j++) {
    const k0 = (kBase + j) * D;
    let s = 0;
    for (let d = 0; d < D; d++) s += q[qo + d] * k[k0 + d];
    out[base + j] = s;
  }
}

/**
 * Scores of one query row for keys `[js, je)`, in the spec's order: scale, softcap, bias, ALiBi, then
 * the key mask sets `-inf`. Written to `out[base + j]`; returns their max (NaN-propagating).
 */
function scoreRow(
  p: AttentionProblem,
  b: number,
  h: number,
  i: number,
  position: number,
  js: number,
  je: number,
  out: Float64Array,
  base: number,
): number {
  const { batch: _B, queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, keyLength: Lk, headDim: D } = p.shape;
  const g = Math.floor(h / (Hq / Hkv));
  dots(p.q, ((b * Hq + h) * Lq + i) * D, p.k, (b * Hkv + g) * Lk, D, js, je, out, base);
  const { scale, softcap, bias, alibiSlopes, keyMask } = p;
  let max = NEG_INF;
  const biasData = bias === null ? null : bias.data;
  const biasRow = bias === null ? 0 : b * bias.strides[0] + h * bias.strides[1] + i * bias.strides[2];
  const biasStep = bias === null ? 0 : bias.strides[3];
  const slope = alibiSlopes === null ? 0 : alibiSlopes[h];
  const maskBase = b * Lk;
  for (let j = js; j < je; j++) {
    let s = scale * out[base + j];
    if (softcap !== null) s = softcap * Math.tanh(s / softcap);
    if (biasData !== null) s += biasData[biasRow + j * biasStep];
    if (alibiSlopes !== null) s += -slope * (position - j);
    if (keyMask !== null && keyMask[maskBase + j] === 0) s = NEG_INF;
    out[base + j] = s;
    // Math.max, not `>`: a NaN score must poison the row as it does in the reference
    max = Math.max(max, s);
  }
  return max;
}

/**
 * Blocked attention with an online softmax (FlashAttention's schedule on a CPU): for each block of
 * query rows (all heads of one kv group together, so a K/V tile is read from cache once per group),
 * walk the key tiles that `causal`/`slidingWindow` leave visible, keep a running max and denominator
 * per row, rescale the accumulators when the max grows. Scores and accumulators are float64; no
 * `Lq x Lk` buffer exists unless `returnWeights` asks for one (then a second pass fills it).
 */
export function blockedAttention(p: AttentionProblem, scratch: Scratch, sizes: BlockSizes): AttentionResult {
  const { batch: B, queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, keyLength: Lk, valueDim: Dv } = p.shape;
  const G = Hq / Hkv;
  const br = queryBlockFor(sizes, G);
  const bk = sizes.keyBlock;
  const output = new Float32Array(B * Hq * Lq * Dv);
  const lse = p.returnLse ? new Float32Array(B * Hq * Lq) : null;
  const weights = p.returnWeights ? new Float32Array(B * Hq * Lq * Lk) : null;
  scratch.ensureAttention(G * br, br, bk, Dv);
  const { scores, rowMax, rowSum, acc, keyIndex, keyProb, rangeStart, rangeEnd } = scratch;
  const { v, sinks } = p;
  const offset = Lk - Lq;

  for (let b = 0; b < B; b++) {
    for (let g = 0; g < Hkv; g++) {
      const vBase = (b * Hkv + g) * Lk;
      for (let i0 = 0; i0 < Lq; i0 += br) {
        const n = Math.min(br, Lq - i0);
        const rows = G * n;
        // Visible ranges are monotone in the position, so the block's union is [first start, last end)
        let unionStart = Lk;
        let unionEnd = 0;
        for (let ii = 0; ii < n; ii++) {
          const range = visibleKeyRange(offset + i0 + ii, Lk, p.causal, p.slidingWindow);
          rangeStart[ii] = range.start;
          rangeEnd[ii] = range.end;
          if (range.start < range.end) {
            unionStart = Math.min(unionStart, range.start);
            unionEnd = Math.max(unionEnd, range.end);
          }
        }
        for (let hh = 0; hh < G; hh++) {
          // The sink is a logit with no value: it seeds the max and the denominator
          const sink = sinks === null ? NEG_INF : sinks[g * G + hh];
          for (let ii = 0; ii < n; ii++) {
            const r = hh * n + ii;
            rowMax[r] = sink;
            rowSum[r] = sink === NEG_INF ? 0 : Math.exp(sink - sink);
          }
        }
        acc.fill(0, 0, rows * Dv);

        for (let j0 = unionStart; j0 < unionEnd; j0 += bk) {
          const j1 = Math.min(j0 + bk, unionEnd);
          for (let hh = 0; hh < G; hh++) {
            const h = g * G + hh;
            for (let ii = 0; ii < n; ii++) {
              const js = Math.max(j0, rangeStart[ii]);
              const je = Math.min(j1, rangeEnd[ii]);
              if (js >= je) continue;
              const r = hh * n + ii;
              const base = r * bk - j0;
              const tileMax = scoreRow(p, b, h, i0 + ii, offset + i0 + ii, js, je, scores, base);
              const mOld = rowMax[r];
              const mNew = Math.max(mOld, tileMax);
              // Nothing finite yet: exp(-inf - -inf) would be NaN, and these keys weigh exactly 0
              if (mNew === NEG_INF) continue;
              const alpha = Math.exp(mOld - mNew);
              let count = 0;
              let sum = 0;
              for (let j = js; j < je; j++) {
                const e = Math.exp(scores[base + j] - mNew);
                // A key whose weight is exactly 0 must not touch V (0 * Infinity would be NaN)
                if (e !== 0) {
                  keyIndex[count] = j;
                  keyProb[count] = e;
                  count++;
                  sum += e;
                }
              }
              rowSum[r] = rowSum[r] * alpha + sum;
              rowMax[r] = mNew;
              const ao = r * Dv;
              if (alpha === 0) {
                // Everything so far now weighs exactly 0: drop it rather than multiply (Infinity * 0)
                acc.fill(0, ao, ao + Dv);
              } else if (alpha !== 1) {
                for (let d = 0; d < Dv; d++) acc[ao + d] *= alpha;
              }
              let t = 0;
              for (; t + 3 < count; t += 4) {
                const p0 = keyProb[t];
                const p1 = keyProb[t + 1];
                const p2 = keyProb[t + 2];
                const p3 = keyProb[t + 3];
                const v0 = (vBase + keyIndex[t]) * Dv;
                const v1 = (vBase + keyIndex[t + 1]) * Dv;
                const v2 = (vBase + keyIndex[t + 2]) * Dv;
                const v3 = (vBase + keyIndex[t + 3]) * Dv;
                for (let d = 0; d < Dv; d++) {
                  acc[ao + d] += p0 * v[v0 + d] + p1 * v[v1 + d] + p2 * v[v2 + d] + p3 * v[v3 + d];
                }
              }
              for (; t < count; t++) {
                const p0 = keyProb[t];
                const v0 = (vBase + keyIndex[t]) * Dv;
                for (let d = 0; d < Dv; d++) acc[ao + d] += p0 * v[v0 + d];
              }
            }
          }
        }

        for (let hh = 0; hh < G; hh++) {
          const h = g * G + hh;
          for (let ii = 0; ii < n; ii++) {
            const r = hh * n + ii;
            const row = (b * Hq + h) * Lq + i0 + ii;
            const m = rowMax[r];
            const l = rowSum[r];
            if (m === NEG_INF) {
              // No visible key and no sink: zeros (already), lse -inf, weights zeros (already)
              if (lse !== null) lse[row] = NEG_INF;
              continue;
            }
            const ao = r * Dv;
            const oo = row * Dv;
            for (let d = 0; d < Dv; d++) output[oo + d] = acc[ao + d] / l;
            if (lse !== null) lse[row] = m + Math.log(l);
            if (weights !== null) {
              writeWeights(
                p,
                b,
                h,
                i0 + ii,
                offset + i0 + ii,
                rangeStart[ii],
                rangeEnd[ii],
                m,
                l,
                weights,
                scores,
                r * bk,
                bk,
              );
            }
          }
        }
      }
    }
  }
  return {
    output,
    ...(lse !== null && { lse }),
    ...(weights !== null && { weights }),
  };
}

/**
 * Second pass for `returnWeights`: recompute the row's scores tile by tile (same code, same bits) and
 * normalise with the row's final max and denominator.
 */
function writeWeights(
  p: AttentionProblem,
  b: number,
  h: number,
  i: number,
  position: number,
  start: number,
  end: number,
  m: number,
  l: number,
  weights: Float32Array,
  scores: Float64Array,
  slot: number,
  bk: number,
): void {
  const Lk = p.shape.keyLength;
  const wo = ((b * p.shape.queryHeads + h) * p.shape.queryLength + i) * Lk;
  if (!Number.isFinite(m) || Number.isNaN(l)) {
    // The reference divides every logit, masked ones too, by a NaN denominator here
    weights.fill(Number.NaN, wo, wo + Lk);
    return;
  }
  for (let j0 = start; j0 < end; j0 += bk) {
    const j1 = Math.min(j0 + bk, end);
    const base = slot - j0;
    scoreRow(p, b, h, i, position, j0, j1, scores, base);
    for (let j = j0; j < j1; j++) weights[wo + j] = Math.exp(scores[base + j] - m) / l;
  }
}
