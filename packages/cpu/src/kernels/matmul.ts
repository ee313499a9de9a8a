import { allocating, type MatmulProblem } from '@attnkit/spec';
import type { Scratch } from '../scratch.js';

/** Columns of `c` accumulated at once: four rows of this many float64 stay in L1. */
const COLUMN_BLOCK = 256;

/**
 * `a [m, k] @ b [k, n] (+ bias [n])` in i-k-j order: four rows of `a` share each streamed row of `b`,
 * accumulators are float64 and each sum starts from the bias and adds terms in `k` order, exactly as
 * the float64 reference does, so the result is the reference's rounded to float32.
 */
export function blockedMatmul(problem: MatmulProblem, scratch: Scratch): Float32Array {
  const { a, b, bias } = problem;
  const { m, k, n } = problem.shape;
  const out = allocating('matmul', 'output', m * n * 4, () => new Float32Array(m * n));
  const nb = Math.min(COLUMN_BLOCK, n);
  scratch.ensureMatmul(nb);
  const acc = scratch.matmulAcc;
  const r1 = nb;
  const r2 = 2 * nb;
  const r3 = 3 * nb;
  for (let c0 = 0; c0 < n; c0 += nb) {
    const cw = Math.min(nb, n - c0);
    let i = 0;
    for (; i + 3 < m; i += 4) {
      for (let j = 0; j < cw; j++) {
        const init = bias === null ? 0 : bias[c0 + j];
        acc[j] = init;
        acc[r1 + j] = init;
        acc[r2 + j] = init;
        acc[r3 + j] = init;
      }
      const a0 = i * k;
      const a1 = a0 + k;
      const a2 = a1 + k;
      const a3 = a2 + k;
      for (let t = 0; t < k; t++) {
        const x0 = a[a0 + t];
        const x1 = a[a1 + t];
        const x2 = a[a2 + t];
        const x3 = a[a3 + t];
        const bo = t * n + c0;
        for (let j = 0; j < cw; j++) {
          const y = b[bo + j];
          acc[j] += x0 * y;
          acc[r1 + j] += x1 * y;
          acc[r2 + j] += x2 * y;
          acc[r3 + j] += x3 * y;
        }
      }
      for (let j = 0; j < cw; j++) {
        out[i * n + c0 + j] = acc[j];
        out[(i + 1) * n + c0 + j] = acc[r1 + j];
        out[(i + 2) * n + c0 + j] = acc[r2 + j];
        out[(i + 3) * n + c0 + j] = acc[r3 + j];
      }
    }
    for (; i < m; i++) {
      for (let j = 0; j < cw; j++) acc[j] = bias === null ? 0 : bias[c0 + j];
      const a0 = i * k;
      for (let t = 0; t < k; t++) {
        const x0 = a[a0 + t];
        const bo = t * n + c0;
        for (let j = 0; j < cw; j++) acc[j] += x0 * b[bo + j];
      }
      for (let j = 0; j < cw; j++) out[i * n + c0 + j] = acc[j];
    }
  }
  return out;
}
