import { type AttentionBackend, createBackend, type Tolerance, validateAttention } from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import {
  logitErrorBound,
  naiveAttention32,
  naiveAttentionBackward32,
  naiveBackwardOfForward32,
  naiveMatmul32,
  runConformance,
} from '../src/index.js';
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

/** `x` with the last axis (length `n`) of every row reversed. */
function reverseRows(x: Float32Array, n: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let row = 0; row < x.length; row += n) for (let d = 0; d < n; d++) out[row + d] = x[row + n - 1 - d];
  return out;
}

/**
 * A naive float32 backend whose backward rounds its logits differently from its forward, as a fused
 * kernel does: the backward receives the forward's float32 output and lse and recomputes the logits
 * with the head dimension reversed (the same exact dot products, summed in the other order). Its
 * logit errors do not cancel against the lse's any more.
 */
function otherOrderBackend(tolerance: Tolerance): AttentionBackend {
  return createBackend({
    name: 'naive-float32-other-order',
    capabilities: () => capabilitiesOf({ tolerance }),
    init: async () => {},
    attention: async (problem) => naiveAttention32(problem),
    attentionBackward: async (problem) => {
      const D = problem.shape.headDim;
      const reversed = { ...problem, q: reverseRows(problem.q, D), k: reverseRows(problem.k, D) };
      const grads = naiveBackwardOfForward32(reversed, problem.output, problem.lse, problem.gradOutput);
      return { ...grads, gradQ: reverseRows(grads.gradQ, D), gradK: reverseRows(grads.gradK, D) };
    },
    matmul: async ({ a, b, bias, shape }) => naiveMatmul32(a, b, shape.m, shape.k, shape.n, bias),
    memory: () => ({ hostBytes: 0, deviceBytes: 0 }),
    dispose: async () => {},
  });
}

describe('the logit error bound', () => {
  it('one query, one key: hand-derived values', () => {
    // s = 2 * 3 = 6 = lse (one key, no sink), so P = 1; eps = u (sqrt(1) * 6 + |s| 6 + 2 |lse| 12) = 24u.
    // dP = dO v = 0.5 * 4 = 2 = D_i, so dP - D_i = 0 and dD = P |dP| eps = 48u: a = 48u.
    // gradQ: scale a |k| = 144u; gradK: scale a |q| = 96u; gradV: P eps |dO| = 12u.
    const u = 2 ** -24;
    const problem = validateAttention(
      {
        q: Float32Array.of(2),
        k: Float32Array.of(3),
        v: Float32Array.of(4),
        shape: { batch: 1, queryHeads: 1, queryLength: 1, headDim: 1 },
      },
      { scale: 1 },
    );
    const bound = logitErrorBound(problem, Float32Array.of(0.5));
    expect(bound.gradQ[0] / u).toBeCloseTo(144, 9);
    expect(bound.gradK[0] / u).toBeCloseTo(96, 9);
    expect(bound.gradV[0] / u).toBeCloseTo(12, 9);
    expect(bound.gradBias).toBeUndefined();
    expect(bound.gradSinks).toBeUndefined();
  });

  it('a sink: its gradient is bounded by the lse ulp and dD', () => {
    // sink 0 and s = 0: lse = ln 2, P = P_sink = 1/2, O = v/2 = 2, D_i = dO O = 1, dP = 2.
    // eps = u (0 + 0 + 2 ln 2); dD = P |dP| eps = eps; gradSinks: P_sink (2u ln2 |D_i| + dD) = 2u ln2.
    const u = 2 ** -24;
    const problem = validateAttention(
      {
        q: Float32Array.of(0),
        k: Float32Array.of(3),
        v: Float32Array.of(4),
        shape: { batch: 1, queryHeads: 1, queryLength: 1, headDim: 1 },
      },
      { scale: 1, sinks: Float32Array.of(0) },
    );
    const bound = logitErrorBound(problem, Float32Array.of(0.5));
    expect((bound.gradSinks as Float64Array)[0] / u).toBeCloseTo(2 * Math.LN2, 9);
  });

  // fudge 2, what the float32 backends declare: the naive yardstick is one rounding order's error,
  // and another order's may exceed it a little anywhere (here gradV in alibi-causal, 1.1x)
  it('a backward that rounds its logits unlike its forward passes every backward case with fudge 2', async () => {
    const report = await runConformance(() => otherOrderBackend({ atol: 1e-9, rtol: 1e-9, fudge: 2 }), {
      filter: /^backward\//,
      seed: 3,
    });
    const failed = report.cases.filter((c) => c.status === 'failed').map((c) => `${c.id}: ${c.message}`);
    expect(failed).toEqual([]);
  });
});

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
