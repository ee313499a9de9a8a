import { type AttentionBackend, type BackendCapabilities, createBackend } from './backend.js';
import { referenceAttentionBackwardProblem64, roundGradients } from './backward.js';
import { createReferenceKVCache } from './cache-reference.js';
import { ALL_FEATURES } from './features.js';
import { referenceAttentionProblem64, referenceMatmul64 } from './reference.js';

const capabilities: BackendCapabilities = {
  features: [...ALL_FEATURES, 'kvCache', 'backward'],
  limits: {},
  // float64 rounded once to float32: half an ulp, relative 6e-8
  tolerance: { atol: 1e-7, rtol: 1e-6 },
  deterministic: true,
  engine: 'float64 reference (plain JavaScript loops)',
  threads: 1,
  notes: ['The executable definition, not a fast path: O(Lq*Lk) per head and slow by design.'],
};

/**
 * The float64 reference as a backend (results rounded to float32). Slow by design; useful to check a
 * conformance harness, or as the "equivalent to" behind every other backend.
 */
export function createReferenceBackend(): AttentionBackend {
  return createBackend({
    name: 'reference',
    capabilities: () => capabilities,
    init: async () => {},
    attention: async (problem) => {
      const result = referenceAttentionProblem64(problem);
      return {
        output: Float32Array.from(result.output),
        ...(result.lse && { lse: Float32Array.from(result.lse) }),
        ...(result.weights && { weights: Float32Array.from(result.weights) }),
      };
    },
    attentionBackward: async (problem) => roundGradients(referenceAttentionBackwardProblem64(problem)),
    matmul: async ({ a, b, bias, shape }) =>
      Float32Array.from(referenceMatmul64(a, b, shape.m, shape.k, shape.n, bias)),
    createKVCache: (config) => createReferenceKVCache(config).implementation(),
    memory: () => ({ hostBytes: 0, deviceBytes: 0 }),
    dispose: async () => {},
  });
}

/** Every attnkit backend module default-exports a zero-argument factory; the CLI relies on it. */
export default createReferenceBackend;
