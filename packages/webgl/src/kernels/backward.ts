/**
 * Kernel sources of the backward pass, in gpu.js's JavaScript dialect (see kernels.ts for why they are
 * strings). They are the portable kind: every GL kernel class runs them (WebGL2, WebGL1, headless-gl),
 * one float per output element, inputs indexed `a[y][x]`.
 *
 * FlashAttention-2 style without any `Lq x Lk` buffer: nothing stores a probability. Every output
 * element loops over the (query, key) pairs it depends on and recomputes the logit from q and k
 * exactly as the forward does (scale -> softcap -> + bias + ALiBi), `P = exp(((bias - m) + alibi) + s)
 * / l` and `dP = dot(dO_i, v_j)`. The loops cover only the pairs the causal/window masks leave
 * visible (the ranges come from the host, exact integers), so masked blocks cost nothing.
 *
 * The row's max `m` and denominator `l` are recomputed here ({@link rowMaxKernel}, {@link
 * rowSumKernel}: one dot product per visible pair) rather than read from the forward's float32
 * `lse = m + ln l`: that single number rounds at `|lse| 2^-24`, so with a bias near 1e4 or logits
 * in the hundreds `exp(logit - lse)` is off by 1e-4..1e-3 relative, outside the declared tolerance
 * (measured: README, "Backward"). Kept apart, `bias - m` cancels exactly as in the forward.
 *
 * Shared arguments: `q [D, rowsQ]`, `k [D, rowsK]`, `v [Dv, rowsK]`, `dO [Dv, rowsQ]`, `rowM` and
 * `rowL [rowsQ, 1]` (textures), `delta [rowsQ, 1]` (D_i, a texture from {@link deltaKernel}), `bias [lkDim, biasRows]`,
 * `keyMask [Lk, B]` (1/0 floats), `heads [4, Hq]` (`0 ALiBi slope, 1 sink or -inf, 2 kv head`), and
 * uniforms. A bias row is `b * bsb + h * bsh + i * bsi` (strides in units of bias rows).
 */
import { defineKernel } from '../gl.js';
import { LOOP_MAX, TANH } from './forward.js';

/** Columns of the per-output-row tables the host builds (exact integers, see kernels.ts). */
export const DQ_INFO = {
  row: 0,
  kvBase: 1,
  position: 2,
  batch: 3,
  head: 4,
  query: 5,
  start: 6,
  end: 7,
  width: 8,
};
/** A gradK/gradV row: the kv row, its key, batch, the query heads and visible queries that see it. */
export const DKV_INFO = {
  kvRow: 0,
  key: 1,
  batch: 2,
  headLo: 3,
  headHi: 4,
  queryLo: 5,
  queryHi: 6,
  width: 8,
};
/** A reduction row (a bias row, or a head for the sinks): the (b, h, i) box it sums over. */
export const RANGE_INFO = { bLo: 0, bHi: 1, hLo: 2, hHi: 3, iLo: 4, iHi: 5, width: 8 };
/** Columns of the per-head table. */
export const HEAD_INFO = { slope: 0, sink: 1, kvHead: 2, width: 4 };

/**
 * The logit of the pair (query row `r` = (b, h, i) at position `pos`, key row `kRow` = key `j`) in its
 * two parts, `s` (softcapped scaled dot, `th` its tanh) and `biasValue + alibi`: the same arithmetic
 * and order as the forward's scores kernel. Needs `r, b, h, i, pos, j, kRow` in scope.
 */
const PAIR_LOGIT = `let dot = 0.0;
        for (let e = 0; e < D; e++) {
          dot += q[r][e] * k[kRow][e];
        }
        let s = scale * dot;
        let th = 0.0;
        if (softcap > 0.0) {
          th = attnTanh(s / softcap);
          s = softcap * th;
        }
        let biasValue = 0.0;
        if (hasBias > 0.5) {
          biasValue = bias[b * bsb + h * bsh + i * bsi][j * biasKeyStride];
        }
        let alibi = 0.0;
        const slope = heads[h][${HEAD_INFO.slope}];
        if (slope != 0.0) {
          alibi = -slope * (pos - j);
        }`;

