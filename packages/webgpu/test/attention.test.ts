import {
  type AttentionOptions,
  type AttentionResult,
  type AttentionShape,
  isAttnkitError,
  type LayerInputs,
  referenceAttention64,
  referenceMatmulInputs64,
  referenceMultiHeadAttention64,
} from '@attnkit/spec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import {
  expectClose,
  expectMatchesReference,
  inputsFor,
  newBackend,
  ownDevice,
  random,
  toBlhd,
} from './helpers.js';

let backend: WebGpuBackend;

beforeAll(async () => {
  backend = newBackend();
  await backend.init();
});

afterAll(async () => {
  await backend.dispose();
});

const small: AttentionShape = {
  batch: 2,
  queryHeads: 4,
  kvHeads: 2,
  queryLength: 19,
  keyLength: 37,
  headDim: 7,
  valueDim: 5,
};

describe('attention matches the float64 reference', () => {
  it('reports a real adapter (no silent fallback)', () => {
    const caps = backend.capabilities;
    expect(caps.engine).toMatch(/^WebGPU \(WGSL\) on /);
    expect(caps.limits.tensorElements).toBeGreaterThan(0);
    expect(caps.limits.headDim).toBeGreaterThan(64);
  });

  const cases: [string, AttentionShape, AttentionOptions][] = [
    ['plain, one tile', { batch: 1, queryHeads: 1, queryLength: 3, headDim: 4 }, {}],
    ['GQA, cross, Dv != D, lse and weights', small, { returnLse: true, returnWeights: true }],
    ['causal, Lq < Lk (bottom-right)', small, { causal: true, returnLse: true, returnWeights: true }],
    [
      'causal, Lq > Lk: leading rows see nothing',
      { batch: 1, queryHeads: 2, queryLength: 23, keyLength: 9, headDim: 3 },
      { causal: true, returnLse: true, returnWeights: true },
    ],
    ['sliding window, causal', small, { causal: true, slidingWindow: 4, returnLse: true }],
    ['sliding window, two-sided', small, { slidingWindow: 3, returnLse: true, returnWeights: true }],
    [
      'causal + window skip whole tiles (long sequence)',
      { batch: 1, queryHeads: 2, queryLength: 133, headDim: 16 },
      { causal: true, slidingWindow: 17, returnLse: true },
    ],
    ['scale and softcap', small, { scale: 2.5, softcap: 1.5, returnLse: true, returnWeights: true }],
    [
      'ALiBi and sinks',
      small,
      {
        alibiSlopes: new Float32Array([0.5, 0.25, 0.125, 0.0625]),
        sinks: new Float32Array([0, 2, -1, 30]),
        returnLse: true,
        returnWeights: true,
      },
    ],
    [
      'multi-query attention, decode (Lq = 1)',
      { batch: 3, queryHeads: 4, kvHeads: 1, queryLength: 1, keyLength: 70, headDim: 8 },
      { causal: true, returnLse: true },
    ],
    [
      'D = 64, two key tiles',
      { batch: 1, queryHeads: 2, queryLength: 40, keyLength: 70, headDim: 64 },
      { causal: true, returnLse: true },
    ],
  ];
  for (const [name, shape, options] of cases) {
    it(name, async () => {
      await expectMatchesReference(backend, inputsFor(shape, 11), options);
    });
  }

  it('bias broadcast along every dimension combination', async () => {
    const shape: AttentionShape = { batch: 2, queryHeads: 2, queryLength: 5, keyLength: 6, headDim: 3 };
    const full = [2, 2, 5, 6];
    for (let bits = 0; bits < 16; bits++) {
      const dims = full.map((d, axis) => ((bits >> axis) & 1 ? d : 1)) as [number, number, number, number];
      const data = random(dims[0] * dims[1] * dims[2] * dims[3], bits + 3, 2);
      await expectMatchesReference(backend, inputsFor(shape, bits), {
        bias: { data, shape: dims },
        returnWeights: true,
      });
    }
  });

  it('keyMask with fully masked batch rows: zeros, lse -inf, weights 0', async () => {
    const shape: AttentionShape = { batch: 2, queryHeads: 2, queryLength: 4, keyLength: 7, headDim: 5 };
    const keyMask = new Uint8Array([1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    const ref = await expectMatchesReference(backend, inputsFor(shape, 5), {
      keyMask,
      returnLse: true,
      returnWeights: true,
    });
    expect(ref.lse?.[8]).toBe(Number.NEGATIVE_INFINITY);
  });

  it('a fully masked row with a sink: zeros, lse = sink', async () => {
    const shape: AttentionShape = { batch: 1, queryHeads: 2, queryLength: 3, keyLength: 2, headDim: 2 };
    await expectMatchesReference(backend, inputsFor(shape, 9), {
      causal: true,
      sinks: new Float32Array([0.5, -2]),
      returnLse: true,
      returnWeights: true,
    });
  });

  it('large logits (1e4) and all-equal scores', async () => {
    const shape: AttentionShape = { batch: 1, queryHeads: 1, queryLength: 9, keyLength: 40, headDim: 4 };
    const inputs = inputsFor(shape, 21);
    inputs.k.fill(0.5);
    await expectMatchesReference(backend, inputs, { returnLse: true, returnWeights: true });
    const big = inputsFor(shape, 22);
    await expectMatchesReference(backend, big, { scale: 1e4, returnLse: true });
  });

  it('non-finite inputs: NaN propagates to its row, masked garbage never leaks', async () => {
    const shape: AttentionShape = { batch: 1, queryHeads: 1, queryLength: 4, keyLength: 5, headDim: 3 };
    const inputs = inputsFor(shape, 31);
    inputs.q[3] = Number.NaN; // row 1
    inputs.k[2 * 3] = Number.POSITIVE_INFINITY; // key 2: +inf or -inf logits
    inputs.v[4 * 3] = Number.NaN; // key 4's value: masked by causal for rows 0..2 (positions 1..3)
    inputs.v[3 * 3 + 1] = Number.POSITIVE_INFINITY;
    await expectMatchesReference(backend, inputs, { causal: true, returnLse: true, returnWeights: true });
    const masked = inputsFor(shape, 32);
    masked.v.fill(Number.NaN, 9); // keys 3 and 4
    await expectMatchesReference(backend, masked, {
      keyMask: new Uint8Array([1, 1, 1, 0, 0]),
      returnLse: true,
    });
  });

  it('is deterministic: same input, same bits', async () => {
    const inputs = inputsFor(small, 41);
    const a = await backend.attention(inputs, { causal: true, returnLse: true });
    const b = await backend.attention(inputs, { causal: true, returnLse: true });
    expect(new Uint32Array(a.output.buffer)).toEqual(new Uint32Array(b.output.buffer));
    expect(new Uint32Array(a.lse!.buffer)).toEqual(new Uint32Array(b.lse!.buffer));
  });

  it('concurrent calls each get their own result', async () => {
    const calls = [0, 1, 2, 3].map((n) => {
      const shape: AttentionShape = { ...small, queryLength: 5 + n };
      const inputs = inputsFor(shape, 50 + n);
      const options: AttentionOptions = { causal: n % 2 === 0, returnLse: true };
      return { inputs, options, result: backend.attention(inputs, options) };
    });
    for (const call of calls) {
      const got = await call.result;
      const ref = referenceAttention64(call.inputs, call.options);
      expectClose('output', got.output, ref.output, backend.capabilities.tolerance);
      expectClose('lse', got.lse, ref.lse, backend.capabilities.tolerance);
    }
  });

  it('repeated calls do not grow device memory', async () => {
    const inputs = inputsFor(small, 60);
    await backend.attention(inputs, { returnWeights: true });
    const before = backend.memory().deviceBytes;
    for (let n = 0; n < 20; n++) await backend.attention(inputs, { returnWeights: true });
    expect(backend.memory().deviceBytes).toBe(before);
  });
});

describe('matmul and the multi-head attention layer', () => {
  it('matmul with and without bias', async () => {
    for (const [m, k, n] of [
      [1, 1, 1],
      [33, 20, 17],
      [7, 130, 3],
    ]) {
      const inputs = { a: random(m * k, m), b: random(k * n, n), shape: { m, k, n } };
      expectClose(
        'matmul',
        await backend.matmul(inputs),
        referenceMatmulInputs64(inputs),
        backend.capabilities.tolerance,
      );
      const withBias = { ...inputs, bias: random(n, 99) };
      expectClose(
        'matmul+bias',
        await backend.matmul(withBias),
        referenceMatmulInputs64(withBias),
        backend.capabilities.tolerance,
      );
    }
  });

  const layer = (cross: boolean): LayerInputs => {
    const B = 2;
    const Lq = 6;
    const Lk = cross ? 9 : Lq;
    const M = 12;
    const Hq = 4;
    const Hkv = 2;
    const D = 3;
    const Dv = 5;
    return {
      x: random(B * Lq * M, 1),
      ...(cross && { context: random(B * Lk * M, 2) }),
      weights: {
        wq: random(M * Hq * D, 3, 0.5),
        wk: random(M * Hkv * D, 4, 0.5),
        wv: random(M * Hkv * Dv, 5, 0.5),
        wo: random(Hq * Dv * M, 6, 0.5),
        bq: random(Hq * D, 7),
        bv: random(Hkv * Dv, 8),
        bo: random(M, 9),
      },
      shape: {
        batch: B,
        queryLength: Lq,
        keyLength: Lk,
        modelDim: M,
        queryHeads: Hq,
        kvHeads: Hkv,
        headDim: D,
        valueDim: Dv,
      },
    };
  };

  for (const cross of [false, true]) {
    it(`layer on the device (${cross ? 'cross' : 'self'}-attention, GQA) matches the reference`, async () => {
      const inputs = layer(cross);
      const options: AttentionOptions = { causal: true, returnLse: true, returnWeights: true };
      const got = await backend.multiHeadAttention(inputs, options);
      const ref = referenceMultiHeadAttention64(inputs, options);
      const tol = backend.capabilities.tolerance;
      expectClose('output', got.output, ref.output, tol);
      expectClose('lse', got.lse, ref.lse, tol);
      expectClose('weights', got.weights, ref.weights, tol);
    });
  }
});

describe('device-resident path', () => {
  it('attentionBuffers in [B, H, L, D] and [B, L, H, D] layouts, chained without readback', async () => {
    const shape = small;
    const inputs = inputsFor(shape, 70);
    const options: AttentionOptions = { causal: true, returnLse: true, returnWeights: true };
    const ref = referenceAttention64(inputs, options);
    const [q, k, v] = await Promise.all([
      backend.upload(inputs.q),
      backend.upload(inputs.k),
      backend.upload(inputs.v),
    ]);
    const out = await backend.attentionBuffers({ q, k, v, shape }, options);
    const tol = backend.capabilities.tolerance;
    const { batch: B, queryHeads: Hq, queryLength: Lq, keyLength: Lk } = { ...shape, keyLength: 37 };
    expectClose('output', await backend.read(out.output), ref.output, tol);
    expectClose('lse', await backend.read(out.lse!), ref.lse, tol);
    expectClose('weights', await backend.read(out.weights!), ref.weights, tol);

    // [B, L, H, D]: transpose on the host, then the output comes back in the same layout.
    const [q2, k2, v2] = await Promise.all([
      backend.upload(toBlhd(inputs.q, B, 4, Lq, 7)),
      backend.upload(toBlhd(inputs.k, B, 2, Lk, 7)),
      backend.upload(toBlhd(inputs.v, B, 2, Lk, 5)),
    ]);
    const out2 = await backend.attentionBuffers(
      { q: q2, k: k2, v: v2, shape, layout: 'blhd' },
      { causal: true },
    );
    const refBlhd = toBlhd(new Float32Array(ref.output), B, 4, Lq, 5);
    expectClose('blhd output', await backend.read(out2.output), refBlhd, tol);

    // matmul on device buffers feeding from an attention output.
    const w = random(5 * 3, 80);
    const wBuf = await backend.upload(w);
    const projected = await backend.matmulBuffers({
      a: out2.output,
      b: wBuf,
      shape: { m: B * Lq * 4, k: 5, n: 3 },
    });
    const refProjected = referenceMatmulInputs64({ a: refBlhd, b: w, shape: { m: B * Lq * 4, k: 5, n: 3 } });
    expectClose('chained matmul', await backend.read(projected), refProjected, tol);
    // The element counts the results carry are what their shapes imply.
    expect([out.output, out.lse!, out.weights!, projected].map((t) => t.elements)).toEqual([
      ref.output.length,
      B * Hq * Lq,
      B * Hq * Lq * Lk,
      refProjected.length,
    ]);
    for (const tensor of [
      q,
      k,
      v,
      q2,
      k2,
      v2,
      wBuf,
      projected,
      out.output,
      out.lse!,
      out.weights!,
      out2.output,
    ])
      backend.release(tensor);
  });

  it('rejects a tensor of the wrong element count, naming it, even when its buffer is large enough', async () => {
    const shape: AttentionShape = { batch: 1, queryHeads: 1, queryLength: 4, headDim: 4 };
    const q = await backend.upload(new Float32Array(16));
    const tiny = await backend.upload(new Float32Array(2));
    // Pool buffers are at least 256 bytes (64 floats): the element count decides, not the buffer's size.
    expect(tiny.buffer.size).toBeGreaterThanOrEqual(16 * 4);
    await expect(backend.attentionBuffers({ q, k: tiny, v: tiny, shape })).rejects.toMatchObject({
      code: 'invalid-argument',
      argument: 'k.elements',
      expected: '16 (B*Hkv*Lk*D = 1*1*4*4; shape.keyLength defaults to shape.queryLength)',
      actual: '2',
    });
    // A caller's handle that claims more elements than its buffer holds is its buffer's error.
    const claimed = { buffer: q.buffer, elements: 100 * 4 };
    await expect(
      backend.attentionBuffers({
        q: claimed,
        k: q,
        v: q,
        shape: { ...shape, queryLength: 100, keyLength: 4 },
      }),
    ).rejects.toMatchObject({ code: 'invalid-argument', argument: 'q.buffer.size' });
    backend.release(q);
    backend.release(tiny);
  });

  it('a destroyed input buffer surfaces as a device error, not zeros', async () => {
    const shape: AttentionShape = { batch: 1, queryHeads: 1, queryLength: 4, headDim: 4 };
    const device = backend.device;
    const make = () => {
      const b = device.createBuffer({ size: 64, usage: 0x80 | 0x8 });
      return b;
    };
    const q = make();
    const k = make();
    const v = make();
    q.destroy();
    const [tq, tk, tv] = [q, k, v].map((buffer) => ({ buffer, elements: 16 }));
    const error = await backend.attentionBuffers({ q: tq, k: tk, v: tv, shape }).catch((e: unknown) => e);
    expect(isAttnkitError(error) && error.code).toBe('device');
    k.destroy();
    v.destroy();
  });
});

describe('device ownership, limits and loss', () => {
  it('uses a caller device, sizes tiles from its limits, and never destroys it', async () => {
    const device = await ownDevice('default'); // default limits: 16 KiB of workgroup storage
    let lost = false;
    device.lost.then(() => {
      lost = true;
    });
    const own = createWebGpuBackend({ device });
    await own.init();
    const storage = device.limits.maxComputeWorkgroupStorageSize;
    // Each workgroup variable counts rounded up to 16 bytes: four rows and six one-float arrays.
    expect(own.capabilities.limits.headDim).toBe(Math.floor((storage / 4 - 24) / 16) * 4);
    // A head size that only fits with small tiles on this device.
    const shape: AttentionShape = { batch: 1, queryHeads: 1, queryLength: 6, headDim: 300 };
    await expectMatchesReference(own, inputsFor(shape, 90, 0.1), { causal: true, returnLse: true });
    // Exactly the declared limit compiles and runs (each variable's 16-byte rounding is counted).
    const atLimit: AttentionShape = { ...shape, headDim: own.capabilities.limits.headDim! };
    await expectMatchesReference(own, inputsFor(atLimit, 91, 0.1), { causal: true, returnLse: true });
    const tooBig: AttentionShape = { ...shape, headDim: own.capabilities.limits.headDim! + 1 };
    await expect(own.attention(inputsFor(tooBig, 1))).rejects.toMatchObject({
      code: 'unsupported',
      argument: 'shape.headDim',
    });
    // The weights tensor would not fit in one storage binding: rejected before any work.
    const elements = own.capabilities.limits.tensorElements!;
    const long = Math.ceil(Math.sqrt(elements)) + 1;
    const wide: AttentionShape = { batch: 1, queryHeads: 1, queryLength: long, headDim: 1 };
    await expect(own.attention(inputsFor(wide, 1), { returnWeights: true })).rejects.toMatchObject({
      code: 'unsupported',
      argument: 'weights',
    });
    expect(own.memory().deviceBytes).toBeGreaterThan(0);
    await own.dispose();
    expect(own.memory().deviceBytes).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(lost).toBe(false);
    // Still usable by its owner.
    const other = createWebGpuBackend({ device });
    await expectMatchesReference(
      other,
      inputsFor({ batch: 1, queryHeads: 1, queryLength: 3, headDim: 2 }, 3),
    );
    await other.dispose();
    device.destroy();
  });

  it('a lost device rejects calls with a device error instead of hanging', async () => {
    const device = await ownDevice('default');
    const own = createWebGpuBackend({ device });
    const inputs = inputsFor({ batch: 1, queryHeads: 1, queryLength: 3, headDim: 2 }, 4);
    await own.attention(inputs);
    device.destroy();
    const error = await own.attention(inputs).catch((e: unknown) => e);
    expect(isAttnkitError(error) && error.code).toBe('device');
    await own.dispose();
  });

  it('a lost device the backend acquired is replaced on the next call', async () => {
    const own = newBackend();
    const inputs = inputsFor({ batch: 1, queryHeads: 1, queryLength: 3, headDim: 2 }, 5);
    await expectMatchesReference(own, inputs);
    const first = own.device;
    first.destroy();
    // The call racing the loss may reject with `device` (never hang, never zeros), or, when the loss
    // was already reported, run on the replacement; either way the next one runs on a new device.
    const raced = await own.attention(inputs).then(
      (result) => result,
      (e: unknown) => e,
    );
    if (isAttnkitError(raced)) expect(raced.code).toBe('device');
    else
      expectClose(
        'output',
        (raced as AttentionResult).output,
        referenceAttention64(inputs).output,
        own.capabilities.tolerance,
      );
    await expectMatchesReference(own, inputs, { causal: true });
    expect(own.device).not.toBe(first);
    await own.dispose();
    expect(own.memory().deviceBytes).toBe(0);
  });

  it('bad input is rejected before a device is acquired', async () => {
    let asked = 0;
    const gpu = {
      requestAdapter: async () => {
        asked++;
        return null;
      },
    } as unknown as GPU;
    const lazy = createWebGpuBackend({ gpu });
    const inputs = inputsFor({ batch: 1, queryHeads: 1, queryLength: 3, headDim: 2 }, 4);
    await expect(lazy.attention({ ...inputs, q: new Float32Array(5) })).rejects.toMatchObject({
      code: 'invalid-argument',
      argument: 'q.length',
    });
    await expect(lazy.attention(inputs, { slidingWindow: 0 })).rejects.toMatchObject({
      code: 'invalid-argument',
    });
    expect(asked).toBe(0);
    await expect(lazy.attention(inputs)).rejects.toMatchObject({ code: 'unavailable' });
    expect(asked).toBe(1);
    await lazy.dispose();
  });

  it('rejects use after dispose', async () => {
    const b = newBackend();
    await b.init();
    await b.dispose();
    expect(b.memory().deviceBytes).toBe(0);
    const inputs = inputsFor({ batch: 1, queryHeads: 1, queryLength: 3, headDim: 2 }, 4);
    await expect(b.attention(inputs)).rejects.toMatchObject({ code: 'disposed' });
    await expect(b.upload(new Float32Array(4))).rejects.toMatchObject({ code: 'disposed' });
  });
});
