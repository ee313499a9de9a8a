import {
  type AttentionShape,
  isAttnkitError,
  type LayerInputs,
  referenceAttention64,
  referenceMatmulInputs64,
  referenceMultiHeadAttention64,
  validateAttention,
  validateMatmul,
} from '@attnkit/spec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireDevice } from '../src/device.js';
import * as host from '../src/host.js';
import { createWebGpuBackend, type WebGpuBackend, type WebGpuBackendOptions } from '../src/index.js';
import { createDeviceState, type DeviceState, type Runtime } from '../src/state.js';
import { expectClose, inputsFor, newBackend, random } from './helpers.js';

let backend: WebGpuBackend;

beforeAll(async () => {
  backend = newBackend();
  await backend.init();
});

afterAll(async () => {
  await backend.dispose();
});

const STORAGE = 0x80;
const COPY_SRC = 0x4;
const COPY_DST = 0x8;
const tiny: AttentionShape = {
  batch: 1,
  queryHeads: 2,
  kvHeads: 1,
  queryLength: 5,
  keyLength: 6,
  headDim: 4,
};

/** A backend whose GPU counts adapter requests, to prove a call acquired nothing. */
function countingBackend(): { backend: WebGpuBackend; asked: () => number } {
  let asked = 0;
  const gpu = {
    requestAdapter: async () => {
      asked++;
      return null;
    },
  } as unknown as GPU;
  return { backend: createWebGpuBackend({ gpu }), asked: () => asked };
}

function expectInvalid(error: unknown, argument: string): void {
  expect(isAttnkitError(error), String(error)).toBe(true);
  if (!isAttnkitError(error)) return;
  expect(error.code, error.message).toBe('invalid-argument');
  expect(error.argument, error.message).toBe(argument);
  expect(typeof error.expected).toBe('string');
  expect(typeof error.actual).toBe('string');
}

function detach(array: Float32Array): void {
  structuredClone(array.buffer, { transfer: [array.buffer as ArrayBuffer] });
}

describe('failed calls give back every buffer they took', () => {
  it('50 calls failing on the device leave deviceBytes where it was', async () => {
    const good = await backend.upload(random(64, 1));
    const deadBuffer = backend.device.createBuffer({ size: 256, usage: STORAGE | COPY_DST | COPY_SRC });
    deadBuffer.destroy();
    const dead = { buffer: deadBuffer, elements: 64 };
    const mm = { m: 4, k: 4, n: 4 };
    const q = { buffer: good.buffer, elements: 40 };
    const kv = { buffer: good.buffer, elements: 24 };
    const m16 = { buffer: good.buffer, elements: 16 };
    const bias4 = { buffer: good.buffer, elements: 4 };
    // One successful call of each kind first, so the pool holds what these calls need.
    const out = await backend.attentionBuffers({ q, k: kv, v: kv, shape: tiny }, { returnLse: true });
    backend.release(out.output);
    backend.release(out.lse!);
    backend.release(await backend.matmulBuffers({ a: m16, b: m16, bias: bias4, shape: mm }));
    const before = backend.memory().deviceBytes;
    for (let n = 0; n < 25; n++) {
      const a = await backend
        .attentionBuffers({ q: { ...dead, elements: 40 }, k: kv, v: kv, shape: tiny }, { returnLse: true })
        .catch((e: unknown) => e);
      expect(isAttnkitError(a) && a.code).toBe('device');
      const b = await backend
        .matmulBuffers({ a: { ...dead, elements: 16 }, b: m16, bias: bias4, shape: mm })
        .catch((e: unknown) => e);
      expect(isAttnkitError(b) && b.code).toBe('device');
    }
    expect(backend.memory().deviceBytes).toBe(before);
    backend.release(good);
  });
});

