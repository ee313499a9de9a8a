/**
 * Kernel sources in gpu.js's JavaScript dialect, kept as strings so no bundler or compiler rewrites
 * them before gpu.js parses them. Every size and option is a runtime argument (a uniform), never a
 * constant, so one compiled shader serves every shape: only `loopMaxIterations` is compiled in.
 *
 * Layout: a "row" is one query row `(b, h, i)`; a chunk of rows is processed at once and a 2-d
 * texture `[width, rows]` is read as `tex[row][x]`. `rowInfo [8, rows]` carries per-row facts that
 * the host computes exactly (integer arithmetic in float shaders is a rounding hazard):
 * `0 qRow, 1 kvBase = (b*Hkv + g)*Lk, 2 position p_i, 3 batch b, 4 bias row, 5 ALiBi slope, 6 sink,
 * 8..9 the row's visible key range [start, end)` (causal and sliding window; the key mask is per key).
 */
import { defineKernel } from '../gl.js';

/** Column indices of the per-row table. */
export const ROW_INFO = {
  qRow: 0,
  kvBase: 1,
  position: 2,
  batch: 3,
  biasRow: 4,
  slope: 5,
  sink: 6,
  /** First visible key (causal/window range, from visibleKeyRange on the host); texel 2 of a row. */
  start: 8,
  /** One past the last visible key (equal to start when the row sees no key). */
  end: 9,
  /** Three whole RGBA texels a row, so the packed kernels fetch a row's facts in three reads. */
  width: 12,
} as const;

/**
 * GLSL helpers, valid in GLSL ES 1.00 and 3.00. NaN is tested by comparisons rather than `isnan`
 * (absent in ES 1.00) and `max` is not trusted with NaN: the spec propagates NaN in a visible logit.
 * tanh is written out because ES 1.00 lacks it; the form keeps |x| large from overflowing.
 */
/** `tanh` without GLSL ES 3's builtin (WebGL1 has none), for the softcap; the backward uses it too. */
export const TANH = {
  name: 'attnTanh',
  source: `float attnTanh(float x) {
  float e = exp(-2.0 * abs(x));
  float t = (1.0 - e) / (1.0 + e);
  return x < 0.0 ? -t : t;
}`,
};

export const NATIVE = [
  {
    name: 'attnIsNan',
    source: `float attnIsNan(float x) {
  return (x < 0.0 || 0.0 < x || x == 0.0) ? 0.0 : 1.0;
}`,
  },
  {
    name: 'attnNanMax',
    source: `float attnNanMax(float a, float b) {
  if (!(a < 0.0 || 0.0 < a || a == 0.0)) return a;
  if (!(b < 0.0 || 0.0 < b || b == 0.0)) return b;
  return max(a, b);
}`,
  },
  TANH,
] as const;

/** Largest loop trip count compiled into the shaders: loops break on their runtime bound first. */
export const LOOP_MAX = 1 << 24;

/**
 * Visibility and the additive part of key `j`'s logit for row `rr`, inlined where needed. The logit is
 * kept in two parts, `a` (softcapped scaled dot, in the scores texture) and `bias + ALiBi`, and
 * `logit - m` is formed as `((bias - m) + alibi) + a`: a bias or ALiBi term near 1e4 would otherwise
 * round the small dot part away in float32 (ulp 1e-3) before the max is subtracted.
 */
function logitPartsSource(maskRead: string, biasRead: string): string {
  return `let visible = 1.0;
    if (j >= Lk) {
      visible = 0.0;
    }
    const pos = rowInfo[rr][${ROW_INFO.position}];
    if (causal > 0.5 && j > pos) {
      visible = 0.0;
    }
    if (win > 0.5) {
      if (pos - j >= win) {
        visible = 0.0;
      }
      if (causal < 0.5 && j - pos >= win) {
        visible = 0.0;
      }
    }
    if (hasMask > 0.5 && visible > 0.5) {
      if (${maskRead} < 0.5) {
        visible = 0.0;
      }
    }
    let biasValue = 0.0;
    if (hasBias > 0.5 && visible > 0.5) {
      biasValue = ${biasRead};
    }
    let alibi = 0.0;
    const slope = rowInfo[rr][${ROW_INFO.slope}];
    if (slope != 0.0) {
      alibi = -slope * (pos - j);
    }`;
}

/** A native `name(row, col, width)` reading element `row * width + col` of packed input `input`. */
function flatElement(name: string, input: string) {
  return {
    name,
    source: `float ${name}(float row, float col, float width) {
  int e = int(row) * int(width) + int(col);
  int t = e / 4;
  int w = user_${input}Size.x;
  return texelFetch(user_${input}, ivec2(t - (t / w) * w, t / w), 0)[e - t * 4];
}`,
  };
}

