/**
 * The WebGL2 forward tile passes on packed layouts: four keys a texel in the scores and probabilities,
 * four value columns a texel in the accumulator. On SwiftShader (and any GPU) a fragment's cost is
 * mostly its texel fetches and its own overhead; one float a texel spent two fetches per four
 * multiply-adds in the dot products and four fragments where one does. Here the scores pass fetches
 * one q texel for four k texels (16 multiply-adds), the accumulate pass one probability texel for
 * four value texels, and every loop runs over the row's visible key range only (rowInfo 8..9), so a
 * causal call does about half the work without smaller chunks.
 *
 * Layouts (set up by run-forward.ts, relied on here):
 * - q, k, v: packed row-major four floats a texel, each row a whole number of texels, and the texture
 *   width a multiple of the row's texels, so a row never wraps a texture line; v has three spare zero
 *   rows after its last so the last group of four keys never reads past the texture.
 * - scores, probs `[tile / 4, rows]`, max `[1, rows]`, acc `[groups, rows]`, with rows >= 2: gpu.js
 *   then sizes the texture exactly `[width, rows]` (one row gets a closest-square texture), so texel
 *   `(x, row)` is element `x` of `row`.
 * - scores hold `a` (the softcapped scaled dot) for a visible key and -inf for a masked one. A visible
 *   `a = -inf` stays -inf, which the softmax weighs 0 like a masked key (exp(-inf - m) = 0), except
 *   where a bias of +inf or NaN makes the logit NaN: then the scores pass stores that NaN (`a + bias`).
 *   The bias and ALiBi terms are otherwise added later, as `((bias - m) + alibi) + a` (see
 *   logitPartsSource in forward.ts for why).
 */
import { defineKernel } from '../gl.js';
import { LOGIT_NATIVE, LOGIT_PARAMS, NATIVE } from './forward.js';

interface GlslFunction {
  name: string;
  source: string;
}

/** A helper of forward.ts by name. */
function helper(name: string): GlslFunction {
  const found = [...NATIVE, ...LOGIT_NATIVE].find((f) => f.name === name);
  if (found === undefined) throw new Error(`no GLSL helper ${name}`);
  return found;
}

/**
 * One gpu.js native function holding `main` and the helpers it calls: gpu.js emits only the natives
 * that the kernel's JavaScript calls, never those a native calls. It reads the name, the return type
 * and the parameters from the first signature in the source, so that comes first, as a prototype.
 */
function bundle(main: GlslFunction, helpers: readonly GlslFunction[]): GlslFunction {
  const prototype = `${main.source.slice(0, main.source.indexOf(')') + 1)};`;
  return { name: main.name, source: [prototype, ...helpers.map((f) => f.source), main.source].join('\n') };
}

/**
 * `attnRowCoord_<input>(row, n)`: the first texel of `row` in packed input `input` whose rows are `n`
 * texels and never wrap a line (the texture width is a multiple of `n`).
 */
function rowCoord(input: string) {
  return {
    name: `attnRowCoord_${input}`,
    source: `ivec2 attnRowCoord_${input}(int row, int n) {
  int perLine = user_${input}Size.x / n;
  int y = row / perLine;
  return ivec2((row - y * perLine) * n, y);
}`,
  };
}

/** Per component: is it NaN? By comparisons, as attnIsNan (GLSL ES `isnan` is not trusted). */
const IS_NAN4 = {
  name: 'attnIsNan4',
  source: `bvec4 attnIsNan4(vec4 v) {
  vec4 z = vec4(0.0);
  return not(bvec4(vec4(lessThan(v, z)) + vec4(greaterThan(v, z)) + vec4(equal(v, z))));
}`,
};

/**
 * Texel `c` of `t`, read through the sampler at the texel's centre rather than by texelFetch; `inv`
 * is 1 / the texture's size. gpu.js filters every texture NEAREST and its own generated getters read
 * this way. SwiftShader's sampler path is the cheaper of the two: the whole packed forward took
 * 12-28 % less with every fetch of this file reading this way (one page, the old and new kernels
 * alternating, both orders, identical errors; N 1024-2048, H 1 and 8). The centre is exact in
 * float for any coordinate below 2^23, and `(c + 0.5) * inv` lands within 2^-9 of a texel of it for
 * textures up to 16384 wide, far inside the half texel either side that NEAREST allows.
 */
