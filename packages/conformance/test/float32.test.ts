import {
  type AttentionBackend,
  createBackend,
  referenceAttention64,
  type Tolerance,
  validateAttention,
} from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import {
  naiveAttention32,
  naiveMatmul32,
  runConformance,
  TOLERANCE_CAP,
  toleranceProblems,
} from '../src/index.js';
import { BROKEN, capabilitiesOf, wrapReference } from './broken.js';

/** A backend that is the naive float32 composition itself, declaring `tolerance`. */
function naiveBackend(tolerance: Tolerance): AttentionBackend {
  return createBackend({
    name: 'naive-float32',
    capabilities: () => capabilitiesOf({ tolerance }),
    init: async () => {},
    attention: async (problem) => naiveAttention32(problem),
    matmul: async ({ a, b, bias, shape }) => naiveMatmul32(a, b, shape.m, shape.k, shape.n, bias),
    memory: () => ({ hostBytes: 0, deviceBytes: 0 }),
    dispose: async () => {},
  });
}

/** Returns zeros whatever it is asked: wrong everywhere except where the answer happens to be 0. */
function constantBackend(tolerance: Tolerance): AttentionBackend {
  return wrapReference({
    name: 'constant',
    capabilities: { tolerance },
    after: (result) => ({
      output: new Float32Array(result.output.length),
      ...(result.lse && { lse: new Float32Array(result.lse.length) }),
      ...(result.weights && { weights: new Float32Array(result.weights.length) }),
    }),
  });
}

describe('the naive float32 composition', () => {
  it('gives the float32 value of the reviewer example (D = 1, logits ~5000), hand-checked', () => {
    // q = 70.123, k = [71.456, 71.47], v = [1, -1], scale 1: the float32 logits 5010.5... and
    // 5011.5... round to a step of 2^-11, so the weight of key 0 moves from 0.27255 to 0.27261.
    const inputs = {
      q: new Float32Array([70.123]),
      k: new Float32Array([71.456, 71.47]),
      v: new Float32Array([1, -1]),
      shape: { batch: 1, queryHeads: 1, queryLength: 1, keyLength: 2, headDim: 1 },
    };
    const problem = validateAttention(inputs, { scale: 1 });
    const naive = naiveAttention32(problem).output[0];
    const exact = referenceAttention64(inputs, { scale: 1 }).output[0];
    expect(exact).toBeCloseTo(-0.4548978, 6);
    expect(naive).toBeCloseTo(-0.4547898, 6);
    // the float64 value by hand: tanh((s1 - s0) / 2) with s1 - s0 = 70.123 * (71.47 - 71.456) in float32 inputs
    const [q, k0, k1] = [Math.fround(70.123), Math.fround(71.456), Math.fround(71.47)];
    expect(exact).toBeCloseTo(-Math.tanh((q * (k1 - k0)) / 2), 12);
  });

  it('fails the rounding cases under the old model (fudge 0) and passes them at fudge 1', async () => {
    const filter = /^rounding\//;
    const old = await runConformance(() => naiveBackend({ atol: 1e-6, rtol: 1e-5 }), { filter, seed: 1 });
    const failed = old.cases.filter((c) => c.status === 'failed').map((c) => c.id);
    expect(failed).toContain('rounding/large-logits-d1-example');
    expect(failed).toContain('rounding/large-logits-d256');
    const honest = await runConformance(() => naiveBackend({ atol: 1e-6, rtol: 1e-5, fudge: 1 }), {
      filter,
      seed: 1,
    });
    expect(honest.cases.filter((c) => c.status !== 'passed').map((c) => `${c.id}: ${c.message}`)).toEqual([]);
    expect(honest.tolerance).toEqual({ atol: 1e-6, rtol: 1e-5, fudge: 1 });
  });
});

describe('declared tolerances are capped', () => {
  it('names every out-of-range field', () => {
    expect(toleranceProblems({ atol: 1e-6, rtol: 1e-5 })).toEqual([]);
    expect(toleranceProblems({ ...TOLERANCE_CAP })).toEqual([]);
    expect(toleranceProblems({ atol: 1e300, rtol: 1e-5 })).toEqual([
      "tolerance.atol 1e+300 is above the suite's cap 0.001",
    ]);
    expect(toleranceProblems({ atol: 0, rtol: 0.02, fudge: 17 })).toEqual([
      "tolerance.rtol 0.02 is above the suite's cap 0.01",
      "tolerance.fudge 17 is above the suite's cap 16",
    ]);
    expect(toleranceProblems({ atol: Number.NaN, rtol: -1, fudge: Number.POSITIVE_INFINITY })).toHaveLength(
      3,
    );
    expect(toleranceProblems(undefined)).toEqual(['tolerance is undefined']);
  });

  it('a constant backend declaring atol 1e300 fails (capabilities and every comparison)', async () => {
    const report = await runConformance(() => constantBackend({ atol: 1e300, rtol: 1e-5 }), {
      filter: /^(lifecycle\/capabilities|options\/|stability\/|sizes\/)/,
      seed: 3,
    });
    const byId = new Map(report.cases.map((c) => [c.id, c]));
    expect(byId.get('lifecycle/capabilities')?.status).toBe('failed');
    expect(byId.get('lifecycle/capabilities')?.message).toMatch(
      /tolerance.atol 1e\+300 is above the suite's cap/,
    );
    const compared = report.cases.filter((c) => c.expectation === 'match-reference');
    expect(compared.length).toBeGreaterThan(30);
    for (const result of compared) {
      expect(result.status, result.id).toBe('failed');
      expect(result.message, result.id).toMatch(/declared tolerance refused/);
    }
  });

  it('the same constant backend with an honest tolerance fails on its values', async () => {
    const report = await runConformance(() => constantBackend({ atol: 1e-6, rtol: 1e-5, fudge: 2 }), {
      filter: /^options\//,
      seed: 3,
    });
    expect(report.totals.failed).toBeGreaterThan(report.totals.cases / 2);
    const first = report.cases.find((c) => c.status === 'failed');
    expect(first?.message).not.toMatch(/refused/);
  });
});

describe('deliberately broken backends still fail with the largest fudge allowed', () => {
  const tolerance = { atol: 1e-7, rtol: 1e-6, fudge: TOLERANCE_CAP.fudge };
  for (const [name, { wrap, filter, mustFail }] of Object.entries(BROKEN)) {
    it(`${name} (fudge ${TOLERANCE_CAP.fudge})`, async () => {
      const capabilities = { ...wrap.capabilities, tolerance };
      const report = await runConformance(() => wrapReference({ ...wrap, capabilities }), {
        filter,
        seed: 7,
      });
      const failed = report.cases.filter((c) => c.status === 'failed').map((c) => c.id);
      for (const id of mustFail) expect(failed, `${id} should fail`).toContain(id);
    });
  }
});
