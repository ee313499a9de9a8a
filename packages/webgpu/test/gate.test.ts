// Every public entry point of the WebGPU backend goes through the spec's one gate: a bad argument is
// `invalid-argument` naming it, and the call allocates nothing, neither host nor device bytes, and
// moves nothing between host and device (the "Done when", first bullet).
import {
  type AttentionShape,
  isAttnkitError,
  type LayerInputs,
  multiHeadAttention,
  referenceMultiHeadAttention64,
} from '@attnkit/spec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type GpuTensor, type WebGpuBackend } from '../src/index.js';
import { expectClose, inputsFor, newBackend, random } from './helpers.js';

const shape: AttentionShape = {
  batch: 1,
  queryHeads: 2,
  kvHeads: 1,
  queryLength: 5,
  keyLength: 6,
  headDim: 4,
};
const M = 8;
const layerInputs = (): LayerInputs => ({
  x: random(5 * M, 1),
  shape: { batch: 1, queryLength: 5, modelDim: M, queryHeads: 2, kvHeads: 1, headDim: 4 },
  weights: { wq: random(M * 8, 2), wk: random(M * 4, 3), wv: random(M * 4, 4), wo: random(8 * M, 5) },
});

/** One bad call per entry point, with the argument its error must name. */
function badCalls(backend: WebGpuBackend, tensor: (elements: number) => GpuTensor) {
  const inputs = inputsFor(shape, 6);
  const backward = {
    ...inputs,
    output: new Float32Array(40),
    lse: new Float32Array(10),
    gradOutput: new Float32Array(39),
  };
  const layer = layerInputs();
  const calls: [string, () => Promise<unknown>, string][] = [
    ['attention', () => backend.attention({ ...inputs, k: new Float32Array(23) }), 'k.length'],
    ['attentionBackward', () => backend.attentionBackward(backward), 'gradOutput.length'],
    [
      'matmul',
      () => backend.matmul({ a: random(6, 7), b: random(6, 8), shape: { m: 2, k: 3, n: 3 } }),
      'b.length',
    ],
    ['multiHeadAttention', () => backend.multiHeadAttention({ ...layer, x: random(39, 9) }), 'x.length'],
    [
      'multiHeadAttention options',
      () => backend.multiHeadAttention(layer, { sinks: new Float32Array(3) }),
      'options.sinks.length',
    ],
    ['createKVCache', () => backend.createKVCache({ batch: 1, kvHeads: 0, headDim: 4 }), 'config.kvHeads'],
    ['upload', () => backend.upload(new Float64Array(4) as unknown as Float32Array), 'data'],
    ['read', () => backend.read({ ...tensor(4), elements: 4.5 }), 'tensor.elements'],
    [
      'attentionBuffers',
      () => backend.attentionBuffers({ q: tensor(40), k: tensor(24), v: tensor(25), shape }),
      'v.elements',
    ],
    [
      'attentionBuffers options',
      () => backend.attentionBuffers({ q: tensor(40), k: tensor(24), v: tensor(24), shape }, { softcap: -1 }),
      'options.softcap',
    ],
    [
      'matmulBuffers',
      () =>
        backend.matmulBuffers({ a: tensor(6), b: tensor(6), bias: tensor(3), shape: { m: 2, k: 3, n: 2 } }),
      'bias.elements',
    ],
    ['prepare', () => backend.prepare([{ shape: { ...shape, headDim: 0 } }]), 'shape.headDim'],
  ];
  return calls;
}

function expectNamed(error: unknown, argument: string, entry = argument): void {
  expect(isAttnkitError(error), `${entry}: ${String(error)}`).toBe(true);
  if (!isAttnkitError(error)) return;
  expect(error.code, `${entry}: ${error.message}`).toBe('invalid-argument');
  expect(error.argument, error.message).toBe(argument);
  expect(error.message).toContain(argument);
}

describe('every entry point, initialised backend: bad input names the argument and allocates nothing', () => {
  let backend: WebGpuBackend;
  let own: GpuTensor;

  beforeAll(async () => {
    backend = newBackend();
    await backend.init();
    own = await backend.upload(random(64, 10));
  });

  afterAll(async () => {
    backend.release(own);
    await backend.dispose();
  });

  const tensor = (elements: number): GpuTensor => ({ buffer: own.buffer, elements });

  it('each call', async () => {
    for (const [entry, call, argument] of badCalls(backend, tensor)) {
      const memory = backend.memory();
      const transfers = backend.transfers();
      expectNamed(await call().catch((e: unknown) => e), argument, entry);
      expect(backend.memory(), entry).toEqual(memory);
      expect(backend.transfers(), entry).toEqual(transfers);
    }
    const memory = backend.memory();
    expect(() => backend.release({} as GpuTensor)).toThrow(
      expect.objectContaining({ argument: 'tensor.elements' }),
    );
    expect(backend.memory()).toEqual(memory);
  });

  it("the spec's multiHeadAttention dispatches to this backend's device layer: one readback", async () => {
    const inputs = layerInputs();
    const before = backend.transfers();
    const got = await multiHeadAttention(backend, inputs);
    // The composition over matmul and attention would read back each of its five calls.
    expect(backend.transfers().downloads - before.downloads).toBe(1);
    expectClose(
      'output',
      got.output,
      referenceMultiHeadAttention64(inputs).output,
      backend.capabilities.tolerance,
    );
  });

  it("a KV cache's calls", async () => {
    const cache = await backend.createKVCache({ batch: 1, kvHeads: 1, headDim: 4 });
    await cache.append({ k: random(8, 11), v: random(8, 12), tokens: 2 });
    const memory = backend.memory();
    const transfers = backend.transfers();
    const calls: [Promise<unknown>, string][] = [
      [cache.append({ k: random(8, 13), v: random(7, 14), tokens: 2 }), 'chunk.v.length'],
      [cache.attention({ q: random(7, 15), queryHeads: 2, queryLength: 1 }), 'query.q.length'],
      [cache.truncate(3), 'lengths'],
    ];
    for (const [call, argument] of calls) expectNamed(await call.catch((e: unknown) => e), argument);
    expect(backend.memory()).toEqual(memory);
    expect(backend.transfers()).toEqual(transfers);
    expect(cache.lengths).toEqual([2]);
    await cache.dispose();
  });
});

describe('every entry point, backend never initialised: bad input acquires no device', () => {
  it('each call', async () => {
    let asked = 0;
    const gpu = {
      requestAdapter: async () => {
        asked++;
        return null;
      },
    } as unknown as GPU;
    const lazy = createWebGpuBackend({ gpu });
    const fake = { size: 1024, usage: 0x80 | 0x4, destroy: () => undefined } as unknown as GPUBuffer;
    for (const [entry, call, argument] of badCalls(lazy, (elements) => ({ buffer: fake, elements }))) {
      expectNamed(await call().catch((e: unknown) => e), argument, entry);
    }
    expect(asked).toBe(0);
    expect(lazy.memory()).toEqual({ hostBytes: 0, deviceBytes: 0 });
    expect(lazy.transfers()).toEqual({ uploadBytes: 0, uploads: 0, downloadBytes: 0, downloads: 0 });
    await lazy.dispose();
  });
});