const SAMPLE = {
  name: 'attnSample',
  source: `vec4 attnSample(sampler2D t, ivec2 c, vec2 inv) {
  return texture(t, (vec2(c) + 0.5) * inv);
}`,
};

/** `[first, end)` texels of a tile of `T4` texels at key `j0` that hold a key of `[lo, hi)`. */
const TEXEL_RANGE = {
  name: 'attnTexelRange',
  source: `ivec2 attnTexelRange(float lo, float hi, float j0, float T4) {
  int from = int(lo) - int(j0);
  int to = int(hi) - int(j0);
  return ivec2(from <= 0 ? 0 : from / 4, to <= 0 ? 0 : min(int(T4), (to + 3) / 4));
}`,
};

/**
 * The bias and ALiBi parts of key `j`'s logit, `(bias, alibi)`; zeros when absent. Reads the bias
 * only when asked: a masked key's bias may be anything.
 */
const EXTRA = {
  name: 'attnExtra',
  source: `vec2 attnExtra(float j, float pos, float biasRow, float slope, float Lk, float biasKeyStride, float hasBias) {
  vec2 e = vec2(0.0);
  if (hasBias > 0.5) {
    e.x = attnBiasAt(biasRow, j * biasKeyStride, biasKeyStride * (Lk - 1.0) + 1.0);
  }
  if (slope != 0.0) {
    e.y = -slope * (pos - j);
  }
  return e;
}`,
};

/**
 * One key of a scores texel: `a` when visible, -inf when masked; a visible -inf becomes `a + bias`
 * (NaN for a bias of +inf or NaN, -inf otherwise), see the file comment.
 */
const KEY_SCORE = {
  name: 'attnKeyScore',
  source: `float attnKeyScore(float a, int j, float lo, float hi, float batch, float biasRow, float Lk, float biasKeyStride, float hasBias, float hasMask, float negInf) {
  float fj = float(j);
  if (fj < lo || fj >= hi) return negInf;
  if (hasMask > 0.5 && attnMaskAt(batch, fj, Lk) < 0.5) return negInf;
  if (a == negInf && hasBias > 0.5) {
    return a + attnBiasAt(biasRow, fj * biasKeyStride, biasKeyStride * (Lk - 1.0) + 1.0);
  }
  return a;
}`,
};

/**
 * Four keys `j0 + 4x ..` of one row: q's row texels are fetched once for the four k rows. Key rows
 * past the visible range are clamped to its last key (read, then masked), so no fetch leaves k.
 */