/**
 * WebGL2: bias and key mask read straight from their packed RGBA textures (flat row-major order, see
 * attnDot4), so they are uploaded once per call instead of once per kernel run.
 */
export const LOGIT_NATIVE = [flatElement('attnBiasAt', 'bias'), flatElement('attnMaskAt', 'keyMask')];

/** The logit parts reading the key mask and bias as gpu.js arrays, or (vectorized, WebGL2) straight from their textures. */
function logitParts(vectorized: boolean): string {
  return vectorized
    ? logitPartsSource(
        `attnMaskAt(rowInfo[rr][${ROW_INFO.batch}], j, Lk)`,
        `attnBiasAt(rowInfo[rr][${ROW_INFO.biasRow}], j * biasKeyStride, biasKeyStride * (Lk - 1.0) + 1.0)`,
      )
    : logitPartsSource(
        `keyMask[rowInfo[rr][${ROW_INFO.batch}]][j]`,
        `bias[rowInfo[rr][${ROW_INFO.biasRow}]][j * biasKeyStride]`,
      );
}

/** The arguments every kernel that rebuilds a logit takes. */
export const LOGIT_PARAMS = [
  'bias',
  'keyMask',
  'rowInfo',
  'j0',
  'Lk',
  'biasKeyStride',
  'hasBias',
  'hasMask',
  'causal',
  'win',
  'negInf',
] as const;

/** The scores kernel's body around its dot product (`dotProduct` sets `dot` from `qRow`, `kRow`, `D`). */
function scoresBody(dotProduct: string): string {
  return `  const rr = this.thread.y;
  const j = j0 + this.thread.x;
  if (j >= Lk) {
    return 0.0;
  }
  const pos = rowInfo[rr][${ROW_INFO.position}];
  if (causal > 0.5 && j > pos) {
    return 0.0;
  }
  if (win > 0.5) {
    if (pos - j >= win) {
      return 0.0;
    }
    if (causal < 0.5 && j - pos >= win) {
      return 0.0;
    }
  }
  const qRow = rowInfo[rr][${ROW_INFO.qRow}];
  const kRow = rowInfo[rr][${ROW_INFO.kvBase}] + j;
  let dot = 0.0;
  ${dotProduct}
  let s = scale * dot;
  if (softcap > 0.0) {
    s = softcap * attnTanh(s / softcap);
  }
  return s;`;
}

/**
 * WebGL2 only: the dot product reads q and k four floats at a time with texelFetch, straight from the
 * textures gpu.js uploads its inputs to (four floats a texel, row-major, uniforms `user_<name>`,
 * pinned by gpu.js 2.24.1). The host pads D to a multiple of 4 so every row starts on a texel.
 */
const DOT4 = {
  name: 'attnDot4',
  source: `float attnDot4(float qRow, float kRow, float D4) {
  int n = int(D4);
  int qt = int(qRow) * n;
  int kt = int(kRow) * n;
  int qw = user_qSize.x;
  int kw = user_kSize.x;
  ivec2 qc = ivec2(qt - (qt / qw) * qw, qt / qw);
  ivec2 kc = ivec2(kt - (kt / kw) * kw, kt / kw);
  float s = 0.0;
  for (int t = 0; t < n; t++) {
    s += dot(texelFetch(user_q, qc, 0), texelFetch(user_k, kc, 0));
    qc.x += 1;
    if (qc.x == qw) { qc.x = 0; qc.y += 1; }
    kc.x += 1;
    if (kc.x == kw) { kc.x = 0; kc.y += 1; }
  }
  return s;
}`,
};

/**
 * scale -> softcap -> + bias + ALiBi -> masks. Output `[tile, rows]`: thread.x = key in the tile,
 * thread.y = row. Keys past `Lk` (the ragged last tile) are masked like any other. With `webgl2`,
 * `D` is the padded width in texels (D4) and q, k rows are padded to it.
 */
export function scoresKernel(webgl2: boolean) {
  return defineKernel({
    name: 'scores',
    loopMaxIterations: LOOP_MAX,
    nativeFunctions: webgl2 ? [...NATIVE, DOT4] : NATIVE,
    params: ['q', 'k', ...LOGIT_PARAMS, 'D', 'scale', 'softcap'],
    body: scoresBody(
      webgl2
        ? 'dot = attnDot4(qRow, kRow, D);'
        : `for (let d = 0; d < D; d++) {
    dot += q[qRow][d] * k[kRow][d];
  }`,
    ),
  });
}

