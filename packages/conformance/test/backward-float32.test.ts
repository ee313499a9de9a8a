import { type AttentionBackend, createBackend, type Tolerance } from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { naiveAttention32, naiveAttentionBackward32, naiveMatmul32, runConformance } from '../src/index.js';
import { capabilitiesOf } from './broken.js';

/**
 * The naive float32 composition, forward and backward, as a backend. The backward receives the
 * forward's float32 output and lse but recomputes them itself (so its error is exactly the
 * yardstick's): with fudge 1 it must pass every backward case, since its error IS err32.
 */
function naiveBackend(tolerance: Tolerance): AttentionBackend {
  return createBackend({
    name: 'naive-float32',
    capabilities: () => capabilitiesOf({ tolerance }),
    init: async () => {},
    attention: async (problem) => naiveAttention32(problem),
    attentionBackward: async (problem) => naiveAttentionBackward32(problem, problem.gradOutput),
    matmul: async ({ a, b, bias, shape }) => naiveMatmul32(a, b, shape.m, shape.k, shape.n, bias),
    memory: () => ({ hostBytes: 0, deviceBytes: 0 }),
    dispose: async () => {},
  });
}

describe('the backward tolerance model', () => {
  it('the naive float32 backward passes every backward case with fudge 1 and a tiny atol/rtol', async () => {
    const report = await runConformance(() => naiveBackend({ atol: 1e-9, rtol: 1e-9, fudge: 1 }), {
      filter: 'backward/',
      seed: 3,
    });
    const failed = report.cases.filter((c) => c.status === 'failed').map((c) => `${c.id}: ${c.message}`);
    expect(failed).toEqual([]);
  });

  it('without the fudge term, float32 rounding fails the same cases: the yardstick is what lets it pass', async () => {
    const report = await runConformance(() => naiveBackend({ atol: 1e-9, rtol: 1e-9, fudge: 0 }), {
      filter: /^backward\/(default|large-logits|tiles-causal)$/,
      seed: 3,
    });
    expect(report.cases.map((c) => c.status)).toEqual(['failed', 'failed', 'failed']);
  });
});
