import type {
  AttentionBackend,
  AttentionInputs,
  AttentionOptions,
  KnownAttentionOptions,
} from '@attnkit/spec';
import { ALL_FEATURES, roundToF16 } from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { runConformance } from '../src/index.js';
import { BROKEN, BROKEN_BACKWARD, ignoringBackend, wrapReference } from './broken.js';

describe('deliberately broken backends fail the suite', () => {
  for (const [name, { wrap, filter, mustFail }] of Object.entries(BROKEN)) {
    it(name, async () => {
      const report = await runConformance(() => wrapReference(wrap), { filter, seed: 7 });
      const failed = report.cases.filter((c) => c.status === 'failed').map((c) => c.id);
      for (const id of mustFail) expect(failed, `${id} should fail`).toContain(id);
      expect(report.totals.failed).toBeGreaterThan(0);
    });
  }

  it('a bug seen only by random shapes is caught by the property cases, with the seed in the message', async () => {
    const report = await runConformance(() => wrapReference(BROKEN['GQA mapping wrong (h % Hkv)'].wrap), {
      filter: 'random/attention',
      seed: 99,
      numRuns: 100,
    });
    const random = report.cases.find((c) => c.id === 'random/attention');
    expect(random?.status).toBe('failed');
    expect(random?.message).toMatch(/seed 99/);
    expect(random?.message).toMatch(/counterexample/);
  });

  it('a backend that mutates its inputs fails', async () => {
    const report = await runConformance(
      () =>
        wrapReference({
          after: (result, problem) => {
            problem.q[0] = 0;
            return result;
          },
        }),
      { filter: 'options/causal' },
    );
    expect(report.cases[0].status).toBe('failed');
    expect(report.cases[0].message).toMatch(/q was modified/);
  });

  it('a backend with an entry point that skips validation, or allocates before it, fails invalid/every-entry-point', async () => {
    /** The reference backend with some methods replaced: the planted bug. */
    const delegating = (overrides: Partial<AttentionBackend>): AttentionBackend => {
      const inner = wrapReference({ capabilities: { features: [...ALL_FEATURES, 'backward'] } });
      return {
        name: 'lax',
        get capabilities() {
          return inner.capabilities;
        },
        init: () => inner.init(),
        attention: inner.attention.bind(inner),
        attentionBackward: inner.attentionBackward.bind(inner),
        matmul: (inputs) => inner.matmul(inputs),
        multiHeadAttention: inner.multiHeadAttention.bind(inner),
        createKVCache: (config) => inner.createKVCache(config),
        memory: () => inner.memory(),
        dispose: () => inner.dispose(),
        ...overrides,
      };
    };
    const run = async (backend: () => AttentionBackend) =>
      (await runConformance(backend, { filter: 'invalid/every-entry-point' })).cases[0];

    const honest = await run(() => delegating({}));
    expect(honest.status, honest.message ?? '').toBe('passed');

    // matmul answers without looking at its inputs.
    const unchecked = await run(() => delegating({ matmul: async () => new Float32Array(4) }));
    expect(unchecked.status).toBe('failed');
    expect(unchecked.message).toMatch(/matmul \(fresh\): resolved; expected a rejection/);

    // createKVCache reserves its pages before the spec's validation rejects the config.
    let reserved = 0;
    const inner = wrapReference({ capabilities: { features: [...ALL_FEATURES, 'backward'] } });
    const eager = await run(() =>
      delegating({
        createKVCache: (config) => {
          reserved += 4096;
          return inner.createKVCache(config);
        },
        memory: () => ({ hostBytes: reserved, deviceBytes: 0 }),
      }),
    );
    expect(eager.status).toBe('failed');
    expect(eager.message).toMatch(/createKVCache \(fresh\): memory\(\) went from/);
  });

  it('a backend whose memory grows per call fails the memory cases', async () => {
    const report = await runConformance(
      () => wrapReference({ memory: (calls) => ({ hostBytes: 4096 * calls, deviceBytes: 0 }) }),
      { filter: 'memory/', repeatCalls: 200 },
    );
    expect(report.cases.map((c) => c.status)).toEqual(['failed', 'failed', 'passed']); // matmul does not leak here
    expect(report.cases[0].message).toMatch(/backend.memory\(\) grew/);
  });

  it('a backend that declares determinism but adds noise fails the determinism cases', async () => {
    let call = 0;
    const report = await runConformance(
      () =>
        wrapReference({
          after: (result) => {
            call++;
            // within tolerance, but not the same bits twice: flip the last mantissa bit every other call
            if (call % 2 === 0) new Uint32Array(result.output.buffer)[0] ^= 1;
            return result;
          },
        }),
      { filter: 'determinism/' },
    );
    expect(report.cases.every((c) => c.status === 'failed')).toBe(true);
    expect(report.cases[0].message).toMatch(/bits differ/);
  });

  it('a backend that declares f16Storage but computes in float32, or rounds only K and V, fails the f16-storage cases', async () => {
    const storageCases = /^f16-storage\/(basic|odd-dims|gqa-causal-tiled|cross-valuedim|all-options)$/;
    const ignoring = await runConformance(
      () => wrapReference({ transform: (problem) => ({ ...problem, precision: 'f32' }) }),
      { filter: storageCases },
    );
    expect(ignoring.cases.length).toBe(5);
    for (const result of ignoring.cases) {
      expect(result.status, result.id).toBe('failed');
      expect(result.message).toMatch(/on f16-rounded q\/k\/v/);
    }
    // As a KV cache does: K and V rounded, q kept. Its error is inside the declared bound, so only
    // the check on the rounded inputs (the float32 tolerance alone) sees it.
    const kvOnly = await runConformance(
      () =>
        wrapReference({
          transform: (problem) => ({
            ...problem,
            precision: 'f32',
            k: problem.k.map(roundToF16),
            v: problem.v.map(roundToF16),
          }),
        }),
      { filter: storageCases },
    );
    for (const result of kvOnly.cases) expect(result.status, result.id).toBe('failed');
    const unbroken = await runConformance(() => wrapReference(), { filter: /^f16-storage\// });
    expect(unbroken.cases.length).toBeGreaterThanOrEqual(10);
    for (const result of unbroken.cases)
      expect(result.status, `${result.id}: ${result.message}`).toBe('passed');
  });

  it('a backend that drops unsupported options instead of rejecting them fails', async () => {
    const report = await runConformance(() => ignoringBackend(['sinks', 'bias'], {}, false), {
      filter: /^options\/(sinks|bias-\[B,Hq,Lq,Lk\])/,
    });
    expect(report.cases.length).toBeGreaterThan(2);
    for (const result of report.cases) {
      expect(result.status, result.id).toBe('failed');
      expect(result.expectation).toBe('reject-unsupported');
    }
  });

  it('a backend that keeps working after dispose fails the lifecycle cases', async () => {
    const factory = () => {
      const inner = wrapReference({ name: 'immortal' });
      // dispose() that frees nothing and rejects nothing: later calls still run
      return { ...inner, name: 'immortal', capabilities: inner.capabilities, dispose: async () => {} };
    };
    const report = await runConformance(factory, { filter: /after-dispose|dispose-before-init/ });
    expect(report.cases.map((c) => c.status)).toEqual(['failed', 'failed', 'failed', 'failed']);
    expect(report.cases[0].message).toMatch(/resolved; expected a rejection with code "disposed"/);
  });

  it('a backend that throws synchronously or with a plain Error on bad input fails the invalid cases', async () => {
    const factory = () => {
      const inner = wrapReference({ name: 'sloppy' });
      return {
        ...inner,
        name: 'sloppy',
        capabilities: inner.capabilities,
        // A hand-written AttentionBackend forwards the generic so the result type still follows
        // the options (createBackend-made backends get this for free).
        attention: <O extends AttentionOptions = AttentionOptions>(
          inputs: AttentionInputs,
          options?: KnownAttentionOptions<O>,
        ) => {
          if (inputs.q?.length !== 12 && inputs.q?.length !== undefined) throw new Error('bad q');
          return inner.attention<O>(inputs, options);
        },
      };
    };
    const report = await runConformance(factory, { filter: /^invalid\/(q-length|k-length)$/ });
    expect(report.cases.map((c) => c.status)).toEqual(['failed', 'passed']);
    expect(report.cases[0].message).toMatch(/threw synchronously/);
  });

  it('a NaN-dropping max (a > b ? a : b) fails the non-finite cases', async () => {
    // Emulated: NaN logits treated as -inf, i.e. a NaN row computed as if the key were masked.
    const report = await runConformance(
      () =>
        wrapReference({
          after: (result) => {
            for (const tensor of [result.output, result.lse, result.weights]) {
              if (tensor) for (let i = 0; i < tensor.length; i++) if (Number.isNaN(tensor[i])) tensor[i] = 0;
            }
            return result;
          },
        }),
      { filter: 'nonfinite/' },
    );
    const failed = report.cases.filter((c) => c.status === 'failed').map((c) => c.id);
    expect(failed).toEqual(
      expect.arrayContaining(['nonfinite/nan-in-q', 'nonfinite/nan-in-k', 'nonfinite/pos-inf-in-bias']),
    );
  });
});

describe('deliberately broken backward passes fail the backward/* cases', () => {
  for (const [name, { wrap, mustFail }] of Object.entries(BROKEN_BACKWARD)) {
    it(name, async () => {
      const report = await runConformance(() => wrapReference(wrap), { filter: 'backward/', seed: 7 });
      const failed = report.cases.filter((c) => c.status === 'failed').map((c) => c.id);
      for (const id of mustFail) expect(failed, `${id} should fail`).toContain(id);
    });
  }

  it('the unbroken wrapper passes every backward case', async () => {
    const report = await runConformance(() => wrapReference(), { filter: 'backward/', seed: 7 });
    const failed = report.cases.filter((c) => c.status === 'failed').map((c) => `${c.id}: ${c.message}`);
    expect(failed).toEqual([]);
    expect(report.cases.length).toBeGreaterThan(30);
  });

  it('a backend without backward passes by rejecting every backward call unsupported', async () => {
    const report = await runConformance(() => wrapReference({ capabilities: { features: ALL_FEATURES } }), {
      filter: 'backward/',
      seed: 7,
    });
    const failed = report.cases.filter((c) => c.status === 'failed').map((c) => `${c.id}: ${c.message}`);
    expect(failed).toEqual([]);
    const matched = report.cases.find((c) => c.id === 'backward/default');
    expect(matched?.message).toMatch(/rejected as expected/);
  });
});