const SCORES4 = {
  name: 'attnScores4',
  source: `vec4 attnScores4(float x, float qRow, float kvBase, float lo, float hi, float batch, float biasRow, float j0, float Lk, float biasKeyStride, float hasBias, float hasMask, float negInf, float D4, float scale, float softcap) {
  int jb = int(j0) + int(x) * 4;
  int h = int(hi);
  if (jb >= h || jb + 4 <= int(lo)) return vec4(negInf);
  int n = int(D4);
  int kb = int(kvBase);
  ivec2 qc = attnRowCoord_q(int(qRow), n);
  ivec2 k0 = attnRowCoord_k(kb + min(jb, h - 1), n);
  ivec2 k1 = attnRowCoord_k(kb + min(jb + 1, h - 1), n);
  ivec2 k2 = attnRowCoord_k(kb + min(jb + 2, h - 1), n);
  ivec2 k3 = attnRowCoord_k(kb + min(jb + 3, h - 1), n);
  // through the sampler (see attnSample), the texel centres stepped one texel a dimension group
  vec2 qInv = 1.0 / vec2(user_qSize);
  vec2 kInv = 1.0 / vec2(user_kSize);
  vec2 uq = (vec2(qc) + 0.5) * qInv;
  vec2 u0 = (vec2(k0) + 0.5) * kInv;
  vec2 u1 = (vec2(k1) + 0.5) * kInv;
  vec2 u2 = (vec2(k2) + 0.5) * kInv;
  vec2 u3 = (vec2(k3) + 0.5) * kInv;
  vec4 s = vec4(0.0);
  for (int t = 0; t < n; t++) {
    vec2 dq = vec2(float(t) * qInv.x, 0.0);
    vec2 dk = vec2(float(t) * kInv.x, 0.0);
    vec4 qv = texture(user_q, uq + dq);
    s += vec4(dot(qv, texture(user_k, u0 + dk)), dot(qv, texture(user_k, u1 + dk)),
      dot(qv, texture(user_k, u2 + dk)), dot(qv, texture(user_k, u3 + dk)));
  }
  s = scale * s;
  if (softcap > 0.0) {
    s = vec4(softcap * attnTanh(s.x / softcap), softcap * attnTanh(s.y / softcap),
      softcap * attnTanh(s.z / softcap), softcap * attnTanh(s.w / softcap));
  }
  return vec4(
    attnKeyScore(s.x, jb, lo, hi, batch, biasRow, Lk, biasKeyStride, hasBias, hasMask, negInf),
    attnKeyScore(s.y, jb + 1, lo, hi, batch, biasRow, Lk, biasKeyStride, hasBias, hasMask, negInf),
    attnKeyScore(s.z, jb + 2, lo, hi, batch, biasRow, Lk, biasKeyStride, hasBias, hasMask, negInf),
    attnKeyScore(s.w, jb + 3, lo, hi, batch, biasRow, Lk, biasKeyStride, hasBias, hasMask, negInf));
}`,
};

/**
 * Texel `i` of row `rr` of the row table (ROW_INFO: three texels a row; 0 = qRow, kvBase, position,
 * batch; 1 = bias row, slope, sink; 2 = start, end of the visible keys), read straight from the texture gpu.js uploads it
 * to (flat, four floats a texel): gpu.js's own array read costs more than the texel fetch itself.
 */
const ROW_TEXEL = {
  name: 'attnRowTexel',
  source: `vec4 attnRowTexel(float rr, int i) {
  int t = int(rr) * 3 + i;
  int w = user_rowInfoSize.x;
  return attnSample(user_rowInfo, ivec2(t - (t / w) * w, t / w), 1.0 / vec2(user_rowInfoSize));
}`,
};

/** Row `rr` of a `[1, rows]` output (rows >= 2, see the file comment). */
const atRow = (input: string) =>
  `attnSample(user_${input}, ivec2(0, int(rr)), 1.0 / vec2(user_${input}Size)).r`;

const SCORES_ROW = {
  name: 'attnScoresRow',
  source: `vec4 attnScoresRow(float x, float rr, float j0, float Lk, float biasKeyStride, float hasBias, float hasMask, float negInf, float D4, float scale, float softcap) {
  // the range first: a texel wholly outside it (half of them, causal) needs nothing else
  vec4 c = attnRowTexel(rr, 2);
  float jb = j0 + x * 4.0;
  if (jb >= c.y || jb + 4.0 <= c.x) return vec4(negInf);
  vec4 a = attnRowTexel(rr, 0);
  vec4 b = attnRowTexel(rr, 1);
  return attnScores4(x, a.x, a.y, c.x, c.y, a.w, b.x, j0, Lk, biasKeyStride, hasBias, hasMask, negInf, D4, scale, softcap);
}`,
};

/**
 * Scores of one tile, four keys a texel. Output `[tile / 4, rows]` RGBA; `D` is q and k's row
 * width in texels. Same arguments as the portable scores kernel.
 */
export const scoresPackedKernel = defineKernel({
  name: 'scoresPacked',
  loopMaxIterations: 1,
  returnType: 'Array(4)',
  nativeFunctions: [
    bundle(SCORES_ROW, [
      SAMPLE,
      ROW_TEXEL,
      helper('attnTanh'),
      helper('attnBiasAt'),
      helper('attnMaskAt'),
      rowCoord('q'),
      rowCoord('k'),
      KEY_SCORE,
      SCORES4,
    ]),
  ],
  params: ['q', 'k', ...LOGIT_PARAMS, 'D', 'scale', 'softcap'],
  body: `  return attnScoresRow(this.thread.x, this.thread.y, j0, Lk, biasKeyStride, hasBias, hasMask, negInf, D, scale, softcap);`,
});

