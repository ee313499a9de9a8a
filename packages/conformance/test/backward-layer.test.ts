import {
  ALL_FEATURES,
  type AttentionGradients,
  type AttentionProblem,
  createBackend,
  createReferenceBackend,
  referenceAttentionBackwardProblem64,
  referenceAttentionProblem64,
  referenceMatmul64,
  referenceMultiHeadAttentionBackward64,
  roundGradients,
} from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { naiveMultiHeadAttentionBackward32 } from '../src/cases/backward-layer.js';
import { runConformance } from '../src/index.js';

const FILTER = 'backward-layer/';

/** The float64 reference as a backend, with an optional bug planted in its attention backward. */
function referenceWith(
  plant: ((gradients: AttentionGradients, problem: AttentionProblem) => AttentionGradients) | null,
  features = [...ALL_FEATURES, 'backward' as const],
) {
  return createBackend({
    name: plant === null ? 'reference-like' : 'broken-backward',
    capabilities: () => ({
      features,
      limits: {},
      tolerance: { atol: 1e-7, rtol: 1e-6 },
      deterministic: true,
      engine: 'test wrapper of the float64 reference',
      threads: 1,
      notes: [],
    }),
    init: async () => {},
    attention: async (problem) => {
      const { output, lse, weights } = referenceAttentionProblem64(problem);
      return {
        output: Float32Array.from(output),
        ...(lse && { lse: Float32Array.from(lse) }),
        ...(weights && { weights: Float32Array.from(weights) }),
      };
    },
    ...(features.includes('backward') && {
      attentionBackward: async (problem: AttentionProblem & { gradOutput: Float32Array }) => {
        const gradients = roundGradients(referenceAttentionBackwardProblem64(problem));
        return plant === null ? gradients : plant(gradients, problem);
      },
    }),
    matmul: async ({ a, b, bias, shape }) =>
      Float32Array.from(referenceMatmul64(a, b, shape.m, shape.k, shape.n, bias)),
    memory: () => ({ hostBytes: 0, deviceBytes: 0 }),
    dispose: async () => {},
  });
}

describe('backward-layer/* cases', () => {
  it('pass on the reference backend, each comparing gradients', async () => {
    const report = await runConformance(createReferenceBackend, { filter: FILTER, seed: 5 });
    expect(report.cases.filter((c) => c.status !== 'passed').map((c) => `${c.id}: ${c.message}`)).toEqual([]);
    expect(report.totals.passed).toBe(10);
    expect(report.totals.cases).toBe(10);
    const compared = report.cases.filter((c) => c.expectation !== 'reject-invalid-argument');
    expect(compared.map((c) => c.expectation).sort()).toEqual([
      ...Array(2).fill('behaviour'), // determinism, memory
      ...Array(7).fill('match-reference'),
    ]);
    for (const c of compared) expect(c.worstAbsError).not.toBeNull();
  });

  it("expect 'unsupported' from a backend without the backward feature", async () => {
    const report = await runConformance(() => referenceWith(null, [...ALL_FEATURES]), { filter: FILTER });
    expect(report.cases.filter((c) => c.status !== 'passed').map((c) => `${c.id}: ${c.message}`)).toEqual([]);
    const expectations = new Set(report.cases.map((c) => c.expectation));
    expect(expectations).toEqual(new Set(['reject-unsupported', 'reject-invalid-argument']));
  });

  const broken: Record<string, (g: AttentionGradients, p: AttentionProblem) => AttentionGradients> = {
    'gradQ off by the scale': (g, p) => ({ ...g, gradQ: g.gradQ.map((x) => x / p.scale) }),
    'gradK not summed over a GQA group (first query head only)': (g, p) => {
      if (p.shape.kvHeads === p.shape.queryHeads) return g;
      return { ...g, gradK: g.gradK.map((x) => x * (p.shape.kvHeads / p.shape.queryHeads)) };
    },
    'sink gradient with the wrong sign': (g) => ({
      ...g,
      ...(g.gradSinks && { gradSinks: g.gradSinks.map((x) => -x) }),
    }),
    'gradV transposed heads': (g, p) => {
      const { batch: B, kvHeads: H, keyLength: L, valueDim: Dv } = p.shape;
      if (H === 1) return { ...g, gradV: g.gradV.map((x) => x * 1.001) };
      const out = new Float32Array(g.gradV.length);
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++)
          out.set(
            g.gradV.subarray((b * H + h) * L * Dv, (b * H + h + 1) * L * Dv),
            (b * H + ((h + 1) % H)) * L * Dv,
          );
      return { ...g, gradV: out };
    },
  };
  for (const [name, plant] of Object.entries(broken)) {
    it(`fail on a backend with a planted bug: ${name}`, async () => {
      const report = await runConformance(() => referenceWith(plant), { filter: FILTER, seed: 5 });
      expect(report.totals.failed).toBeGreaterThan(0);
    });
  }
});

describe('naiveMultiHeadAttentionBackward32, the float32 yardstick', () => {
  it('is close to the float64 reference, and not equal to it', () => {
    let state = 3;
    const random = (n: number) =>
      Float32Array.from({ length: n }, () => {
        state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
        return state / 2 ** 31 - 1;
      });
    const shape = {
      batch: 2,
      queryLength: 4,
      keyLength: 5,
      modelDim: 6,
      queryHeads: 2,
      kvHeads: 1,
      headDim: 3,
      valueDim: 4,
    };
    const inputs = {
      x: random(2 * 4 * 6),
      context: random(2 * 5 * 6),
      weights: {
        wq: random(36),
        wk: random(18),
        wv: random(24),
        wo: random(48),
        bq: random(6),
        bo: random(6),
      },
      shape,
    };
    const options = { causal: true, sinks: new Float32Array([0.5, -0.5]), softcap: 3 };
    const gradOutput = random(2 * 4 * 6);
    const naive = naiveMultiHeadAttentionBackward32(inputs, gradOutput, options);
    const reference = referenceMultiHeadAttentionBackward64(inputs, gradOutput, options);
    const pairs: [ArrayLike<number> | undefined, ArrayLike<number> | undefined][] = [
      [naive.gradX, reference.gradX],
      [naive.gradContext, reference.gradContext],
      [naive.gradWeights.wq, reference.gradWeights.wq],
      [naive.gradWeights.wk, reference.gradWeights.wk],
      [naive.gradWeights.wv, reference.gradWeights.wv],
      [naive.gradWeights.wo, reference.gradWeights.wo],
      [naive.gradWeights.bq, reference.gradWeights.bq],
      [naive.gradWeights.bo, reference.gradWeights.bo],
      [naive.gradSinks, reference.gradSinks],
    ];
    let worst = 0;
    for (const [n, r] of pairs) {
      expect(n?.length).toBe(r?.length);
      for (let i = 0; i < (r as ArrayLike<number>).length; i++) {
        const error = Math.abs((n as ArrayLike<number>)[i] - (r as ArrayLike<number>)[i]);
        expect(error).toBeLessThan(1e-5 + 1e-4 * Math.abs((r as ArrayLike<number>)[i]));
        worst = Math.max(worst, error);
      }
    }
    expect(worst).toBeGreaterThan(0); // it does round
    expect(naive.gradWeights.bk).toBeUndefined();
  });
});
