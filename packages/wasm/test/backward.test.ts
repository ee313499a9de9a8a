import { Comparison, compareGradients, randomAttentionInputs, signedUniform } from '@attnkit/conformance';
import {
  type AttentionBias,
  type AttentionGradients,
  type AttentionInputs,
  type AttentionOptions,
  type AttentionShape,
  validateAttention,
} from '@attnkit/spec';
import { afterAll, describe, expect, it } from 'vitest';
import { createWasmBackend, WASM_TOLERANCE } from '../src/index.js';
import { threadsTestHooks, type WorkerPool } from '../src/threads.js';

type Backend = ReturnType<typeof createWasmBackend>;
type BackwardInputs = AttentionInputs & { output: Float32Array; lse: Float32Array; gradOutput: Float32Array };

/** The conformance suite's data (mulberry32): q, k, v in [-1, 1). */
const inputsFor = (shape: AttentionShape, seed: number) => randomAttentionInputs(shape, seed);

/** The forward's output and lse, a random gradOutput: a backward call's inputs. */
async function backwardInputs(
  backend: Backend,
  inputs: AttentionInputs,
  options: AttentionOptions,
  seed = 11,
): Promise<BackwardInputs> {
  const forward = await backend.attention(inputs, { ...options, returnLse: true });
  return {
    ...inputs,
    output: forward.output,
    lse: forward.lse,
    gradOutput: signedUniform(forward.output.length, seed),
  };
}

const NAMES = ['gradQ', 'gradK', 'gradV', 'gradBias', 'gradSinks'] as const;

/**
 * Every gradient against the float64 reference gradient, as the conformance suite compares them
 * (`compareGradients`). With `yardstick`, the declared `fudge` times the naive float32 backward's
 * error per row is allowed on top of atol/rtol (large logits carry ~|s| 2^-24 from any float32 dot
 * product); without it, the gradients must be within atol/rtol alone.
 */
function expectClose(
  got: AttentionGradients,
  inputs: BackwardInputs,
  options: AttentionOptions = {},
  yardstick = false,
) {
  const problem = validateAttention({ q: inputs.q, k: inputs.k, v: inputs.v, shape: inputs.shape }, options);
  const comparison = new Comparison(yardstick ? WASM_TOLERANCE : { ...WASM_TOLERANCE, fudge: 0 });
  compareGradients(comparison, got, problem, inputs.gradOutput);
  expect(comparison.summary()).toBeNull();
}

const bias = (shape: AttentionBias['shape'], seed: number): AttentionBias => ({
  data: signedUniform(shape[0] * shape[1] * shape[2] * shape[3], seed, 2),
  shape,
});

/**
 * [name, shape, options, yardstick]: every option alone, combinations, GQA/MQA, cross, Dv != D, odd
 * sizes. Cases with `yardstick` are allowed the conformance suite's fudge (see expectClose); the
 * others must be within atol/rtol alone.
 */