/**
 * `p = exp(logit - m) / l` for the pair after {@link PAIR_LOGIT}, with the row's max `mR` and
 * denominator `lR`, formed as `((bias - m) + alibi) + s` like the forward's probs kernel; 0 where
 * that exp would underflow.
 */
const PAIR_P = `${PAIR_LOGIT}
        const x = biasValue - mR + alibi + s;
        let p = 0.0;
        if (x >= -104.0) {
          p = Math.exp(x) / lR;
        }`;

/** `dp = dot(dO_i, v_j)` for the pair. */
const PAIR_DP = `let dp = 0.0;
          for (let e = 0; e < Dv; e++) {
            dp += dO[r][e] * v[kRow][e];
          }`;

/** `ds = P * (dP - D_i)` for the pair, given `p` from {@link PAIR_P}. */
const PAIR_DS = `${PAIR_DP}
          const ds = p * (dp - delta[0][r]);`;

/** `dr = dS * (1 - tanh^2)` (the softcap's derivative; dS itself without one), after {@link PAIR_DS}. */
const PAIR_DR = `${PAIR_DS}
          let dr = ds;
          if (softcap > 0.0) {
            dr = ds * (1.0 - th * th);
          }`;

/** Query row `rr`'s facts from its table row (DQ_INFO), exact integers from the host. */
const ROW_FACTS = `const kvBase = rowInfo[rr][${DQ_INFO.kvBase}];
  const pos = rowInfo[rr][${DQ_INFO.position}];
  const b = rowInfo[rr][${DQ_INFO.batch}];
  const h = rowInfo[rr][${DQ_INFO.head}];
  const i = rowInfo[rr][${DQ_INFO.query}];
  const start = rowInfo[rr][${DQ_INFO.start}];
  const end = rowInfo[rr][${DQ_INFO.end}];`;

/**
 * The loop over query row `r`'s visible keys `[start, end)` with the key mask on top, `BODY` run with
 * `j` and the key row `kRow` in scope; needs {@link ROW_FACTS} before it.
 */
function visibleKeys(body: string): string {
  return `for (let j = start; j < end; j++) {
    let live = 1.0;
    if (hasMask > 0.5) {
      live = keyMask[b][j];
    }
    if (live > 0.5) {
      const kRow = kvBase + j;
      ${body}
    }
  }`;
}

/**
 * The loop over queries `[iLo, iHi)` of the head whose rows start at `rowBase`, skipping rows that saw
 * nothing (m = -inf): `body` runs with `r`, `pos` and the pair's `p` ({@link PAIR_P}) in scope,
 * where `p > 0`. Needs `j`, `kRow`, `b`, `h` and `offset` in scope.
 */
function eachSeeingQuery(body: string): string {
  return `for (let i = iLo; i < iHi; i++) {
      const r = rowBase + i;
      const mR = rowM[0][r];
      if (mR > negInf) {
        const lR = rowL[0][r];
        const pos = i + offset;
        ${PAIR_P}
        if (p > 0.0) {
          ${body}
        }
      }
    }`;
}

/** What every gradient kernel reads first: q, k, v, dO, the forward's row max and sum, delta and the bias. */
const GRAD_TENSORS = ['q', 'k', 'v', 'dO', 'rowM', 'rowL', 'delta', 'bias'] as const;
/** What the vectorized kernels and delta read first: q, k, v, dO and the bias. */
const INPUTS4 = ['q', 'k', 'v', 'dO', 'bias'] as const;

/** The uniforms every pair needs (after the tensors). */
const PAIR_PARAMS = [
  'D',
  'Dv',
  'Hq',
  'Lq',
  'Lk',
  'scale',
  'softcap',
  'hasBias',
  'biasKeyStride',
  'bsb',
  'bsh',
  'bsi',
  'negInf',
] as const;

/**
 * The row max of the logits `s + bias + alibi` over visible keys, starting from the sink (or -inf),
 * as the forward's rowMax forms it. Thread x = query row (the table covers every row); output
 * `[rowsQ, 1]` (a 1-high output is stored as a square texture, so rows are not bounded by
 * MAX_TEXTURE_SIZE).
 */