/** `m` raised by one key's logit (scores value `s` plus the bias and ALiBi parts), NaN-propagating. */
const MAX_KEY = {
  name: 'attnMaxKey',
  source: `float attnMaxKey(float m, float s, float j, float pos, float biasRow, float slope, float Lk, float biasKeyStride, float hasBias, float negInf) {
  if (s == negInf) return m;
  vec2 e = attnExtra(j, pos, biasRow, slope, Lk, biasKeyStride, hasBias);
  return attnNanMax(m, s + e.x + e.y);
}`,
};

const ROW_MAX4 = {
  name: 'attnRowMax4',
  source: `float attnRowMax4(float rr, float m, float lo, float hi, float pos, float biasRow, float slope, float j0, float tile, float Lk, float biasKeyStride, float hasBias, float negInf) {
  // a NaN max stays NaN whatever follows
  if (attnIsNan(m) > 0.5) return m;
  ivec2 range = attnTexelRange(lo, hi, j0, tile / 4.0);
  int r = int(rr);
  bool extra = hasBias > 0.5 || slope != 0.0;
  vec2 sInv = 1.0 / vec2(user_scoresSize);
  for (int x = range.x; x < range.y; x++) {
    vec4 s = attnSample(user_scores, ivec2(x, r), sInv);
    if (extra) {
      float j = j0 + float(x * 4);
      m = attnMaxKey(m, s.x, j, pos, biasRow, slope, Lk, biasKeyStride, hasBias, negInf);
      m = attnMaxKey(m, s.y, j + 1.0, pos, biasRow, slope, Lk, biasKeyStride, hasBias, negInf);
      m = attnMaxKey(m, s.z, j + 2.0, pos, biasRow, slope, Lk, biasKeyStride, hasBias, negInf);
      m = attnMaxKey(m, s.w, j + 3.0, pos, biasRow, slope, Lk, biasKeyStride, hasBias, negInf);
    } else {
      // Masked keys hold -inf, which never raises the max. A NaN ends the search (the sum is NaN:
      // GLSL max is undefined for NaN); otherwise max, without a branch per key.
      if (any(attnIsNan4(s))) return s.x + s.y + s.z + s.w;
      m = max(m, max(max(s.x, s.y), max(s.z, s.w)));
    }
  }
  return m;
}`,
};

const ROW_MAX_ROW = {
  name: 'attnRowMaxRow',
  source: `float attnRowMaxRow(float rr, float j0, float tile, float Lk, float biasKeyStride, float hasBias, float negInf) {
  vec4 a = attnRowTexel(rr, 0);
  vec4 b = attnRowTexel(rr, 1);
  vec4 c = attnRowTexel(rr, 2);
  return attnRowMax4(rr, ${atRow('mPrev')}, c.x, c.y, a.z, b.x, b.y, j0, tile, Lk, biasKeyStride, hasBias, negInf);
}`,
};

/** Running max over one packed scores tile. Output `[1, rows]`. Same arguments as the portable rowMax. */
export const rowMaxPackedKernel = defineKernel({
  name: 'rowMaxPacked',
  loopMaxIterations: 1,
  nativeFunctions: [
    bundle(ROW_MAX_ROW, [
      SAMPLE,
      ROW_TEXEL,
      helper('attnIsNan'),
      helper('attnNanMax'),
      helper('attnBiasAt'),
      IS_NAN4,
      TEXEL_RANGE,
      EXTRA,
      MAX_KEY,
      ROW_MAX4,
    ]),
  ],
  params: ['scores', 'mPrev', 'tile', ...LOGIT_PARAMS],
  body: `  return attnRowMaxRow(this.thread.y, j0, tile, Lk, biasKeyStride, hasBias, negInf);`,
});