describe('the device-resident path validates before it acquires anything', () => {
  it('bad arguments are invalid-argument, and no device is acquired', async () => {
    const { backend: lazy, asked } = countingBackend();
    const buffer = {
      size: 1024,
      usage: STORAGE | COPY_SRC,
      destroy: () => undefined,
    } as unknown as GPUBuffer;
    const t = (elements: number) => ({ buffer, elements });
    const [q, kv] = [t(40), t(24)];
    type Inputs = Parameters<WebGpuBackend['attentionBuffers']>[0];
    const calls: [Promise<unknown>, string][] = [
      [lazy.attentionBuffers(null as unknown as Inputs), 'inputs'],
      [lazy.attentionBuffers({ q: {} as typeof q, k: kv, v: kv, shape: tiny }), 'q.elements'],
      [
        lazy.attentionBuffers({ q: { buffer: {} as GPUBuffer, elements: 40 }, k: kv, v: kv, shape: tiny }),
        'q.buffer',
      ],
      [lazy.attentionBuffers({ q: t(41), k: kv, v: kv, shape: tiny }), 'q.elements'],
      [lazy.attentionBuffers({ q, k: kv, v: t(23), shape: tiny }), 'v.elements'],
      [lazy.attentionBuffers({ q, k: kv, v: kv, shape: { ...tiny, headDim: 0 } }), 'shape.headDim'],
      [lazy.attentionBuffers({ q, k: kv, v: kv, shape: tiny, layout: 'lhbd' as 'bhld' }), 'layout'],
      [
        lazy.attentionBuffers({ q, k: kv, v: kv, shape: tiny }, { slidingWindow: 0 }),
        'options.slidingWindow',
      ],
      [lazy.matmulBuffers({ a: t(4), b: t(4), shape: { m: 2, k: 0, n: 2 } }), 'shape.k'],
      [lazy.matmulBuffers({ a: t(4), b: 5 as unknown as typeof q, shape: { m: 2, k: 2, n: 2 } }), 'b'],
      [lazy.matmulBuffers({ a: t(4), b: t(5), shape: { m: 2, k: 2, n: 2 } }), 'b.elements'],
      [lazy.upload([1, 2, 3] as unknown as Float32Array), 'data'],
      [lazy.read(t(-1)), 'tensor.elements'],
      [
        lazy.read({ buffer: { ...buffer, usage: STORAGE } as unknown as GPUBuffer, elements: 4 }),
        'tensor.buffer.usage',
      ],
    ];
    for (const [call, argument] of calls) expectInvalid(await call.catch((e: unknown) => e), argument);
    expect(() => lazy.release(5 as unknown as typeof q)).toThrow(
      expect.objectContaining({ argument: 'tensor' }),
    );
    expect(asked()).toBe(0);
    expect(lazy.memory().deviceBytes).toBe(0);
    await lazy.dispose();
  });

  it("a caller's buffer that cannot be used is invalid-argument naming it, not a device error", async () => {
    const device = backend.device;
    const noCopy = { buffer: device.createBuffer({ size: 256, usage: STORAGE }), elements: 4 };
    expectInvalid(await backend.read(noCopy).catch((e: unknown) => e), 'tensor.buffer.usage');
    const mappedBuffer = device.createBuffer({
      size: 256,
      usage: STORAGE | COPY_SRC,
      mappedAtCreation: true,
    });
    const good = await backend.upload(random(64, 2));
    const before = backend.memory().deviceBytes;
    const kv = { buffer: good.buffer, elements: 24 };
    expectInvalid(
      await backend
        .attentionBuffers({ q: { buffer: mappedBuffer, elements: 40 }, k: kv, v: kv, shape: tiny })
        .catch((e: unknown) => e),
      'q.buffer.mapState',
    );
    const m16 = { buffer: good.buffer, elements: 16 };
    expectInvalid(
      await backend
        .matmulBuffers({ a: m16, b: { buffer: mappedBuffer, elements: 16 }, shape: { m: 4, k: 4, n: 4 } })
        .catch((e: unknown) => e),
      'b.buffer.mapState',
    );
    expectInvalid(
      await backend.read({ buffer: mappedBuffer, elements: 4 }).catch((e: unknown) => e),
      'tensor.buffer.mapState',
    );
    expect(backend.memory().deviceBytes).toBe(before);
    noCopy.buffer.destroy();
    mappedBuffer.destroy();
    backend.release(good);
  });
});

describe('factory options', () => {
  const bad: [unknown, string][] = [
    [null, 'options'],
    [42, 'options'],
    [{ device: {} }, 'options.device'],
    [{ gpu: {} }, 'options.gpu'],
    [{ devcie: {} }, 'options.devcie'],
    [{ dawnFlags: 'x' }, 'options.dawnFlags'],
    [{ nodeWebgpuModule: {} }, 'options.nodeWebgpuModule'],
    [{ adapterOptions: 3 }, 'options.adapterOptions'],
    [{ workgroupSize: 0 }, 'options.workgroupSize'],
  ];
  for (const [options, argument] of bad) {
    it(`rejects ${JSON.stringify(options)} naming ${argument}`, () => {
      let error: unknown;
      try {
        createWebGpuBackend(options as WebGpuBackendOptions);
      } catch (e) {
        error = e;
      }
      expectInvalid(error, argument);
    });
  }

  it('accepts no options, an empty object and undefined fields', async () => {
    for (const options of [undefined, {}, { device: undefined, workgroupSize: undefined }]) {
      const b = createWebGpuBackend(options);
      await b.dispose();
    }
  });
});

