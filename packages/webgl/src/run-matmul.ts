/**
 * The matmul on the GL runtime: `a [m, k] x b [k, n] (+ bias [n])` in output blocks of at most
 * MAX_TEXTURE_SIZE per side and `blockElements` elements, each read back into its place.
 */
import type { MatmulProblem } from '@attnkit/spec';
import type { GlRuntime, KernelOf } from './gl.js';
import { DUMMY } from './inputs.js';
import type { matmulKernel } from './kernels/forward.js';

export function runMatmul(
  runtime: GlRuntime,
  kernel: KernelOf<typeof matmulKernel>,
  problem: MatmulProblem,
  blockElements: number,
): Float32Array {
  const { m, k: K, n } = problem.shape;
  const max = runtime.maxTextureSize;
  const cols = Math.min(n, max);
  const rowsPer = Math.max(1, Math.min(m, max, Math.floor(blockElements / cols)));
  const a = runtime.input(problem.a, K, m);
  const b = runtime.input(problem.b, n, K);
  const bias = problem.bias === null ? runtime.input(DUMMY, 1, 1) : runtime.input(problem.bias, n, 1);
  const out = new Float32Array(m * n);
  for (let m0 = 0; m0 < m; m0 += rowsPer) {
    const rc = Math.min(rowsPer, m - m0);
    for (let n0 = 0; n0 < n; n0 += cols) {
      const cc = Math.min(cols, n - n0);
      const t = kernel.run([cc, rc], { a, b, bias, m0, n0, K, hasBias: problem.bias === null ? 0 : 1 });
      const block = runtime.read(t);
      runtime.release(t);
      for (let r = 0; r < rc; r++) out.set(block.subarray(r * cc, (r + 1) * cc), (m0 + r) * n + n0);
    }
  }
  return out;
}
