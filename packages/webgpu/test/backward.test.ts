// attentionBackward against the float64 reference gradient (referenceAttentionBackward64), for every
// option, GQA/MQA, cross-attention, Dv != D, sizes that do not divide the tiles, and fully masked
// rows; then determinism and memory. The gradients are computed from this backend's own forward
// (output, lse), as a user would. Runs in Node (Dawn) and in Chromium (the vitest config's projects).
import {
  type AttentionBackwardInputs,
  type AttentionGradients,
  type AttentionInputs,
  type AttentionOptions,
  type AttentionShape,
  type ReferenceGradients64,
  referenceAttentionBackward64,
} from '@attnkit/spec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { expectClose, inputsFor, newBackend, ownDevice, random } from './helpers.js';

let backend: WebGpuBackend;

beforeAll(async () => {
  backend = newBackend();
  await backend.init();
});

afterAll(async () => {
  await backend.dispose();
});

function full(shape: AttentionShape) {
  return {
    batch: shape.batch,
    queryHeads: shape.queryHeads,
    kvHeads: shape.kvHeads ?? shape.queryHeads,
    queryLength: shape.queryLength,
    keyLength: shape.keyLength ?? shape.queryLength,
    headDim: shape.headDim,
    valueDim: shape.valueDim ?? shape.headDim,
  };
}

/** The forward (with lse) on this backend, then the backward inputs it gives. */
async function backwardInputs(
  inputs: AttentionInputs,
  options: AttentionOptions,
  seed: number,
  on: WebGpuBackend = backend,
): Promise<AttentionBackwardInputs> {
  const s = full(inputs.shape);
  const forward = await on.attention(inputs, { ...options, returnLse: true });
  const gradOutput = random(s.batch * s.queryHeads * s.queryLength * s.valueDim, seed + 100);
  return { ...inputs, output: forward.output, lse: forward.lse, gradOutput };
}

/** Runs the backward and compares every gradient with the float64 reference under atol/rtol alone. */
async function expectGradients(
  inputs: AttentionInputs,
  options: AttentionOptions = {},
  seed = 1,
  on: WebGpuBackend = backend,
): Promise<{ got: AttentionGradients; ref: ReferenceGradients64 }> {
  const problem = await backwardInputs(inputs, options, seed, on);
  const got = await on.attentionBackward(problem, options);
  const ref = referenceAttentionBackward64(problem, options);
  const tolerance = on.capabilities.tolerance;
  expectClose('gradQ', got.gradQ, ref.gradQ, tolerance);
  expectClose('gradK', got.gradK, ref.gradK, tolerance);
  expectClose('gradV', got.gradV, ref.gradV, tolerance);
  if (options.bias !== undefined) expectClose('gradBias', got.gradBias, ref.gradBias, tolerance);
  else expect(got.gradBias).toBeUndefined();
  if (options.sinks !== undefined) expectClose('gradSinks', got.gradSinks, ref.gradSinks, tolerance);
  else expect(got.gradSinks).toBeUndefined();
  return { got, ref };
}

const small: AttentionShape = {
  batch: 2,
  queryHeads: 4,
  kvHeads: 2,
  queryLength: 19,
  keyLength: 37,
  headDim: 7,
  valueDim: 5,
};