/** Running max of the logits `a + bias + alibi` over visible keys, NaN-propagating. Output `[1, rows]`. WebGL1; WebGL2 runs forward-packed.ts. */
export function rowMaxKernel() {
  return defineKernel({
    name: 'rowMax',
    loopMaxIterations: LOOP_MAX,
    nativeFunctions: NATIVE,
    params: ['scores', 'mPrev', 'tile', ...LOGIT_PARAMS],
    body: `  const rr = this.thread.y;
  let m = mPrev[rr][0];
  for (let t = 0; t < tile; t++) {
    const j = j0 + t;
    ${logitParts(false)}
    if (visible > 0.5) {
      m = attnNanMax(m, scores[rr][t] + biasValue + alibi);
    }
  }
  return m;`,
  });
}

/**
 * `p = exp(logit - m)` for a visible key, 0 for a masked one (so a weight is `p / l`, NaN for every key
 * when the denominator is NaN, as in the reference); 0 for a row with nothing visible yet
 * (m = -inf); NaN for every key when m is NaN, as the reference gives. NaN and underflow are decided
 * here, not left to GLSL exp (undefined for NaN; an approximation near -inf).
 */
const expShifted = (vectorized: boolean) => `const mm = m[rr][0];
  if (mm == negInf) {
    return 0.0;
  }
  if (attnIsNan(mm) > 0.5) {
    return mm;
  }
  const j = j0 + this.thread.x;
  ${logitParts(vectorized)}
  let p = 0.0;
  if (visible > 0.5) {
    const x = biasValue - mm + alibi + scores[rr][this.thread.x];
    if (attnIsNan(x) > 0.5) {
      p = x;
    } else {
      if (x >= -104.0) {
        p = Math.exp(x);
      }
    }
  }`;

/** Unnormalised probabilities of one tile. Output `[tile, rows]`. WebGL1; WebGL2 runs forward-packed.ts. */
export function probsKernel() {
  return defineKernel({
    name: 'probs',
    loopMaxIterations: LOOP_MAX,
    nativeFunctions: NATIVE,
    params: ['scores', 'm', ...LOGIT_PARAMS],
    body: `  const rr = this.thread.y;
  ${expShifted(false)}
  return p;`,
  });
}

const ALPHA = `const mp = mPrev[rr][0];
  let alpha = 0.0;
  if (mp != negInf) {
    alpha = mp - mNew[rr][0];
    if (attnIsNan(alpha) < 0.5) {
      alpha = Math.exp(alpha);
    }
  }`;

/**
 * The running weighted sum of values and the softmax denominator, both rescaled by
 * `exp(mPrev - mNew)` as the running max moves (NaN when that difference is NaN). A zero weight is
 * skipped, so an infinite or NaN value in a masked key never leaks (0 * inf = NaN).
 * Output `[Dv + 1, rows]`, column `Dv` the denominator. The portable (WebGL1) form: WebGL2 runs
 * forward-packed.ts's accumulate, four value columns a texel.
 */
export function accumulateKernel() {
  return defineKernel({
    name: 'accumulate',
    loopMaxIterations: LOOP_MAX,
    nativeFunctions: NATIVE,
    params: ['probs', 'v', 'accPrev', 'mPrev', 'mNew', 'rowInfo', 'j0', 'tile', 'Dv', 'negInf'],
    body: `  const rr = this.thread.y;
  const d = this.thread.x;
  ${ALPHA}
  const vBase = rowInfo[rr][${ROW_INFO.kvBase}] + j0;
  let sum = 0.0;
  for (let t = 0; t < tile; t++) {
    const p = probs[rr][t];
    if (p != 0.0) {
      if (d < Dv) {
        sum += p * v[vBase + t][d];
      } else {
        sum += p;
      }
    }
  }
  if (alpha == 0.0) {
    return sum;
  }
  return alpha * accPrev[rr][d] + sum;`,
  });
}

/** WebGL2: column `d` of the RGBA accumulator of row `rr` (`groups` texels a row). */
const ACC_AT = {
  name: 'attnAccAt',
  source: `float attnAccAt(float rr, float d, float groups) {
  int col = int(d);
  int ai = int(rr) * int(groups) + col / 4;
  int aw = user_accSize.x;
  return texelFetch(user_acc, ivec2(ai - (ai / aw) * aw, ai / aw), 0)[col - (col / 4) * 4];
}`,
};

/** How a kernel with an `acc` argument reads column `d` of row `rr`, per layout. */
function accAt(vectorized: boolean, d: string): string {
  return vectorized ? `attnAccAt(rr, ${d}, groups)` : `acc[rr][${d}]`;
}

/** Initial running max: the sink logit, or -inf. Output `[1, rows]`. */
export const initMaxKernel = defineKernel({
  name: 'initMax',
  loopMaxIterations: 1,
  params: ['rowInfo'],
  body: `  return rowInfo[this.thread.y][${ROW_INFO.sink}];`,
});