/** One key's bias and ALiBi parts, zeros for a masked key (whose bias is never read). */
const KEY_EXTRA = {
  name: 'attnKeyExtra',
  source: `vec2 attnKeyExtra(float s, float j, float pos, float biasRow, float slope, float Lk, float biasKeyStride, float hasBias, float negInf) {
  if (s == negInf) return vec2(0.0);
  return attnExtra(j, pos, biasRow, slope, Lk, biasKeyStride, hasBias);
}`,
};

const PROBS4 = {
  name: 'attnProbs4',
  source: `vec4 attnProbs4(float x, float rr, float mm, float lo, float hi, float pos, float biasRow, float slope, float j0, float Lk, float biasKeyStride, float hasBias, float negInf) {
  if (mm == negInf) return vec4(0.0);
  if (attnIsNan(mm) > 0.5) return vec4(mm);
  float j = j0 + x * 4.0;
  if (j >= hi || j + 4.0 <= lo) return vec4(0.0);
  vec4 s = attnSample(user_scores, ivec2(int(x), int(rr)), 1.0 / vec2(user_scoresSize));
  vec4 bias = vec4(0.0);
  vec4 alibi = vec4(0.0);
  if (hasBias > 0.5 || slope != 0.0) {
    vec2 e0 = attnKeyExtra(s.x, j, pos, biasRow, slope, Lk, biasKeyStride, hasBias, negInf);
    vec2 e1 = attnKeyExtra(s.y, j + 1.0, pos, biasRow, slope, Lk, biasKeyStride, hasBias, negInf);
    vec2 e2 = attnKeyExtra(s.z, j + 2.0, pos, biasRow, slope, Lk, biasKeyStride, hasBias, negInf);
    vec2 e3 = attnKeyExtra(s.w, j + 3.0, pos, biasRow, slope, Lk, biasKeyStride, hasBias, negInf);
    bias = vec4(e0.x, e1.x, e2.x, e3.x);
    alibi = vec4(e0.y, e1.y, e2.y, e3.y);
  }
  // As the portable probs, per key and by selects: exp(x) (whose result GLSL leaves undefined for
  // NaN), 0 below -104, x itself when NaN, 0 for a masked key.
  vec4 xv = bias - mm + alibi + s;
  vec4 p = mix(exp(xv), vec4(0.0), lessThan(xv, vec4(-104.0)));
  p = mix(p, xv, attnIsNan4(xv));
  return mix(p, vec4(0.0), equal(s, vec4(negInf)));
}`,
};

const PROBS_ROW = {
  name: 'attnProbsRow',
  source: `vec4 attnProbsRow(float x, float rr, float j0, float Lk, float biasKeyStride, float hasBias, float negInf) {
  // the range first: a texel wholly outside it (half of them, causal) needs nothing else
  vec4 c = attnRowTexel(rr, 2);
  float jb = j0 + x * 4.0;
  if (jb >= c.y || jb + 4.0 <= c.x) return vec4(0.0);
  vec4 a = attnRowTexel(rr, 0);
  vec4 b = attnRowTexel(rr, 1);
  return attnProbs4(x, rr, ${atRow('m')}, c.x, c.y, a.z, b.x, b.y, j0, Lk, biasKeyStride, hasBias, negInf);
}`,
};

/** Unnormalised probabilities of one packed tile. Output `[tile / 4, rows]` RGBA. Same arguments as the portable probs. */
export const probsPackedKernel = defineKernel({
  name: 'probsPacked',
  loopMaxIterations: 1,
  returnType: 'Array(4)',
  nativeFunctions: [
    bundle(PROBS_ROW, [
      SAMPLE,
      ROW_TEXEL,
      helper('attnIsNan'),
      helper('attnBiasAt'),
      IS_NAN4,
      EXTRA,
      KEY_EXTRA,
      PROBS4,
    ]),
  ],
  params: ['scores', 'm', ...LOGIT_PARAMS],
  body: `  return attnProbsRow(this.thread.x, this.thread.y, j0, Lk, biasKeyStride, hasBias, negInf);`,
});