const CASES: [string, AttentionShape, AttentionOptions, boolean?][] = [
  ['plain', { batch: 1, queryHeads: 1, queryLength: 37, headDim: 16 }, {}],
  ['causal', { batch: 2, queryHeads: 2, queryLength: 70, headDim: 64 }, { causal: true }],
  ['sliding window', { batch: 1, queryHeads: 2, queryLength: 61, headDim: 8 }, { slidingWindow: 9 }],
  [
    'causal window',
    { batch: 1, queryHeads: 2, queryLength: 61, headDim: 8 },
    { causal: true, slidingWindow: 13 },
  ],
  [
    'key mask',
    { batch: 2, queryHeads: 2, queryLength: 33, headDim: 8 },
    { keyMask: Uint8Array.from({ length: 66 }, (_, i) => (i % 3 === 1 ? 0 : 1)) },
  ],
  [
    'full bias',
    { batch: 2, queryHeads: 2, queryLength: 19, keyLength: 23, headDim: 8 },
    { bias: bias([2, 2, 19, 23], 5) },
  ],
  [
    'bias [1,1,Lq,Lk]',
    { batch: 2, queryHeads: 2, queryLength: 19, keyLength: 23, headDim: 8 },
    { bias: bias([1, 1, 19, 23], 6) },
  ],
  [
    'bias [B,1,1,Lk]',
    { batch: 2, queryHeads: 4, kvHeads: 2, queryLength: 19, keyLength: 23, headDim: 8 },
    { bias: bias([2, 1, 1, 23], 7) },
  ],
  [
    'bias [1,Hq,Lq,1]',
    { batch: 2, queryHeads: 2, queryLength: 19, keyLength: 23, headDim: 8 },
    { bias: bias([1, 2, 19, 1], 8) },
  ],
  [
    'bias [1,1,1,1]',
    { batch: 2, queryHeads: 2, queryLength: 19, headDim: 8 },
    { bias: bias([1, 1, 1, 1], 9), causal: true },
  ],
  [
    'alibi',
    { batch: 1, queryHeads: 2, queryLength: 70, headDim: 8 },
    { alibiSlopes: new Float32Array([0.5, 0.125]), causal: true },
  ],
  ['softcap', { batch: 1, queryHeads: 2, queryLength: 45, headDim: 8 }, { softcap: 1.5, scale: 2 }],
  ['sinks', { batch: 2, queryHeads: 2, queryLength: 45, headDim: 8 }, { sinks: new Float32Array([0.5, -1]) }],
  ['GQA', { batch: 2, queryHeads: 6, kvHeads: 2, queryLength: 29, headDim: 12 }, { causal: true }],
  ['MQA', { batch: 1, queryHeads: 4, kvHeads: 1, queryLength: 29, headDim: 12 }, {}],
  [
    'cross Lq < Lk',
    { batch: 1, queryHeads: 2, queryLength: 13, keyLength: 77, headDim: 8 },
    { causal: true },
  ],
  [
    'cross Lq > Lk (rows with no key)',
    { batch: 1, queryHeads: 2, queryLength: 40, keyLength: 17, headDim: 8 },
    { causal: true },
  ],
  [
    'Dv != D, odd dims',
    { batch: 1, queryHeads: 2, queryLength: 31, keyLength: 26, headDim: 5, valueDim: 11 },
    { causal: true },
  ],
  // logits of ~20-60: peaked rows where dP - D nearly cancels; D from the float32 output, or dP's
  // float32 sum, would miss dQ by ~2e-6 (2x atol): those rows take the float64 path
  ['large logits', { batch: 1, queryHeads: 2, queryLength: 8, headDim: 16 }, { scale: 16 }, true],
  [
    'large logits, causal, GQA, sinks',
    { batch: 2, queryHeads: 4, kvHeads: 2, queryLength: 40, headDim: 16 },
    { scale: 12, causal: true, sinks: new Float32Array([30, 0, -5, 50]) },
    true,
  ],
  [
    'everything at once',
    { batch: 2, queryHeads: 4, kvHeads: 2, queryLength: 27, keyLength: 35, headDim: 6, valueDim: 10 },
    {
      causal: true,
      slidingWindow: 15,
      keyMask: Uint8Array.from({ length: 70 }, (_, i) => (i % 5 === 2 ? 0 : 1)),
      bias: bias([1, 4, 27, 35], 10),
      alibiSlopes: new Float32Array([0.25, 0.125, 0.0625, 0.03125]),
      softcap: 3,
      sinks: new Float32Array([0, 1, -0.5, 2]),
      scale: 0.7,
    },
  ],
];

/** One thread; and two with tiny tiles and no hand-off threshold, so every case really splits. */
const BACKENDS = {
  '1 thread': () => createWasmBackend({ threads: 1 }),
  '1 thread, 8 x 8 tiles': () => createWasmBackend({ threads: 1, queryBlock: 8, keyBlock: 8 }),
  '2 threads, 8 x 8 tiles': () =>
    createWasmBackend({ threads: 2, queryBlock: 8, keyBlock: 8, parallelMinWork: 0 }),
};

for (const [label, make] of Object.entries(BACKENDS)) {
  describe(`attentionBackward against referenceAttentionBackward64, ${label}`, () => {
    const backend = make();
    afterAll(() => backend.dispose());

    it('lists backward in its features', async () => {
      await backend.init();
      expect(backend.capabilities.features).toContain('backward');
    });

    for (const [name, shape, options, yardstick] of CASES) {
      it(name, async () => {
        const inputs = await backwardInputs(backend, inputsFor(shape, 3), options);
        const got = await backend.attentionBackward(inputs, options);
        expectClose(got, inputs, options, yardstick);
      });
    }
  });
}