describe('inputs are read before the call returns', () => {
  it('upload: writing into or transferring the array right after the call does not change the buffer', async () => {
    const data = random(40, 3);
    const original = data.slice();
    const overwritten = backend.upload(data);
    data.fill(1e30);
    const transferred = random(40, 4);
    const original2 = transferred.slice();
    const pending = backend.upload(transferred);
    detach(transferred);
    const [a, b] = await Promise.all([overwritten, pending]);
    expect(await backend.read(a)).toEqual(original);
    expect(await backend.read(b)).toEqual(original2);
    backend.release(a);
    backend.release(b);
  });

  it('multiHeadAttention and attentionBuffers options: later writes into the inputs do not change the result', async () => {
    const M = 8;
    const inputs: LayerInputs = {
      x: random(2 * 3 * M, 5),
      shape: { batch: 2, queryLength: 3, modelDim: M, queryHeads: 2, kvHeads: 1, headDim: 4 },
      weights: {
        wq: random(M * 8, 6),
        wk: random(M * 4, 7),
        wv: random(M * 4, 8),
        wo: random(8 * M, 9),
        bq: random(8, 10),
      },
    };
    const ref = referenceMultiHeadAttention64(inputs, { causal: true });
    const pending = backend.multiHeadAttention(inputs, { causal: true });
    inputs.x.fill(Number.NaN);
    detach(inputs.weights.wq);
    expectClose('output', (await pending).output, ref.output, backend.capabilities.tolerance);

    const host3 = inputsFor(tiny, 11);
    const [q, k, v] = await Promise.all([host3.q, host3.k, host3.v].map((t) => backend.upload(t)));
    const bias = { data: random(5 * 6, 12), shape: [1, 1, 5, 6] as [number, number, number, number] };
    const options = { bias, returnLse: true };
    const expected = referenceAttention64(host3, options);
    const resident = backend.attentionBuffers({ q, k, v, shape: tiny }, options);
    bias.data.fill(1e30);
    const out = await resident;
    expectClose('output', await backend.read(out.output), expected.output, backend.capabilities.tolerance);
    for (const tensor of [q, k, v, out.output, out.lse!]) backend.release(tensor);
  });

  it('attention and matmul through the backend: a transferred input never yields a stale result', async () => {
    // Earlier calls leave their outputs in pooled buffers: a detached q must never be read as one.
    const inputs = inputsFor(tiny, 17);
    const expected = referenceAttention64(inputsFor(tiny, 17)).output;
    await backend.attention(inputsFor(tiny, 18));
    const pending = backend.attention(inputs);
    detach(inputs.q);
    const mm = { a: random(12, 19), b: random(20, 20), shape: { m: 3, k: 4, n: 5 } };
    const expectedMm = referenceMatmulInputs64({ ...mm, a: mm.a.slice(), b: mm.b.slice() });
    const pendingMm = backend.matmul(mm);
    detach(mm.a);
    // The spec gate calls an initialised backend in the caller's tick, and webgpu uploads its inputs
    // before its first await: the detached arrays were read in time, so these are the reference
    // values, never a result computed from stale pooled memory.
    expectClose('output', (await pending).output, expected, backend.capabilities.tolerance);
    expectClose('matmul', await pendingMm, expectedMm, backend.capabilities.tolerance);
  });

  describe('the implementation reads attention and matmul inputs in its synchronous prefix', () => {
    // The spec gate calls an initialised backend's implementation in the caller's tick (and copies
    // inputs while init is pending); this checks webgpu's half of that contract directly.
    let state: DeviceState;
    let rt: Runtime;
    beforeAll(async () => {
      state = createDeviceState(await acquireDevice({}));
      rt = {
        live: async () => undefined,
        ready: () => state,
        usable: () => state,
        workgroupSize: undefined,
      };
    });
    afterAll(() => {
      state.pool.destroyAll();
      state.device.destroy();
    });

    it('attention: overwritten or transferred q, k, v and options after the call', async () => {
      const inputs = inputsFor(tiny, 13);
      const mask = new Uint8Array([1, 1, 0, 1, 1, 1]);
      const options = { keyMask: mask, alibiSlopes: new Float32Array([0.5, 0.25]), returnLse: true };
      const expected = referenceAttention64(
        { ...inputs, q: inputs.q.slice(), k: inputs.k.slice(), v: inputs.v.slice() },
        { ...options, keyMask: mask.slice(), alibiSlopes: options.alibiSlopes.slice() },
      );
      const first = host.attention(rt, validateAttention(inputs, options));
      inputs.q.fill(1e30);
      inputs.k.fill(Number.NaN);
      mask.fill(0);
      options.alibiSlopes.fill(1e30);
      const second = inputsFor(tiny, 13);
      const pending = host.attention(rt, validateAttention(second, { returnLse: true }));
      const expected2 = referenceAttention64(inputsFor(tiny, 13), { returnLse: true });
      detach(second.q);
      detach(second.v);
      const tolerance = { atol: 2e-5, rtol: 2e-4 };
      const got = await first;
      expectClose('output', got.output, expected.output, tolerance);
      expectClose('lse', got.lse, expected.lse, tolerance);
      const got2 = await pending;
      expectClose('output', got2.output, expected2.output, tolerance);
    });

    it('matmul: overwritten or transferred operands after the call', async () => {
      const inputs = {
        a: random(12, 14),
        b: random(20, 15),
        bias: random(5, 16),
        shape: { m: 3, k: 4, n: 5 },
      };
      const expected = referenceMatmulInputs64({
        ...inputs,
        a: inputs.a.slice(),
        b: inputs.b.slice(),
        bias: inputs.bias.slice(),
      });
      const pending = host.matmul(rt, validateMatmul(inputs));
      inputs.a.fill(1e30);
      detach(inputs.b);
      detach(inputs.bias);
      expectClose('matmul', await pending, expected, { atol: 2e-5, rtol: 2e-4 });
    });
  });
});