/** The four value texels `v0..v3` of four consecutive keys, stepping `vc` a row (`G` texels) each. */
const FOUR_VALUE_TEXELS = [0, 1, 2, 3]
  .map(
    (n) => `    vec4 v${n} = attnSample(user_v, ivec2(vc.x + col, vc.y), vInv);
    vc.x += G;
    if (vc.x == lineEnd) {
      vc.x = 0;
      vc.y += 1;
    }
`,
  )
  .join('');

/**
 * Group `c` (four value columns; the host pads each value row to `4 * groups` columns with a 1 in
 * column Dv, so the denominator accumulates as one more value) of `sum p v` over the row's visible
 * texels of the tile, on top of `alpha * accPrev`. A zero weight is skipped, so an infinite or NaN
 * value of a masked key never leaks (0 * inf = NaN): by a select (`mix` with a bvec), not a branch.
 * Straight-line code matters on SwiftShader, which runs four fragments in SIMD lanes: the loop over
 * the texel's four keys with a branch per key took a quarter longer (the whole forward, same run).
 */
const PV4 = {
  name: 'attnPV4',
  source: `vec4 attnPV4(float rr, float kvBase, float c, float lo, float hi, float j0, float tile, float groups, float alpha) {
  ivec2 range = attnTexelRange(lo, hi, j0, tile / 4.0);
  int G = int(groups);
  int col = int(c);
  int r = int(rr);
  int lineEnd = (user_vSize.x / G) * G;
  ivec2 vc = attnRowCoord_v(int(kvBase) + int(j0) + range.x * 4, G);
  vec4 sum = vec4(0.0);
  vec2 vInv = 1.0 / vec2(user_vSize);
  vec2 pInv = 1.0 / vec2(user_probsSize);
  for (int x = range.x; x < range.y; x++) {
    vec4 p = attnSample(user_probs, ivec2(x, r), pInv);
${FOUR_VALUE_TEXELS}    sum += mix(vec4(0.0), p.x * v0, bvec4(p.x != 0.0));
    sum += mix(vec4(0.0), p.y * v1, bvec4(p.y != 0.0));
    sum += mix(vec4(0.0), p.z * v2, bvec4(p.z != 0.0));
    sum += mix(vec4(0.0), p.w * v3, bvec4(p.w != 0.0));
  }
  if (alpha == 0.0) return sum;
  int aw = user_accPrevSize.x;
  int ai = r * G + col;
  return alpha * attnSample(user_accPrev, ivec2(ai - (ai / aw) * aw, ai / aw), 1.0 / vec2(user_accPrevSize)) + sum;
}`,
};

/** `alpha = exp(mPrev - mNew)`: 0 when mPrev is -inf, NaN when the difference is NaN. */
const PV_ROW = {
  name: 'attnPVRow',
  source: `vec4 attnPVRow(float c, float rr, float j0, float tile, float groups, float negInf) {
  vec4 a = attnRowTexel(rr, 0);
  vec4 e = attnRowTexel(rr, 2);
  float mp = ${atRow('mPrev')};
  float alpha = 0.0;
  if (mp != negInf) {
    alpha = mp - ${atRow('mNew')};
    if (attnIsNan(alpha) < 0.5) {
      alpha = exp(alpha);
    }
  }
  return attnPV4(rr, a.y, c, e.x, e.y, j0, tile, groups, alpha);
}`,
};

/**
 * The running weighted sum of values and the denominator, rescaled by `exp(mPrev - mNew)` as in the
 * portable accumulate. Output `[groups, rows]` RGBA; `Dv` is `groups`. Same arguments as the portable
 * accumulate.
 */
export const accumulatePackedKernel = defineKernel({
  name: 'accumulatePacked',
  loopMaxIterations: 1,
  returnType: 'Array(4)',
  nativeFunctions: [
    bundle(PV_ROW, [SAMPLE, ROW_TEXEL, helper('attnIsNan'), TEXEL_RANGE, rowCoord('v'), PV4]),
  ],
  params: ['probs', 'v', 'accPrev', 'mPrev', 'mNew', 'rowInfo', 'j0', 'tile', 'Dv', 'negInf'],
  body: `  return attnPVRow(this.thread.x, this.thread.y, j0, tile, Dv, negInf);`,
});