describe('attentionBackward edge cases', () => {
  const one = createWasmBackend({ threads: 1 });
  const two = createWasmBackend({ threads: 2, queryBlock: 8, keyBlock: 8, parallelMinWork: 0 });
  afterAll(() => Promise.all([one.dispose(), two.dispose()]));

  it('fully masked rows give zero gradients, never NaN, with and without sinks', async () => {
    const shape = { batch: 2, queryHeads: 2, queryLength: 12, headDim: 8 };
    // batch 1 sees no key at all
    const keyMask = Uint8Array.from({ length: 24 }, (_, i) => (i < 12 ? 1 : 0));
    for (const backend of [one, two]) {
      for (const sinks of [undefined, new Float32Array([0.3, -2])]) {
        const options = { keyMask, causal: true, ...(sinks && { sinks }) };
        const inputs = await backwardInputs(backend, inputsFor(shape, 4), options);
        const got = await backend.attentionBackward(inputs, options);
        for (const grad of [got.gradQ, got.gradK, got.gradV, got.gradSinks ?? []])
          expect(grad.every((x) => Number.isFinite(x))).toBe(true);
        // batch 1's queries, keys and values get exactly 0
        expect(got.gradQ.subarray(2 * 12 * 8).every((x) => x === 0)).toBe(true);
        expect(got.gradK.subarray(2 * 12 * 8).every((x) => x === 0)).toBe(true);
        expect(got.gradV.subarray(2 * 12 * 8).every((x) => x === 0)).toBe(true);
        expectClose(got, inputs, options);
      }
    }
  });

  it('a NaN/inf in a masked key or a value row follows the reference (a masked key adds nothing)', async () => {
    const shape = { batch: 1, queryHeads: 2, queryLength: 20, headDim: 8 };
    const base = inputsFor(shape, 5);
    const k = Float32Array.from(base.k);
    k.fill(Number.POSITIVE_INFINITY, 7 * 8, 8 * 8); // key 7 of head 0: masked below
    const v = Float32Array.from(base.v);
    v[(20 + 19) * 8 + 2] = Number.NaN; // the last key of head 1: causal hides it from all but one row
    const keyMask = Uint8Array.from({ length: 20 }, (_, j) => (j === 7 ? 0 : 1));
    const options = { keyMask, causal: true };
    for (const backend of [one, two]) {
      const inputs = await backwardInputs(backend, { ...base, k, v }, options);
      const got = await backend.attentionBackward(inputs, options);
      expectClose(got, inputs, options);
      // the check above compares NaN patterns too: make sure there was something to compare
      expect(got.gradQ.some(Number.isNaN)).toBe(true);
      expect(got.gradQ.subarray(0, 20 * 8).every(Number.isFinite)).toBe(true);
    }
  });

  it('long key ranges: each chunk has more than 4096 key tiles (compensated dQ partials)', async () => {
    // keyBlock 1: 40000 one-key tiles in 8 chunks of 5000
    const backend = createWasmBackend({ threads: 1, keyBlock: 1 });
    const shape = { batch: 1, queryHeads: 1, queryLength: 2, keyLength: 40000, headDim: 4 };
    const inputs = await backwardInputs(backend, inputsFor(shape, 6), {});
    expectClose(await backend.attentionBackward(inputs), inputs);
    await backend.dispose();
  });

  it('long query ranges: dK/dV sum 4500 rows of cancelling terms (tile shares added by two-sums)', async () => {
    const shape = { batch: 1, queryHeads: 3, kvHeads: 1, queryLength: 1500, keyLength: 9, headDim: 4 };
    const inputs = await backwardInputs(one, inputsFor(shape, 7), {});
    expectClose(await one.attentionBackward(inputs), inputs);
  });
});

describe('attentionBackward determinism and memory', () => {
  const shape = { batch: 2, queryHeads: 4, kvHeads: 2, queryLength: 150, keyLength: 170, headDim: 24 };
  const options: AttentionOptions = {
    causal: true,
    bias: bias([1, 1, 150, 170], 12),
    sinks: new Float32Array([0, 0.5, 1, -1]),
  };

  it('repeated calls give the same bits; 1 and 2 threads give the same bits', async () => {
    const one = createWasmBackend({ threads: 1, queryBlock: 16, keyBlock: 16 });
    const two = createWasmBackend({ threads: 2, queryBlock: 16, keyBlock: 16, parallelMinWork: 0 });
    // the same forward results feed both, so that only the backward is compared
    const inputs = await backwardInputs(one, inputsFor(shape, 8), options);
    const first = await one.attentionBackward(inputs, options);
    for (const backend of [one, two]) {
      for (let i = 0; i < 3; i++) {
        const again = await backend.attentionBackward(inputs, options);
        for (const name of NAMES) expect(again[name], name).toEqual(first[name]);
      }
    }
    expectClose(first, inputs, options);
    await Promise.all([one.dispose(), two.dispose()]);
  });

  it('memory() does not grow over repeated backward calls', async () => {
    const backend = createWasmBackend({ threads: 2, parallelMinWork: 0 });
    const inputs = await backwardInputs(backend, inputsFor(shape, 9), options);
    await backend.attentionBackward(inputs, options);
    const after = backend.memory().hostBytes;
    for (let i = 0; i < 5; i++) await backend.attentionBackward(inputs, options);
    expect(backend.memory().hostBytes).toBe(after);
    await backend.dispose();
  });
});

describe('attentionBackward with a worker that dies', () => {
  it('fails that call once with a device error naming the worker; the next calls are right', async () => {
    const pools: WorkerPool[] = [];
    threadsTestHooks.poolStarted = (pool) => pools.push(pool);
    const backend = createWasmBackend({ threads: 3, queryBlock: 16, keyBlock: 16, parallelMinWork: 0 });
    try {
      await backend.init();
    } finally {
      threadsTestHooks.poolStarted = null;
    }
    const shape = { batch: 1, queryHeads: 2, queryLength: 96, headDim: 16 };
    const options = { causal: true };
    const inputs = await backwardInputs(backend, inputsFor(shape, 13), options);
    const first = await backend.attentionBackward(inputs, options);
    expectClose(first, inputs, options);
    pools[0].failNextRun(0);
    await expect(backend.attentionBackward(inputs, options)).rejects.toMatchObject({
      code: 'device',
      argument: 'worker 1',
    });
    for (let i = 0; i < 2; i++) {
      const again = await backend.attentionBackward(inputs, options);
      expect(again.gradQ).toEqual(first.gradQ);
      expect(again.gradK).toEqual(first.gradK);
      expect(again.gradV).toEqual(first.gradV);
    }
    await backend.dispose();
  });
});