export const rowMaxKernel = defineKernel({
  name: 'rowMaxB',
  loopMaxIterations: LOOP_MAX,
  nativeFunctions: [TANH],
  params: ['q', 'k', 'bias', 'keyMask', 'heads', 'rowInfo', 'hasMask', ...PAIR_PARAMS],
  body: `  const rr = this.thread.x;
  const r = rowInfo[rr][${DQ_INFO.row}];
  ${ROW_FACTS}
  let m = heads[h][${HEAD_INFO.sink}];
  ${visibleKeys(`${PAIR_LOGIT}
      m = Math.max(m, s + biasValue + alibi);`)}
  return m;`,
});

/** The row's denominator `exp(sink - m) + sum_j exp(logit_j - m)` given {@link rowMaxKernel}'s m. */
export const rowSumKernel = defineKernel({
  name: 'rowSumB',
  loopMaxIterations: LOOP_MAX,
  nativeFunctions: [TANH],
  params: ['q', 'k', 'bias', 'keyMask', 'heads', 'rowInfo', 'rowM', 'hasMask', ...PAIR_PARAMS],
  body: `  const rr = this.thread.x;
  const r = rowInfo[rr][${DQ_INFO.row}];
  const mR = rowM[0][r];
  if (mR == negInf) {
    return 0.0;
  }
  ${ROW_FACTS}
  let l = 0.0;
  const sink = heads[h][${HEAD_INFO.sink}];
  if (sink > negInf) {
    l = Math.exp(sink - mR);
  }
  ${visibleKeys(`${PAIR_LOGIT}
      const x = biasValue - mR + alibi + s;
      if (x >= -104.0) {
      l += Math.exp(x);`)}
  }
  return l;`,
});

/**
 * `a0..a3 += factor * tensor[row][c..c+3]`, the columns past `width` left alone (they would read the
 * next row): four output columns share each pair's dot products.
 */
function add4(factor: string, tensor: string, row: string, width: string): string {
  return [0, 1, 2, 3]
    .map((n) => {
      const add = `a${n} += ${factor} * ${tensor}[${row}][c + ${n}];`;
      return n === 0 ? add : `if (c + ${n} < ${width}) {\n            ${add}\n          }`;
    })
    .join('\n          ');
}

/**
 * gradQ: thread `(x, row y of the table)` makes columns `c = 4 (c0 + x) .. c + 3` (an RGBA texel):
 * `scale * sum_j dR_ij k_j[c]` over the row's visible keys `[start, end)` (the key mask on top). A
 * row with lse = -inf saw nothing: 0.
 */
export const gradQKernel = defineKernel({
  name: 'gradQ',
  loopMaxIterations: LOOP_MAX,
  returnType: 'Array(4)',
  nativeFunctions: [TANH],
  params: [...GRAD_TENSORS, 'keyMask', 'heads', 'rowInfo', 'c0', 'hasMask', ...PAIR_PARAMS],
  body: `  const rr = this.thread.y;
  const c = 4.0 * (c0 + this.thread.x);
  const r = rowInfo[rr][${DQ_INFO.row}];
  const mR = rowM[0][r];
  const lR = rowL[0][r];
  let a0 = 0.0;
  let a1 = 0.0;
  let a2 = 0.0;
  let a3 = 0.0;
  if (mR > negInf) {
    ${ROW_FACTS}
    ${visibleKeys(`${PAIR_P}
      if (p > 0.0) {
      ${PAIR_DR}
      ${add4('dr', 'k', 'kRow', 'D')}`)}
    }
  }
  return [scale * a0, scale * a1, scale * a2, scale * a3];`,
});

/**
 * gradK and gradV in one pass, four columns a thread: texels `0..D4-1` of an output row are gradK,
 * the next `ceil(Dv / 4)` gradV. Thread `(x, row y)` sums over the group's query heads
 * `[headLo, headHi)` and the queries `[queryLo, queryHi)` that can see the key (empty when the key
 * mask hides it): gradK `scale * sum dR_ij q_i[c]`, gradV `sum P_ij dO_i[c]`.
 */
export const gradKVKernel = defineKernel({
  name: 'gradKV',
  loopMaxIterations: LOOP_MAX,
  returnType: 'Array(4)',
  nativeFunctions: [TANH],
  params: [...GRAD_TENSORS, 'heads', 'kvInfo', 'c0', 'D4', ...PAIR_PARAMS],
  body: `  const rr = this.thread.y;
  const t = c0 + this.thread.x;
  let isK = 1.0;
  let c = 4.0 * t;
  if (t >= D4) {
    isK = 0.0;
    c = 4.0 * (t - D4);
  }
  const kRow = kvInfo[rr][${DKV_INFO.kvRow}];
  const j = kvInfo[rr][${DKV_INFO.key}];
  const b = kvInfo[rr][${DKV_INFO.batch}];
  const hLo = kvInfo[rr][${DKV_INFO.headLo}];
  const hHi = kvInfo[rr][${DKV_INFO.headHi}];
  const iLo = kvInfo[rr][${DKV_INFO.queryLo}];
  const iHi = kvInfo[rr][${DKV_INFO.queryHi}];
  const offset = Lk - Lq;
  let a0 = 0.0;
  let a1 = 0.0;
  let a2 = 0.0;
  let a3 = 0.0;
  for (let h = hLo; h < hHi; h++) {
    const rowBase = (b * Hq + h) * Lq;
    ${eachSeeingQuery(`if (isK > 0.5) {
          ${PAIR_DR}
          ${add4('dr', 'q', 'r', 'D')}
        } else {
          ${add4('p', 'dO', 'r', 'Dv')}
        }`)}
  }
  if (isK > 0.5) {
    return [scale * a0, scale * a1, scale * a2, scale * a3];
  }
  return [a0, a1, a2, a3];`,
});

/**
 * gradBias for a bias with a key dimension: element `(key j0 + x, row y)` is `sum dS_ij` over the
 * row's box of (b, h, i) (its broadcast dimensions, or one part of them), restricted to the queries
 * that can see key j and the batches whose key mask keeps it. The host sums the parts.
 */
export const gradBiasKernel = defineKernel({
  name: 'gradBias',
  loopMaxIterations: LOOP_MAX,
  nativeFunctions: [TANH],
  params: [
    ...GRAD_TENSORS,
    'keyMask',
    'heads',
    'rangeInfo',
    'j0',
    'hasMask',
    'causal',
    'win',
    'Hkv',
    ...PAIR_PARAMS,
  ],
  body: `  const rr = this.thread.y;
  const j = j0 + this.thread.x;
  const offset = Lk - Lq;
  let iLo = rangeInfo[rr][${RANGE_INFO.iLo}];
  let iHi = rangeInfo[rr][${RANGE_INFO.iHi}];
  if (causal > 0.5) {
    iLo = Math.max(iLo, j - offset);
  }
  if (win > 0.5) {
    iHi = Math.min(iHi, j + win - offset);
    if (causal < 0.5) {
      iLo = Math.max(iLo, j - win - offset + 1.0);
    }
  }
  const bLo = rangeInfo[rr][${RANGE_INFO.bLo}];
  const bHi = rangeInfo[rr][${RANGE_INFO.bHi}];
  const hLo = rangeInfo[rr][${RANGE_INFO.hLo}];
  const hHi = rangeInfo[rr][${RANGE_INFO.hHi}];
  let acc = 0.0;
  for (let b = bLo; b < bHi; b++) {
    let live = 1.0;
    if (hasMask > 0.5) {
      live = keyMask[b][j];
    }
    if (live > 0.5) {
      for (let h = hLo; h < hHi; h++) {
        const rowBase = (b * Hq + h) * Lq;
        const kRow = (b * Hkv + heads[h][${HEAD_INFO.kvHead}]) * Lk + j;
        ${eachSeeingQuery(`${PAIR_DS}
        acc += ds;`)}
      }
    }
  }
  return acc;`,
});

/**
 * `sum P_sink,r * D_r` over a box of rows, `P_sink = exp(sink_h - m_r) / l_r`: the sink gradient is
 * `-` this over a head's rows, and a bias without a key dimension gets `+` this over its box, because
 * a row's `sum_j dS_ij = sum_j P_ij dP_ij - D_i sum_j P_ij = D_i - D_i (1 - P_sink) = P_sink D_i`
 * (exactly, with D_i = sum_j P_ij dP_ij from {@link deltaKernel} and `sum_j P_ij + P_sink = 1`
 * from {@link rowSumKernel}; 0 without a sink). Output `[1, rows]`.
 */
export const sinkTermsKernel = defineKernel({
  name: 'sinkTerms',
  loopMaxIterations: LOOP_MAX,
  params: ['rowM', 'rowL', 'delta', 'heads', 'rangeInfo', 'Hq', 'Lq', 'negInf'],
  body: `  const rr = this.thread.y;
  const bLo = rangeInfo[rr][${RANGE_INFO.bLo}];
  const bHi = rangeInfo[rr][${RANGE_INFO.bHi}];
  const hLo = rangeInfo[rr][${RANGE_INFO.hLo}];
  const hHi = rangeInfo[rr][${RANGE_INFO.hHi}];
  const iLo = rangeInfo[rr][${RANGE_INFO.iLo}];
  const iHi = rangeInfo[rr][${RANGE_INFO.iHi}];
  let acc = 0.0;
  for (let b = bLo; b < bHi; b++) {
    for (let h = hLo; h < hHi; h++) {
      const sink = heads[h][${HEAD_INFO.sink}];
      if (sink > negInf) {
        const rowBase = (b * Hq + h) * Lq;
        for (let i = iLo; i < iHi; i++) {
          const r = rowBase + i;
          const mR = rowM[0][r];
          if (mR > negInf) {
            acc += (Math.exp(sink - mR) / rowL[0][r]) * delta[0][r];
          }
        }
      }
    }
  }
  return acc;`,
});

/**
 * WebGL2 only (GLSL ES 3.00 texelFetch): GLSL for texel `t` of input `name`, read straight from the
 * texture gpu.js uploads it to (four floats a texel, flat row-major, uniforms `user_<name>` and
 * `user_<name>Size`, as the forward's attnDot4 reads them). `t` must be a GLSL int variable.
 */
const texel = (name: string, t: string) =>
  `texelFetch(user_${name}, ivec2(${t} - (${t} / user_${name}Size.x) * user_${name}Size.x, ${t} / user_${name}Size.x), 0)`;

/** GLSL for float element `e` (an int variable) of a flat input; `tv` names a scratch int. */
const element = (name: string, e: string, tv: string) => `${texel(name, tv)}[${e} - ${tv} * 4]`;

/**
 * The vectorized logit (see {@link PAIR_LOGIT}), for query row `r` (int) at position `pos` (float),
 * key `j` / key row `kRow` (ints), bias row `biasRow` (int).
 * q and k rows are padded to `D4` texels, dO and v rows to `Dv4`. Same order of operations as the
 * portable PAIR_P (the dot product sums four products a texel first).
 */
const LOGIT4 = `float dotqk = 0.0;
      int qt = r * D4;
      int kt = kRow * D4;
      for (int t = 0; t < D4; t++) {
        dotqk += dot(${texel('q', 'qt')}, ${texel('k', 'kt')});
        qt += 1;
        kt += 1;
      }
      float s = scale * dotqk;
      float th = 0.0;
      if (softcap > 0.0) {
        float y = s / softcap;
        float e2 = exp(-2.0 * abs(y));
        float tt = (1.0 - e2) / (1.0 + e2);
        th = y < 0.0 ? -tt : tt;
        s = softcap * th;
      }
      float biasValue = 0.0;
      if (hasBias > 0.5) {
        int be = biasRow * lkDim + j * biasKeyStride;
        int bt = be / 4;
        biasValue = ${element('bias', 'be', 'bt')};
      }
      float alibi = 0.0;
      if (slope != 0.0) {
        alibi = -slope * (pos - float(j));
      }`;

/** `p = exp(logit - m) / l` after {@link LOGIT4}, as {@link PAIR_P} forms it. */
const PAIR4 = `${LOGIT4}
      float x = biasValue - mR + alibi + s;
      float p = 0.0;
      if (x >= -104.0) {
        p = exp(x) / lR;
      }`;

/** `dp = dot(dO_i, v_j)`, vectorized: four products a texel, as {@link LOGIT4} sums q . k. */
const DP4 = `float dp = 0.0;
        int ot = r * Dv4;
        int vt = kRow * Dv4;
        for (int t = 0; t < Dv4; t++) {
          dp += dot(${texel('dO', 'ot')}, ${texel('v', 'vt')});
          ot += 1;
          vt += 1;
        }`;

/** `ds = P (dP - D_i)` then the softcap derivative, vectorized; after {@link PAIR4}. */
const DR4 = `${DP4}
        float dr = p * (dp - deltaR);
        if (softcap > 0.0) {
          dr = dr * (1.0 - th * th);
        }`;

/**
 * The vectorized loop over the row's visible keys `[start, end)` with the key mask on top (see
 * {@link visibleKeys}): `body` runs with `j` and `kRow` in scope. Needs {@link ROW4_INTS} before it.
 */
function visibleKeys4(body: string): string {
  return `for (int j = start; j < end; j++) {
    if (hasMask > 0.5) {
      int me = b * Lk + j;
      int mt = me / 4;
      if (${element('keyMask', 'me', 'mt')} < 0.5) continue;
    }
    int kRow = kvBase + j;
    ${body}
  }`;
}

/** The float uniforms every vectorized native takes, converted to ints where they count. */
const NATIVE4_PARAMS =
  'float D4f, float Dv4f, float Hqf, float Lqf, float Lkf, float lkDimf, float biasKeyStridef, float hasBias, float scale, float softcap';
const NATIVE4_INTS = `int D4 = int(D4f);
  int Dv4 = int(Dv4f);
  int Hq = int(Hqf);
  int Lq = int(Lqf);
  int Lk = int(Lkf);
  int lkDim = int(lkDimf);
  int biasKeyStride = int(biasKeyStridef);`;
/** The uniforms a vectorized native takes: its shell's parameters of the same names, passed through. */
const NATIVE4_UNIFORMS = [
  'D4',
  'Dv4',
  'Hq',
  'Lq',
  'Lk',
  'lkDim',
  'biasKeyStride',
  'hasBias',
  'scale',
  'softcap',
] as const;
const NATIVE4_ARGS = NATIVE4_UNIFORMS.join(', ');

/** The uniforms of the vectorized kernels' shells (after the tensors). */
const SHELL4_PARAMS = [...NATIVE4_UNIFORMS, 'bsb', 'bsh', 'bsi', 'negInf'] as const;

/** A vectorized row native's parameters (one query row's table facts, then the uniforms) and their ints. */
const ROW4_PARAMS = `float rf, float kvBasef, float pos, float bf, float biasRowf, float slope, float sink, float startf, float endf, float hasMask, ${NATIVE4_PARAMS}`;
const ROW4_INTS = `${NATIVE4_INTS}
  int r = int(rf);
  int kvBase = int(kvBasef);
  int b = int(bf);
  int biasRow = int(biasRowf);
  int start = int(startf);
  int end = int(endf);`;
const ROW4_SHELL_ARGS = `r, rowInfo[rr][${DQ_INFO.kvBase}], rowInfo[rr][${DQ_INFO.position}], rowInfo[rr][${DQ_INFO.batch}], biasRow, heads[h][${HEAD_INFO.slope}], heads[h][${HEAD_INFO.sink}], rowInfo[rr][${DQ_INFO.start}], rowInfo[rr][${DQ_INFO.end}], hasMask, ${NATIVE4_ARGS}`;
/** The shell's lookups of its query row (thread `axis` indexes the row table): the native's arguments. */
const row4Shell = (axis: 'x' | 'y') => `const rr = this.thread.${axis};
  const r = rowInfo[rr][${DQ_INFO.row}];
  const h = rowInfo[rr][${DQ_INFO.head}];
  const biasRow = rowInfo[rr][${DQ_INFO.batch}] * bsb + h * bsh + rowInfo[rr][${DQ_INFO.query}] * bsi;`;

/**
 * WebGL2 gradQ: one RGBA texel (four columns `4c..4c+3`) per thread, so each (query, key) pair's two
 * dot products serve four outputs and read four floats a fetch.
 */
export const gradQ4Kernel = defineKernel({
  name: 'gradQ4',
  loopMaxIterations: LOOP_MAX,
  returnType: 'Array(4)',
  nativeFunctions: [
    {
      name: 'attnGradQ4',
      source: `vec4 attnGradQ4(float mR, float lR, float deltaR, float cf, ${ROW4_PARAMS}) {
  ${ROW4_INTS}
  int c = int(cf);
  vec4 acc = vec4(0.0);
  if (!(mR > -3.0e38)) return acc;
  ${visibleKeys4(`${PAIR4}
      if (p > 0.0) {
        ${DR4}
        int ct = kRow * D4 + c;
        acc += dr * ${texel('k', 'ct')};
      }`)}
  return scale * acc;
}`,
    },
  ],
  params: [
    ...INPUTS4,
    'keyMask',
    'rowM',
    'rowL',
    'delta',
    'heads',
    'rowInfo',
    'c0',
    'hasMask',
    ...SHELL4_PARAMS,
  ],
  body: `  ${row4Shell('y')}
  return attnGradQ4(rowM[0][r], rowL[0][r], delta[0][r], c0 + this.thread.x, ${ROW4_SHELL_ARGS});`,
});

/**
 * WebGL2 gradK | gradV: texels `0..D4-1` of an output row are gradK (four columns each), the next
 * `Dv4` gradV; loops like the portable gradKV. m, l, D_i and the slopes are read per row in the loop (m, l and D_i from the
 * red channel of their one-float-a-texel textures).
 */
export const gradKV4Kernel = defineKernel({
  name: 'gradKV4',
  loopMaxIterations: LOOP_MAX,
  returnType: 'Array(4)',
  nativeFunctions: [
    {
      name: 'attnGradKV4',
      source: `vec4 attnGradKV4(float kRowf, float jf, float bf, float hLof, float hHif, float iLof, float iHif, float cf, float bsbf, float bshf, float bsif, ${NATIVE4_PARAMS}) {
  ${NATIVE4_INTS}
  int kRow = int(kRowf);
  int j = int(jf);
  int b = int(bf);
  int hLo = int(hLof);
  int hHi = int(hHif);
  int iLo = int(iLof);
  int iHi = int(iHif);
  int c = int(cf);
  int bsb = int(bsbf);
  int bsh = int(bshf);
  int bsi = int(bsif);
  int offset = Lk - Lq;
  int dw = user_deltaSize.x;
  int rw = user_rowMSize.x;
  vec4 acc = vec4(0.0);
  for (int h = hLo; h < hHi; h++) {
    int se = h * 4;
    int st = se / 4;
    float slope = ${element('heads', 'se', 'st')};
    for (int i = iLo; i < iHi; i++) {
      int r = (b * Hq + h) * Lq + i;
      ivec2 rc = ivec2(r - (r / rw) * rw, r / rw);
      float mR = texelFetch(user_rowM, rc, 0).r;
      if (!(mR > -3.0e38)) continue;
      float lR = texelFetch(user_rowL, rc, 0).r;
      float pos = float(i + offset);
      int biasRow = b * bsb + h * bsh + i * bsi;
      ${PAIR4}
      if (p > 0.0) {
        if (c < D4) {
          float deltaR = texelFetch(user_delta, ivec2(r - (r / dw) * dw, r / dw), 0).r;
          ${DR4}
          int qc = r * D4 + c;
          acc += dr * ${texel('q', 'qc')};
        } else {
          int oc = r * Dv4 + c - D4;
          acc += p * ${texel('dO', 'oc')};
        }
      }
    }
  }
  if (c < D4) return scale * acc;
  return acc;
}`,
    },
  ],
  params: [...INPUTS4, 'rowM', 'rowL', 'delta', 'heads', 'kvInfo', 'c0', ...SHELL4_PARAMS],
  body: `  const rr = this.thread.y;
  return attnGradKV4(kvInfo[rr][${DKV_INFO.kvRow}], kvInfo[rr][${DKV_INFO.key}], kvInfo[rr][${DKV_INFO.batch}], kvInfo[rr][${DKV_INFO.headLo}], kvInfo[rr][${DKV_INFO.headHi}], kvInfo[rr][${DKV_INFO.queryLo}], kvInfo[rr][${DKV_INFO.queryHi}], c0 + this.thread.x, bsb, bsh, bsi, ${NATIVE4_ARGS});`,
});

/**
 * WebGL2 row max: the logits summed exactly as attnGradQ4/attnGradKV4 sum them (four products a
 * texel), so the max key's `logit - m` is exactly 0 there too.
 */
export const rowMax4Kernel = defineKernel({
  name: 'rowMax4',
  loopMaxIterations: LOOP_MAX,
  nativeFunctions: [
    {
      name: 'attnRowMax4',
      source: `float attnRowMax4(${ROW4_PARAMS}) {
  ${ROW4_INTS}
  float m = sink;
  ${visibleKeys4(`${LOGIT4}
    m = max(m, s + biasValue + alibi);`)}
  return m;
}`,
    },
  ],
  params: ['q', 'k', 'bias', 'keyMask', 'heads', 'rowInfo', 'hasMask', ...SHELL4_PARAMS],
  body: `  ${row4Shell('x')}
  return attnRowMax4(${ROW4_SHELL_ARGS});`,
});

/** WebGL2 row denominator, given {@link rowMax4Kernel}'s m (see {@link rowSumKernel}). */
export const rowSum4Kernel = defineKernel({
  name: 'rowSum4',
  loopMaxIterations: LOOP_MAX,
  nativeFunctions: [
    {
      name: 'attnRowSum4',
      source: `float attnRowSum4(float mR, ${ROW4_PARAMS}) {
  ${ROW4_INTS}
  if (!(mR > -3.0e38)) return 0.0;
  float l = 0.0;
  if (sink > -3.0e38) l = exp(sink - mR);
  ${visibleKeys4(
    `${LOGIT4}
    float x = biasValue - mR + alibi + s;
    if (x >= -104.0) l += exp(x);`,
  )}
  return l;
}`,
    },
  ],
  params: ['q', 'k', 'bias', 'keyMask', 'heads', 'rowInfo', 'rowM', 'hasMask', ...SHELL4_PARAMS],
  body: `  ${row4Shell('x')}
  return attnRowSum4(rowM[0][r], ${ROW4_SHELL_ARGS});`,
});

/**
 * `D_i = sum_j P_ij dP_ij` over the row's visible keys with the P every gradient kernel uses. In
 * exact arithmetic it is `dot(dO_i, O_i)`; summed from this backward's own P instead of the
 * forward's float32 O, `sum_j dS_ij = sum_j P_ij (dP_ij - D_i)` cancels to rounding, so an error of
 * the forward's O is not multiplied by the scale into gradQ and gradK (measured: README, "Backward").
 * Output `[rowsQ, 1]`.
 */
export const deltaKernel = defineKernel({
  name: 'delta',
  loopMaxIterations: LOOP_MAX,
  nativeFunctions: [TANH],
  params: [...INPUTS4, 'keyMask', 'heads', 'rowInfo', 'rowM', 'rowL', 'hasMask', ...PAIR_PARAMS],
  body: `  const rr = this.thread.x;
  const r = rowInfo[rr][${DQ_INFO.row}];
  const mR = rowM[0][r];
  if (mR == negInf) {
    return 0.0;
  }
  const lR = rowL[0][r];
  ${ROW_FACTS}
  let sum = 0.0;
  ${visibleKeys(`${PAIR_P}
      if (p > 0.0) {
      ${PAIR_DP}
      sum += p * dp;`)}
  }
  return sum;`,
});

/** WebGL2 {@link deltaKernel}, in the vectorized kernels' order. */
export const delta4Kernel = defineKernel({
  name: 'delta4',
  loopMaxIterations: LOOP_MAX,
  nativeFunctions: [
    {
      name: 'attnDelta4',
      source: `float attnDelta4(float mR, float lR, ${ROW4_PARAMS}) {
  ${ROW4_INTS}
  if (!(mR > -3.0e38)) return 0.0;
  float sum = 0.0;
  ${visibleKeys4(
    `${LOGIT4}
    float x = biasValue - mR + alibi + s;
    if (x >= -104.0) {
      float p = exp(x) / lR;
      ${DP4}
      sum += p * dp;
    }`,
  )}
  return sum;
}`,
    },
  ],
  params: [...INPUTS4, 'keyMask', 'heads', 'rowInfo', 'rowM', 'rowL', 'hasMask', ...SHELL4_PARAMS],
  body: `  ${row4Shell('x')}
  return attnDelta4(rowM[0][r], rowL[0][r], ${ROW4_SHELL_ARGS});`,
});
