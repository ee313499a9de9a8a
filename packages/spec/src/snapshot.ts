import type { AttentionBackwardProblem } from './backward.js';
import type { AttentionProblem, MatmulProblem } from './types.js';

/**
 * A copy of every input array of a validated problem (q, k, v, bias data, keyMask, alibiSlopes,
 * sinks). A backend that cannot read the inputs before its call returns (init still pending, or a
 * kernel busy with an earlier call) works on this copy, so the caller may overwrite or transfer its
 * arrays as soon as the call returns.
 */
export function snapshotAttentionProblem(problem: AttentionProblem): AttentionProblem {
  return {
    ...problem,
    q: new Float32Array(problem.q),
    k: new Float32Array(problem.k),
    v: new Float32Array(problem.v),
    keyMask: problem.keyMask === null ? null : new Uint8Array(problem.keyMask),
    bias: problem.bias === null ? null : { ...problem.bias, data: new Float32Array(problem.bias.data) },
    alibiSlopes: problem.alibiSlopes === null ? null : new Float32Array(problem.alibiSlopes),
    sinks: problem.sinks === null ? null : new Float32Array(problem.sinks),
  };
}

/** {@link snapshotAttentionProblem} for a matmul (a, b, bias). */
export function snapshotMatmulProblem(problem: MatmulProblem): MatmulProblem {
  return {
    ...problem,
    a: new Float32Array(problem.a),
    b: new Float32Array(problem.b),
    bias: problem.bias === null ? null : new Float32Array(problem.bias),
  };
}

/** {@link snapshotAttentionProblem} for a backward call (also output, lse, gradOutput). */
export function snapshotAttentionBackwardProblem(
  problem: AttentionBackwardProblem,
): AttentionBackwardProblem {
  return {
    ...problem,
    ...snapshotAttentionProblem(problem),
    output: new Float32Array(problem.output),
    lse: new Float32Array(problem.lse),
    gradOutput: new Float32Array(problem.gradOutput),
  };
}
