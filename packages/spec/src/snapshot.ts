import type { AttentionBackwardProblem } from './backward.js';
import type { LayerProblem } from './layer.js';
import type { AttentionProblem, MatmulProblem } from './types.js';
import type { ResolvedOptions } from './validate.js';

const copyOrNull = <T extends Float32Array | Uint8Array>(array: T | null): T | null =>
  array === null ? null : (array.slice() as T);

/**
 * A copy of the option tensors of a resolved problem (bias data, keyMask, alibiSlopes, sinks): what
 * a device call snapshots, its q/k/v being device handles.
 */
export function snapshotOptions<O extends ResolvedOptions>(options: O): O {
  return {
    ...options,
    keyMask: copyOrNull(options.keyMask),
    bias: options.bias === null ? null : { ...options.bias, data: options.bias.data.slice() },
    alibiSlopes: copyOrNull(options.alibiSlopes),
    sinks: copyOrNull(options.sinks),
  };
}

/**
 * A copy of every input array of a validated problem (q, k, v, bias data, keyMask, alibiSlopes,
 * sinks). A backend that cannot read the inputs before its call returns (init still pending, or a
 * kernel busy with an earlier call) works on this copy, so the caller may overwrite or transfer its
 * arrays as soon as the call returns.
 */
export function snapshotAttentionProblem(problem: AttentionProblem): AttentionProblem {
  return {
    ...snapshotOptions(problem),
    q: new Float32Array(problem.q),
    k: new Float32Array(problem.k),
    v: new Float32Array(problem.v),
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

/** {@link snapshotAttentionProblem} for a layer call (x, context, every weight and bias, the options). */
export function snapshotLayerProblem(problem: LayerProblem): LayerProblem {
  const w = problem.weights;
  return {
    ...problem,
    x: problem.x.slice(),
    context: copyOrNull(problem.context),
    weights: {
      wq: w.wq.slice(),
      wk: w.wk.slice(),
      wv: w.wv.slice(),
      wo: w.wo.slice(),
      bq: copyOrNull(w.bq),
      bk: copyOrNull(w.bk),
      bv: copyOrNull(w.bv),
      bo: copyOrNull(w.bo),
    },
    options: snapshotOptions(problem.options),
  };
}