describe('attentionBackward matches the float64 reference gradient', () => {
  it('lists backward among its features', () => {
    expect(backend.capabilities.features).toContain('backward');
  });

  const cases: [string, AttentionShape, AttentionOptions][] = [
    ['plain, one tile', { batch: 1, queryHeads: 1, queryLength: 3, headDim: 4 }, {}],
    ['GQA, cross, Dv != D', small, {}],
    ['causal, Lq < Lk (bottom-right)', small, { causal: true }],
    [
      'causal, Lq > Lk: leading rows see nothing',
      { batch: 1, queryHeads: 2, queryLength: 23, keyLength: 9, headDim: 3 },
      { causal: true },
    ],
    ['sliding window, causal', small, { causal: true, slidingWindow: 4 }],
    ['sliding window, two-sided', small, { slidingWindow: 3 }],
    [
      'causal + window skip whole tiles (long sequence, odd length)',
      { batch: 1, queryHeads: 2, queryLength: 133, headDim: 16 },
      { causal: true, slidingWindow: 17 },
    ],
    [
      'two-sided window, Lq > Lk, long (tiles skipped on both sides)',
      { batch: 1, queryHeads: 2, kvHeads: 1, queryLength: 150, keyLength: 120, headDim: 8 },
      { slidingWindow: 10 },
    ],
    [
      'causal, Lq > Lk, long: the first 40 rows and whole query tiles see nothing',
      { batch: 2, queryHeads: 1, queryLength: 100, keyLength: 60, headDim: 8, valueDim: 3 },
      { causal: true },
    ],
    ['scale and softcap', small, { scale: 2.5, softcap: 1.5 }],
    ['softcap far into tanh saturation', small, { scale: 12, softcap: 2 }],
    ['ALiBi', small, { alibiSlopes: new Float32Array([0.5, 0.25, 0.125, 0.0625]), causal: true }],
    ['sinks', small, { sinks: new Float32Array([0, 2, -1, 30]) }],
    [
      'multi-query attention, decode (Lq = 1)',
      { batch: 3, queryHeads: 4, kvHeads: 1, queryLength: 1, keyLength: 70, headDim: 8 },
      { causal: true },
    ],
    [
      'MQA prefill, every query head summed into one key head',
      { batch: 1, queryHeads: 6, kvHeads: 1, queryLength: 21, keyLength: 21, headDim: 12 },
      { causal: true },
    ],
    [
      'D = 64, several tiles both ways',
      { batch: 1, queryHeads: 2, queryLength: 70, keyLength: 90, headDim: 64 },
      { causal: true },
    ],
    [
      'Dv > D',
      { batch: 1, queryHeads: 2, kvHeads: 1, queryLength: 17, keyLength: 33, headDim: 5, valueDim: 24 },
      { slidingWindow: 9 },
    ],
    [
      'everything at once',
      small,
      {
        causal: true,
        slidingWindow: 11,
        scale: 0.7,
        softcap: 3,
        keyMask: Uint8Array.from({ length: 2 * 37 }, (_, n) => (n % 5 === 3 ? 0 : 1)),
        bias: { data: random(2 * 4 * 19 * 37, 7, 2), shape: [2, 4, 19, 37] },
        alibiSlopes: new Float32Array([0.3, 0.2, 0.1, 0.05]),
        sinks: new Float32Array([1, -1, 0.5, 3]),
      },
    ],
  ];
  for (const [name, shape, options] of cases) {
    it(name, async () => {
      await expectGradients(inputsFor(shape, 3), options, 3);
    });
  }

  it('bias broadcast along every dimension combination: gradBias in the bias shape', async () => {
    const shape: AttentionShape = {
      batch: 2,
      queryHeads: 2,
      kvHeads: 1,
      queryLength: 5,
      keyLength: 6,
      headDim: 3,
    };
    const fullDims = [2, 2, 5, 6];
    for (let bits = 0; bits < 16; bits++) {
      const dims = fullDims.map((d, axis) => ((bits >> axis) & 1 ? d : 1)) as [
        number,
        number,
        number,
        number,
      ];
      const data = random(dims[0] * dims[1] * dims[2] * dims[3], bits + 3, 2);
      const { got } = await expectGradients(inputsFor(shape, bits), { bias: { data, shape: dims } }, bits);
      expect(got.gradBias?.length).toBe(data.length);
    }
  });

  it('a broadcast bias over a long causal sequence (skipped tiles contribute 0)', async () => {
    const shape: AttentionShape = { batch: 1, queryHeads: 3, queryLength: 80, headDim: 8 };
    await expectGradients(
      inputsFor(shape, 11),
      { causal: true, slidingWindow: 20, bias: { data: random(80 * 80, 12), shape: [1, 1, 80, 80] } },
      11,
    );
  });

  it('fully masked rows (keyMask, causal Lq > Lk) give zero gradients, never NaN', async () => {
    const shape: AttentionShape = { batch: 2, queryHeads: 2, queryLength: 4, keyLength: 7, headDim: 5 };
    // batch 1 sees no key at all
    const keyMask = new Uint8Array([1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    const data = random(2 * 2 * 4 * 7, 13);
    const { got } = await expectGradients(
      inputsFor(shape, 5),
      { keyMask, bias: { data, shape: [2, 2, 4, 7] } },
      5,
    );
    const perBatch = 2 * 4 * 5;
    expect([...got.gradQ.subarray(perBatch)].every((x) => x === 0)).toBe(true);
    expect([...got.gradK.subarray(2 * 7 * 5)].every((x) => x === 0)).toBe(true);
    expect([...(got.gradBias ?? new Float32Array(0)).subarray(2 * 4 * 7)].every((x) => x === 0)).toBe(true);
    for (const name of ['gradQ', 'gradK', 'gradV'] as const)
      expect(got[name].some((x) => Number.isNaN(x))).toBe(false);
  });

  it('a fully masked row with a sink: zero gradients for its tensors, its sink term 0', async () => {
    const shape: AttentionShape = { batch: 1, queryHeads: 2, queryLength: 3, keyLength: 2, headDim: 2 };
    const { got } = await expectGradients(
      inputsFor(shape, 9),
      { causal: true, sinks: new Float32Array([0.5, -2]) },
      9,
    );
    // query 0 sits at position -1: no key, so its gradQ row is 0
    expect([...got.gradQ.subarray(0, 2)]).toEqual([0, 0]);
  });

  it('large logits', async () => {
    const shape: AttentionShape = { batch: 1, queryHeads: 2, queryLength: 9, keyLength: 40, headDim: 4 };
    await expectGradients(inputsFor(shape, 22), { scale: 30 }, 22);
  });

  it('logits near 1e4: P renormalised, so the float32 rounding of lse does not carry into it', async () => {
    // A float32 lse near 1e4 is off by up to half its ulp (4.9e-4): P = exp(S - lse) alone would be
    // off by that relative amount (beyond rtol); the dQ kernel's per-row norm removes it.
    const shape: AttentionShape = { batch: 1, queryHeads: 2, queryLength: 9, keyLength: 40, headDim: 4 };
    await expectGradients(
      inputsFor(shape, 23),
      { bias: { data: random(40, 24, 1e4), shape: [1, 1, 1, 40] } },
      23,
    );
    await expectGradients(
      inputsFor(shape, 25),
      { bias: { data: random(40, 26, 1e4), shape: [1, 1, 1, 40] }, sinks: new Float32Array([1e4, 9999]) },
      25,
    );
  });

  it('masked garbage (NaN keys, infinite values) never leaks into the gradients', async () => {
    const shape: AttentionShape = { batch: 1, queryHeads: 1, queryLength: 4, keyLength: 5, headDim: 3 };
    const inputs = inputsFor(shape, 32);
    inputs.k.fill(Number.NaN, 9); // keys 3 and 4
    inputs.v.fill(Number.POSITIVE_INFINITY, 9);
    const { got } = await expectGradients(inputs, { keyMask: new Uint8Array([1, 1, 1, 0, 0]) }, 32);
    expect([...got.gradK.subarray(9)]).toEqual([0, 0, 0, 0, 0, 0]);
  });
});

describe('attentionBackward behaviour', () => {
  const options: AttentionOptions = {
    causal: true,
    bias: { data: random(4 * 19 * 37, 71), shape: [1, 4, 19, 37] },
    sinks: new Float32Array([0.1, 0.2, 0.3, 0.4]),
  };

  it('is deterministic: same input, same bits', async () => {
    const problem = await backwardInputs(inputsFor(small, 41), options, 41);
    const a = await backend.attentionBackward(problem, options);
    const b = await backend.attentionBackward(problem, options);
    for (const name of ['gradQ', 'gradK', 'gradV', 'gradBias', 'gradSinks'] as const) {
      const x = a[name];
      const y = b[name];
      expect(x, name).toBeDefined();
      if (x === undefined || y === undefined) continue;
      expect(new Uint32Array(x.buffer), name).toEqual(new Uint32Array(y.buffer));
    }
  });

  it('repeated calls do not grow device memory', async () => {
    const problem = await backwardInputs(inputsFor(small, 60), options, 60);
    await backend.attentionBackward(problem, options);
    const before = backend.memory().deviceBytes;
    for (let n = 0; n < 20; n++) await backend.attentionBackward(problem, options);
    expect(backend.memory().deviceBytes).toBe(before);
  });

  it('concurrent calls each get their own gradients', async () => {
    const calls = await Promise.all(
      [0, 1, 2].map(async (n) => {
        const shape: AttentionShape = { ...small, queryLength: 5 + n };
        const opts: AttentionOptions = { causal: n % 2 === 0 };
        const problem = await backwardInputs(inputsFor(shape, 80 + n), opts, 80 + n);
        return { problem, opts };
      }),
    );
    const results = calls.map((c) => backend.attentionBackward(c.problem, c.opts));
    for (let n = 0; n < calls.length; n++) {
      const got = await results[n];
      const ref = referenceAttentionBackward64(calls[n].problem, calls[n].opts);
      expectClose('gradQ', got.gradQ, ref.gradQ, backend.capabilities.tolerance);
      expectClose('gradK', got.gradK, ref.gradK, backend.capabilities.tolerance);
    }
  });

  it('reads its inputs when called: writing into them afterwards changes nothing', async () => {
    const problem = await backwardInputs(inputsFor(small, 90), {}, 90);
    const ref = referenceAttentionBackward64(problem, {});
    const pending = backend.attentionBackward(problem, {});
    for (const array of [problem.q, problem.k, problem.v, problem.output, problem.lse, problem.gradOutput])
      array.fill(0);
    const got = await pending;
    expectClose('gradQ', got.gradQ, ref.gradQ, backend.capabilities.tolerance);
    expectClose('gradV', got.gradV, ref.gradV, backend.capabilities.tolerance);
  });
});

describe('attentionBackward limits', () => {
  it('runs every head size the forward admits, on a device with default limits (16 KiB)', async () => {
    const device = await ownDevice('default');
    const own = createWebGpuBackend({ device });
    try {
      await own.init();
      const limit = own.capabilities.limits.headDim ?? 0;
      expect(limit).toBe(Math.floor((device.limits.maxComputeWorkgroupStorageSize / 4 - 24) / 16) * 4);
      const shape: AttentionShape = {
        batch: 1,
        queryHeads: 2,
        kvHeads: 1,
        queryLength: 3,
        keyLength: 5,
        headDim: limit,
      };
      await expectGradients(
        inputsFor(shape, 95, 0.1),
        { causal: true, sinks: new Float32Array([0, 1]) },
        95,
        own,
      );
    } finally {
      await own.dispose();
      device.destroy();
    }
  });

  it('rejects unsupported, before any work, a broadcast bias whose dS scratch passes one binding', async () => {
    const device = await ownDevice('default');
    const own = createWebGpuBackend({ device });
    try {
      await own.init();
      const cells = own.capabilities.limits.tensorElements ?? 0;
      const L = Math.ceil(Math.sqrt(cells)) + 1; // L * L cells: one binding too many; every tensor small
      const shape: AttentionShape = { batch: 1, queryHeads: 1, queryLength: L, headDim: 1 };
      const inputs = inputsFor(shape, 96);
      const before = own.memory().deviceBytes;
      const call = own.attentionBackward(
        { ...inputs, output: new Float32Array(L), lse: new Float32Array(L), gradOutput: new Float32Array(L) },
        { bias: { data: new Float32Array(L), shape: [1, 1, 1, L] } },
      );
      await expect(call).rejects.toMatchObject({
        code: 'unsupported',
        argument: 'gradBias scratch (B*Hq*Lq*Lk)',
      });
      expect(own.memory().deviceBytes).toBe(before);
    } finally {
      await own.dispose();
      device.destroy();
    }
  });
});
