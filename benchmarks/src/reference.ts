import { referenceAttention64 } from '@attnkit/spec';
import type { Workload, WorkloadInputs } from './workloads.js';

/** The spec's float64 reference output for a workload (batch 1, default scale). */
export function referenceFor(w: Workload, inputs: WorkloadInputs): Float64Array {
  return referenceAttention64(
    { q: inputs.q, k: inputs.k, v: inputs.v, shape: inputs.shape },
    { causal: w.causal },
  ).output;
}
