/**
 * Kernel sources in gpu.js's JavaScript dialect, kept as strings so no bundler or compiler rewrites
 * them before gpu.js parses them. Every size and option is a runtime argument (a uniform), never a
 * constant, so one compiled shader serves every shape: only `loopMaxIterations` is compiled in.
 *
 * Layout: a "row" is one query row `(b, h, i)`; a chunk of rows is processed at once and a 2-d
 * texture `[width, rows]` is read as `tex[row][x]`. `rowInfo [8, rows]` carries per-row facts that
 * the host computes exactly (integer arithmetic in float shaders is a rounding hazard):
 * `0 qRow, 1 kvBase = (b*Hkv + g)*Lk, 2 position p_i, 3 batch b, 4 bias row, 5 ALiBi slope, 6 sink`.
 */
import type { KernelSpec } from './gl.js';

/** Column indices of the per-row table. */
export const ROW_INFO = {
  qRow: 0,
  kvBase: 1,
  position: 2,
  batch: 3,
  biasRow: 4,
  slope: 5,
  sink: 6,
  width: 8,
} as const;

/**
 * GLSL helpers, valid in GLSL ES 1.00 and 3.00. NaN is tested by comparisons rather than `isnan`
 * (absent in ES 1.00) and `max` is not trusted with NaN: the spec propagates NaN in a visible logit.
 * tanh is written out because ES 1.00 lacks it; the form keeps |x| large from overflowing.
 */
const NATIVE = [
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
  {
    name: 'attnTanh',
    source: `float attnTanh(float x) {
  float e = exp(-2.0 * abs(x));
  float t = (1.0 - e) / (1.0 + e);
  return x < 0.0 ? -t : t;
}`,
  },
] as const;

/** Largest loop trip count compiled into the shaders: loops break on their runtime bound first. */
export const LOOP_MAX = 1 << 24;

/**
 * scale -> softcap -> + bias + ALiBi -> masks. Output `[tile, rows]`: thread.x = key in the tile,
 * thread.y = row. Keys past `Lk` (the ragged last tile) are masked like any other.
 */
export const scoresKernel: KernelSpec = {
  name: 'scores',
  loopMaxIterations: LOOP_MAX,
  nativeFunctions: NATIVE,
  source: `function scores(q, k, bias, keyMask, rowInfo, j0, Lk, D, scale, softcap, biasKeyStride, hasBias, hasMask, causal, win, negInf) {
  const rr = this.thread.y;
  const j = j0 + this.thread.x;
  if (j >= Lk) {
    return negInf;
  }
  const pos = rowInfo[rr][2];
  if (causal > 0.5 && j > pos) {
    return negInf;
  }
  if (win > 0.5) {
    if (pos - j >= win) {
      return negInf;
    }
    if (causal < 0.5 && j - pos >= win) {
      return negInf;
    }
  }
  if (hasMask > 0.5) {
    if (keyMask[rowInfo[rr][3]][j] < 0.5) {
      return negInf;
    }
  }
  const qRow = rowInfo[rr][0];
  const kRow = rowInfo[rr][1] + j;
  let dot = 0.0;
  for (let d = 0; d < D; d++) {
    dot += q[qRow][d] * k[kRow][d];
  }
  let s = scale * dot;
  if (softcap > 0.0) {
    s = softcap * attnTanh(s / softcap);
  }
  if (hasBias > 0.5) {
    s += bias[rowInfo[rr][4]][j * biasKeyStride];
  }
  const slope = rowInfo[rr][5];
  if (slope != 0.0) {
    s -= slope * (pos - j);
  }
  return s;
}`,
};

/** Running max: `m' = max(m, max_t S[row][t])`, NaN-propagating. Output `[1, rows]`. */
export const rowMaxKernel: KernelSpec = {
  name: 'rowMax',
  loopMaxIterations: LOOP_MAX,
  nativeFunctions: NATIVE,
  source: `function rowMax(scores, mPrev, tile) {
  const rr = this.thread.y;
  let m = mPrev[rr][0];
  for (let t = 0; t < tile; t++) {
    m = attnNanMax(m, scores[rr][t]);
  }
  return m;
}`,
};

/**
 * `p = exp(s - m)`: 0 for a masked key (its logit is -inf) and for a row with nothing visible yet
 * (m = -inf, where exp(-inf - -inf) would be NaN); NaN when m is NaN, as the reference gives.
 */
