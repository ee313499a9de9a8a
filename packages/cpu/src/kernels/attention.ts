import {
  type AttentionProblem,
  type AttentionResult,
  allocating,
  shapeSymbols,
  visibleKeyRange,
} from '@attnkit/spec';
import type { Scratch } from '../scratch.js';

/** Tile sizes of the blocked kernel. */
export interface BlockSizes {
  /** Query rows per head in one block; `null` picks one from the GQA group size. */
  queryBlock: number | null;
  /** Keys per tile. */
  keyBlock: number;
}

/** A result array; an engine that cannot allocate it rejects with `unavailable` naming it. */
function float32(what: string, elements: number): Float32Array {
  return allocating('attention', what, elements * 4, () => new Float32Array(elements));
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
 * Raw dot products `q_row . k_j` for keys `[js, je)`, written to `out[base + j]`. Four keys at a time
 * so each query element is loaded once per four multiply-adds. Each dot sums over `d` in order, so a
 * key's score has the same bits whichever group of four (or {@link dots2} pair) it falls in.
 */
export function dots1(
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

/** {@link dots1} for two query rows at once (2 x 4 register block: six loads per eight multiply-adds). */
export function dots2(
  q: Float32Array,
  qa: number,
  qb: number,
  k: Float32Array,
  kBase: number,
  D: number,
  js: number,
  je: number,
  out: Float64Array,
  baseA: number,
  baseB: number,
): void {
  let j = js;
  for (; j + 3 < je; j += 4) {
    const k0 = (kBase + j) * D;
    const k1 = k0 + D;
    const k2 = k1 + D;
    const k3 = k2 + D;
    let a0 = 0;
    let a1 = 0;
    let a2 = 0;
    let a3 = 0;
    let b0 = 0;
    let b1 = 0;
    let b2 = 0;
    let b3 = 0;
    for (let d = 0; d < D; d++) {
      const x = q[qa + d];
      const y = q[qb + d];
      const c0 = k[k0 + d];
      const c1 = k[k1 + d];
      const c2 = k[k2 + d];
      const c3 = k[k3 + d];
      a0 += x * c0;
      a1 += x * c1;
      a2 += x * c2;
      a3 += x * c3;
      b0 += y * c0;
      b1 += y * c1;
      b2 += y * c2;
      b3 += y * c3;
    }
    out[baseA + j] = a0;
    out[baseA + j + 1] = a1;
    out[baseA + j + 2] = a2;
    out[baseA + j + 3] = a3;
    out[baseB + j] = b0;
    out[baseB + j + 1] = b1;
    out[baseB + j + 2] = b2;
    out[baseB + j + 3] = b3;
  }
  for (; j < je; j++) {
    const k0 = (kBase + j) * D;
    let a = 0;
    let b = 0;
    for (let d = 0; d < D; d++) {
      const c = k[k0 + d];
      a += q[qa + d] * c;
      b += q[qb + d] * c;
    }
    out[baseA + j] = a;
    out[baseB + j] = b;
  }
}

/**
 * Turns raw dots `out[base + j]`, `j` in `[js, je)`, into logits in the spec's order: scale, softcap,
 * bias, ALiBi, then the key mask sets `-inf`. Returns their max (NaN-propagating).
 */
function finishScores(
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
  const { scale, softcap, bias, alibiSlopes, keyMask } = p;
  let max = NEG_INF;
  const biasData = bias === null ? null : bias.data;
  const biasRow = bias === null ? 0 : b * bias.strides[0] + h * bias.strides[1] + i * bias.strides[2];
  const biasStep = bias === null ? 0 : bias.strides[3];
  const slope = alibiSlopes === null ? 0 : alibiSlopes[h];
  const maskBase = b * p.shape.keyLength;
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

/** Offset of query row `i` of head `h` in `q` (and, times `Dv / D`, in the output). */
function rowIndex(p: AttentionProblem, b: number, h: number, i: number): number {
  return (b * p.shape.queryHeads + h) * p.shape.queryLength + i;
}

/**
 * Blocked attention with an online softmax (FlashAttention's schedule on a CPU): for each block of
 * query rows (all heads of one kv group together, so a K/V tile is read from cache once per group),
 * walk the key tiles that `causal`/`slidingWindow` leave visible, keep a running max and denominator
 * per row, rescale the accumulators when the max grows. Rows go four at a time through register-
 * blocked dot and value loops. Scores and accumulators are float64; no `Lq x Lk` buffer exists
 * unless `returnWeights` asks for one (then a second pass fills it).
 */
export function blockedAttention(p: AttentionProblem, scratch: Scratch, sizes: BlockSizes): AttentionResult {
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(p.shape);
  const G = Hq / Hkv;
  const br = queryBlockFor(sizes, G);
  const bk = sizes.keyBlock;
  const output = float32('output', B * Hq * Lq * Dv);
  const lse = p.returnLse ? float32('lse', B * Hq * Lq) : null;
  const weights = p.returnWeights ? float32('weights', B * Hq * Lq * Lk) : null;
  allocating('attention', 'scratch', scratch.attentionBytes(G * br, br, bk, Dv, Lk), () =>
    scratch.ensureAttention(G * br, br, bk, Dv, Lk),
  );
  const { scores, rowMax, rowSum, acc, keyIndex, keyProb, rangeStart, rangeEnd, nonFinite } = scratch;
  const { q, k, v, sinks } = p;
  const offset = Lk - Lq;

  /**
   * Folds the logits of row `r` over its own keys `[a, e)` into its running max and sum, rescales its
   * accumulator, and leaves the probabilities in `scores[base + j]` for the whole hull `[js, je)`
   * (zeros outside `[a, e)`), ready for a dense value pass.
   */
  const update = (r: number, base: number, js: number, je: number, a: number, e: number, tileMax: number) => {
    const mOld = rowMax[r];
    const mNew = Math.max(mOld, tileMax);
    if (a >= e || mNew === NEG_INF) {
      // No finite logit yet: exp(-inf - -inf) would be NaN, and these keys weigh exactly 0
      scores.fill(0, base + js, base + je);
      return;
    }
    scores.fill(0, base + js, base + a);
    scores.fill(0, base + e, base + je);
    const alpha = Math.exp(mOld - mNew);
    let sum = 0;
    for (let j = a; j < e; j++) {
      const x = Math.exp(scores[base + j] - mNew);
      scores[base + j] = x;
      sum += x;
    }
    rowSum[r] = rowSum[r] * alpha + sum;
    rowMax[r] = mNew;
    const ao = r * Dv;
    if (alpha === 0) {
      // Everything so far now weighs exactly 0: drop it rather than multiply (Infinity * 0 = NaN)
      acc.fill(0, ao, ao + Dv);
    } else if (alpha !== 1) {
      for (let d = 0; d < Dv; d++) acc[ao + d] *= alpha;
    }
  };

  /** Value pass for one row that skips keys of probability exactly 0 (0 * Infinity must not happen). */
  const valuesSparse = (r: number, base: number, js: number, je: number, vBase: number) => {
    let count = 0;
    for (let j = js; j < je; j++) {
      const x = scores[base + j];
      if (x !== 0) {
        keyIndex[count] = j;
        keyProb[count] = x;
        count++;
      }
    }
    const ao = r * Dv;
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
  };

  /**
   * Dense value pass for four rows (4 x 4 register block). Only used where every value row of the hull
   * is finite: then a probability of 0 adds exactly 0, the same as skipping the key.
   */
  const values4 = (r0: number, base0: number, js: number, je: number, vBase: number, rowStride: number) => {
    const a0 = r0 * Dv;
    const a1 = a0 + Dv;
    const a2 = a1 + Dv;
    const a3 = a2 + Dv;
    const s0 = base0;
    const s1 = s0 + rowStride;
    const s2 = s1 + rowStride;
    const s3 = s2 + rowStride;
    let j = js;
    for (; j + 3 < je; j += 4) {
      const v0 = (vBase + j) * Dv;
      const v1 = v0 + Dv;
      const v2 = v1 + Dv;
      const v3 = v2 + Dv;
      const p00 = scores[s0 + j];
      const p01 = scores[s0 + j + 1];
      const p02 = scores[s0 + j + 2];
      const p03 = scores[s0 + j + 3];
      const p10 = scores[s1 + j];
      const p11 = scores[s1 + j + 1];
      const p12 = scores[s1 + j + 2];
      const p13 = scores[s1 + j + 3];
      const p20 = scores[s2 + j];
      const p21 = scores[s2 + j + 1];
      const p22 = scores[s2 + j + 2];
      const p23 = scores[s2 + j + 3];
      const p30 = scores[s3 + j];
      const p31 = scores[s3 + j + 1];
      const p32 = scores[s3 + j + 2];
      const p33 = scores[s3 + j + 3];
      for (let d = 0; d < Dv; d++) {
        const x0 = v[v0 + d];
        const x1 = v[v1 + d];
        const x2 = v[v2 + d];
        const x3 = v[v3 + d];
        acc[a0 + d] += p00 * x0 + p01 * x1 + p02 * x2 + p03 * x3;
        acc[a1 + d] += p10 * x0 + p11 * x1 + p12 * x2 + p13 * x3;
        acc[a2 + d] += p20 * x0 + p21 * x1 + p22 * x2 + p23 * x3;
        acc[a3 + d] += p30 * x0 + p31 * x1 + p32 * x2 + p33 * x3;
      }
    }
    for (; j < je; j++) {
      const v0 = (vBase + j) * Dv;
      const p0 = scores[s0 + j];
      const p1 = scores[s1 + j];
      const p2 = scores[s2 + j];
      const p3 = scores[s3 + j];
      for (let d = 0; d < Dv; d++) {
        const x = v[v0 + d];
        acc[a0 + d] += p0 * x;
        acc[a1 + d] += p1 * x;
        acc[a2 + d] += p2 * x;
        acc[a3 + d] += p3 * x;
      }
    }
  };

  for (let b = 0; b < B; b++) {
    for (let g = 0; g < Hkv; g++) {
      const kvBase = (b * Hkv + g) * Lk;
      // nonFinite[j] counts value rows before j holding a NaN or an infinity, to tell which tiles
      // may take the dense value pass
      nonFinite[0] = 0;
      for (let j = 0; j < Lk; j++) {
        let bad = 0;
        const v0 = (kvBase + j) * Dv;
        for (let d = 0; d < Dv; d++) {
          const x = v[v0 + d];
          if (x - x !== 0) bad = 1;
        }
        nonFinite[j + 1] = nonFinite[j] + bad;
      }
      for (let i0 = 0; i0 < Lq; i0 += br) {
        const n = Math.min(br, Lq - i0);
        const rows = G * n;
        // The hull of the block's visible ranges: key tiles outside it are skipped without a look
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
            // exp(sink - sink), not 1: an infinite or NaN sink makes the sum NaN, as in the reference
            rowSum[r] = sink === NEG_INF ? 0 : Math.exp(sink - sink);
          }
        }
        acc.fill(0, 0, rows * Dv);

        for (let j0 = unionStart; j0 < unionEnd; j0 += bk) {
          const j1 = Math.min(j0 + bk, unionEnd);
          // Rows r = hh * n + ii go four at a time, consecutive query rows of one head or, when a
          // block has few rows per head (large GQA groups), the same row of neighbouring heads
          let r0 = 0;
          for (; r0 + 3 < rows; r0 += 4) {
            // The hull of the four rows' ranges within this tile
            let js = j1;
            let je = j0;
            for (let x = 0; x < 4; x++) {
              const ii = (r0 + x) % n;
              const a = Math.max(j0, rangeStart[ii]);
              const e = Math.min(j1, rangeEnd[ii]);
              if (a < e) {
                js = Math.min(js, a);
                je = Math.max(je, e);
              }
            }
            if (js >= je) continue;
            const qa = rowIndex(p, b, g * G + Math.floor(r0 / n), i0 + (r0 % n)) * D;
            const qb = rowIndex(p, b, g * G + Math.floor((r0 + 1) / n), i0 + ((r0 + 1) % n)) * D;
            const qc = rowIndex(p, b, g * G + Math.floor((r0 + 2) / n), i0 + ((r0 + 2) % n)) * D;
            const qd = rowIndex(p, b, g * G + Math.floor((r0 + 3) / n), i0 + ((r0 + 3) % n)) * D;
            dots2(q, qa, qb, k, kvBase, D, js, je, scores, r0 * bk - j0, (r0 + 1) * bk - j0);
            dots2(q, qc, qd, k, kvBase, D, js, je, scores, (r0 + 2) * bk - j0, (r0 + 3) * bk - j0);
            for (let x = 0; x < 4; x++) {
              const r = r0 + x;
              const ii = r % n;
              const h = g * G + Math.floor(r / n);
              const base = r * bk - j0;
              const a = Math.max(js, rangeStart[ii]);
              const e = Math.min(je, rangeEnd[ii]);
              const i = i0 + ii;
              const tileMax = a < e ? finishScores(p, b, h, i, offset + i, a, e, scores, base) : NEG_INF;
              update(r, base, js, je, a, e, tileMax);
            }
            if (nonFinite[je] === nonFinite[js]) {
              values4(r0, r0 * bk - j0, js, je, kvBase, bk);
            } else {
              for (let x = 0; x < 4; x++) valuesSparse(r0 + x, (r0 + x) * bk - j0, js, je, kvBase);
            }
          }
          for (; r0 < rows; r0++) {
            const ii = r0 % n;
            const a = Math.max(j0, rangeStart[ii]);
            const e = Math.min(j1, rangeEnd[ii]);
            if (a >= e) continue;
            const h = g * G + Math.floor(r0 / n);
            const base = r0 * bk - j0;
            const i = i0 + ii;
            dots1(q, rowIndex(p, b, h, i) * D, k, kvBase, D, a, e, scores, base);
            const tileMax = finishScores(p, b, h, i, offset + i, a, e, scores, base);
            update(r0, base, a, e, a, e, tileMax);
            valuesSparse(r0, base, a, e, kvBase);
          }
        }

        for (let hh = 0; hh < G; hh++) {
          const h = g * G + hh;
          for (let ii = 0; ii < n; ii++) {
            const r = hh * n + ii;
            const i = i0 + ii;
            const row = rowIndex(p, b, h, i);
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
            if (weights === null) continue;
            const wo = row * Lk;
            if (!Number.isFinite(m)) {
              // Max +Infinity or NaN: the reference divides every logit, masked ones too, by a NaN sum
              weights.fill(Number.NaN, wo, wo + Lk);
              continue;
            }
            // Second pass: the same code recomputes the same score bits, normalised by the final max and sum
            const base = r * bk;
            for (let j0 = rangeStart[ii]; j0 < rangeEnd[ii]; j0 += bk) {
              const j1 = Math.min(j0 + bk, rangeEnd[ii]);
              dots1(q, row * D, k, kvBase, D, j0, j1, scores, base - j0);
              finishScores(p, b, h, i, offset + i, j0, j1, scores, base - j0);
              for (let j = j0; j < j1; j++) weights[wo + j] = Math.exp(scores[base - j0 + j] - m) / l;
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