/** Initial accumulator: zeros, and a denominator of exp(sink - sink) = 1 when a sink is present. */
export function initAccKernel(vectorized: boolean) {
  if (vectorized) {
    return defineKernel({
      name: 'initAcc',
      loopMaxIterations: 1,
      returnType: 'Array(4)',
      nativeFunctions: [
        {
          name: 'attnInitAcc',
          source: `vec4 attnInitAcc(float c, float Dv, float one) {
  vec4 r = vec4(0.0);
  int d = int(Dv) - int(c) * 4;
  if (d == 0) r.x = one;
  if (d == 1) r.y = one;
  if (d == 2) r.z = one;
  if (d == 3) r.w = one;
  return r;
}`,
        },
      ],
      params: ['rowInfo', 'Dv', 'negInf'],
      body: `  let one = 1.0;
  if (rowInfo[this.thread.y][${ROW_INFO.sink}] == negInf) {
    one = 0.0;
  }
  return attnInitAcc(this.thread.x, Dv, one);`,
    });
  }
  return defineKernel({
    name: 'initAcc',
    loopMaxIterations: 1,
    params: ['rowInfo', 'Dv', 'negInf'],
    body: `  if (this.thread.x < Dv) {
    return 0.0;
  }
  const sink = rowInfo[this.thread.y][${ROW_INFO.sink}];
  if (sink == negInf) {
    return 0.0;
  }
  return 1.0;`,
  });
}

/**
 * Output `[Dv + 1, rows]`: the attention output in columns `0..Dv-1` and `lse = m + ln(l)` in column
 * `Dv`. A row whose max is -inf saw no visible key and no sink: zeros and lse = -inf.
 */
export function finalizeKernel(vectorized: boolean) {
  return defineKernel({
    name: 'finalize',
    loopMaxIterations: 1,
    nativeFunctions: vectorized ? [...NATIVE, ACC_AT] : NATIVE,
    params: ['acc', 'm', 'Dv', 'groups', 'negInf'],
    body: `  const rr = this.thread.y;
  const d = this.thread.x;
  const mm = m[rr][0];
  if (mm == negInf) {
    if (d < Dv) {
      return 0.0;
    }
    return negInf;
  }
  const l = ${accAt(vectorized, 'Dv')};
  if (d < Dv) {
    return ${accAt(vectorized, 'd')} / l;
  }
  if (attnIsNan(l) > 0.5) {
    return l;
  }
  return mm + Math.log(l);`,
  });
}

/** The attention pattern of one tile, from the final max and denominator. Output `[tile, rows]`. */
export function weightsKernel(vectorized: boolean) {
  return defineKernel({
    name: 'weights',
    loopMaxIterations: LOOP_MAX,
    nativeFunctions: vectorized ? [...NATIVE, ACC_AT, ...LOGIT_NATIVE] : NATIVE,
    params: ['scores', 'm', 'acc', 'Dv', 'groups', ...LOGIT_PARAMS],
    body: `  const rr = this.thread.y;
  ${expShifted(vectorized)}
  return p / ${accAt(vectorized, 'Dv')};`,
  });
}

/** `c = a @ b (+ bias)` over a block of the output: `[cols, rows]` starting at `(n0, m0)`. */
export const matmulKernel = defineKernel({
  name: 'matmul',
  loopMaxIterations: LOOP_MAX,
  params: ['a', 'b', 'bias', 'm0', 'n0', 'K', 'hasBias'],
  body: `  const row = m0 + this.thread.y;
  const col = n0 + this.thread.x;
  let sum = 0.0;
  if (hasBias > 0.5) {
    sum = bias[0][col];
  }
  for (let t = 0; t < K; t++) {
    sum += a[row][t] * b[t][col];
  }
  return sum;`,
});

/**
 * WebGL2 only: copies an uploaded input (4 floats a texel) into a kernel texture `[width, height]` of
 * RGBA texels in the same flat order, so q, k and v are uploaded once per call and then stay on the
 * GPU for every tile (gpu.js re-uploads array arguments on every kernel run).
 */
export const packKernel = defineKernel({
  name: 'pack',
  loopMaxIterations: 1,
  returnType: 'Array(4)',
  nativeFunctions: [
    {
      name: 'attnPack',
      source: `vec4 attnPack(float x, float y, float width, float texels) {
  int t = int(y) * int(width) + int(x);
  if (t >= int(texels)) return vec4(0.0);
  int w = user_dataSize.x;
  return texelFetch(user_data, ivec2(t - (t / w) * w, t / w), 0);
}`,
    },
  ],
  params: ['data', 'width', 'texels'],
  body: `  return attnPack(this.thread.x, this.thread.y, width, texels);`,
});