export const probsKernel: KernelSpec = {
  name: 'probs',
  loopMaxIterations: LOOP_MAX,
  nativeFunctions: NATIVE,
  source: `function probs(scores, m, negInf) {
  const mm = m[this.thread.y][0];
  if (mm == negInf) {
    return 0.0;
  }
  if (attnIsNan(mm) > 0.5) {
    return mm;
  }
  const s = scores[this.thread.y][this.thread.x];
  if (s == negInf) {
    return 0.0;
  }
  return Math.exp(s - mm);
}`,
};

/**
 * Output `[Dv + 1, rows]`: columns `0..Dv-1` the unnormalised weighted sum of values, column `Dv` the
 * softmax denominator, both rescaled by `exp(mPrev - mNew)` as the running max moves. A zero weight
 * is skipped, so an infinite or NaN value in a masked key never leaks (0 * inf = NaN).
 */
export const accumulateKernel: KernelSpec = {
  name: 'accumulate',
  loopMaxIterations: LOOP_MAX,
  nativeFunctions: NATIVE,
  source: `function accumulate(probs, v, accPrev, mPrev, mNew, rowInfo, j0, tile, Dv, negInf) {
  const rr = this.thread.y;
  const d = this.thread.x;
  const mp = mPrev[rr][0];
  let alpha = 0.0;
  if (mp != negInf) {
    alpha = Math.exp(mp - mNew[rr][0]);
  }
  const vBase = rowInfo[rr][1] + j0;
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
  return alpha * accPrev[rr][d] + sum;
}`,
};

/** Initial running max: the sink logit, or -inf. Output `[1, rows]`. */
export const initMaxKernel: KernelSpec = {
  name: 'initMax',
  loopMaxIterations: 1,
  source: `function initMax(rowInfo) {
  return rowInfo[this.thread.y][6];
}`,
};

/** Initial accumulator: zeros, and a denominator of exp(sink - sink) = 1 when a sink is present. */
export const initAccKernel: KernelSpec = {
  name: 'initAcc',
  loopMaxIterations: 1,
  source: `function initAcc(rowInfo, Dv, negInf) {
  if (this.thread.x < Dv) {
    return 0.0;
  }
  const sink = rowInfo[this.thread.y][6];
  if (sink == negInf) {
    return 0.0;
  }
  return 1.0;
}`,
};

/**
 * Output `[Dv + 1, rows]`: the attention output in columns `0..Dv-1` and `lse = m + ln(l)` in column
 * `Dv`. A row whose max is -inf saw no visible key and no sink: zeros and lse = -inf.
 */
export const finalizeKernel: KernelSpec = {
  name: 'finalize',
  loopMaxIterations: 1,
  source: `function finalize(acc, m, Dv, negInf) {
  const rr = this.thread.y;
  const d = this.thread.x;
  const mm = m[rr][0];
  if (mm == negInf) {
    if (d < Dv) {
      return 0.0;
    }
    return negInf;
  }
  const l = acc[rr][Dv];
  if (d < Dv) {
    return acc[rr][d] / l;
  }
  return mm + Math.log(l);
}`,
};

/** The attention pattern of one tile, from the final max and denominator. Output `[tile, rows]`. */
export const weightsKernel: KernelSpec = {
  name: 'weights',
  loopMaxIterations: 1,
  nativeFunctions: NATIVE,
  source: `function weights(scores, m, acc, Dv, negInf) {
  const mm = m[this.thread.y][0];
  if (mm == negInf) {
    return 0.0;
  }
  if (attnIsNan(mm) > 0.5) {
    return mm;
  }
  const s = scores[this.thread.y][this.thread.x];
  if (s == negInf) {
    return 0.0;
  }
  return Math.exp(s - mm) / acc[this.thread.y][Dv];
}`,
};

/** `c = a @ b (+ bias)` over a block of the output: `[cols, rows]` starting at `(n0, m0)`. */
export const matmulKernel: KernelSpec = {
  name: 'matmul',
  loopMaxIterations: LOOP_MAX,
  source: `function matmul(a, b, bias, m0, n0, K, hasBias) {
  const row = m0 + this.thread.y;
  const col = n0 + this.thread.x;
  let sum = 0.0;
  if (hasBias > 0.5) {
    sum = bias[0][col];
  }
  for (let t = 0; t < K; t++) {
    sum += a[row][t] * b[t][col];
  }
  return sum;
}`,
};
