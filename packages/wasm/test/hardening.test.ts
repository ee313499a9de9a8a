import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  type AttentionBackend,
  type AttentionOptions,
  type AttentionShape,
  referenceAttention64,
  referenceMatmul64,
} from '@attnkit/spec';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createWasmBackend, WASM_TOLERANCE } from '../src/index.js';
import { errorRatio, inputsFor, uniform } from './helpers.js';

const shape: AttentionShape = {
  batch: 2,
  queryHeads: 4,
  kvHeads: 2,
  queryLength: 33,
  keyLength: 41,
  headDim: 12,
  valueDim: 6,
};

function transfer(buffer: ArrayBufferLike): void {
  structuredClone(buffer, { transfer: [buffer as ArrayBuffer] });
}

function richOptions(): AttentionOptions {
  return {
    causal: true,
    bias: { data: uniform(2 * 1 * 33 * 41, 11), shape: [2, 1, 33, 41] },
    keyMask: Uint8Array.from({ length: 2 * 41 }, (_, i) => (i % 7 === 3 ? 0 : 1)),
    alibiSlopes: uniform(4, 12),
    sinks: uniform(4, 13),
    returnLse: true,
  };
}

function expectWithin(actual: ArrayLike<number> | undefined, expected: ArrayLike<number> | undefined) {
  expect(actual).toBeDefined();
  expect(errorRatio(actual!, expected!, WASM_TOLERANCE.atol, WASM_TOLERANCE.rtol)).toBeLessThanOrEqual(1);
}

const variants = [
  ['1 thread', () => createWasmBackend({ threads: 1, queryBlock: 8 })],
  ['2 threads', () => createWasmBackend({ threads: 2, queryBlock: 8, parallelMinWork: 0 })],
] as const;

describe.each(variants)('wasm (%s): inputs are read before the call returns', (_, make) => {
  for (const initialised of [true, false]) {
    const label = initialised ? 'initialised' : 'init pending';
    it(`overwriting q and transferring k's buffer right after attention() leaves the result unchanged (${label})`, async () => {
      const backend: AttentionBackend = make();
      if (initialised) await backend.init();
      const inputs = inputsFor(shape, 5);
      const options = richOptions();
      const expected = referenceAttention64(
        { ...inputs, q: inputs.q.slice(), k: inputs.k.slice(), v: inputs.v.slice() },
        options,
      );
      const call = backend.attention(inputs, options);
      inputs.q.fill(Number.NaN);
      transfer(inputs.k.buffer);
      transfer(options.keyMask!.buffer);
      options.bias!.data.fill(1e6);
      options.sinks!.fill(30);
      const result = await call;
      expectWithin(result.output, expected.output);
      expectWithin(result.lse, expected.lse);
      await backend.dispose();
    });

    it(`matmul inputs are read before the call returns (${label})`, async () => {
      const backend = make();
      if (initialised) await backend.init();
      const a = uniform(15, 1);
      const b = uniform(20, 2);
      const bias = uniform(4, 3);
      const expected = referenceMatmul64(a, b, 3, 5, 4, bias);
      const call = backend.matmul({ a, b, bias, shape: { m: 3, k: 5, n: 4 } });
      a.fill(Number.NaN);
      transfer(b.buffer);
      bias.fill(9);
      expectWithin(await call, expected);
      await backend.dispose();
    });
  }

  it('a call queued behind a running one keeps its own copy of the inputs', async () => {
    const backend = make();
    await backend.init();
    const first = inputsFor(shape, 21);
    const second = inputsFor(shape, 22);
    const expected = [first, second].map(
      (i) => referenceAttention64({ ...i, q: i.q.slice(), k: i.k.slice(), v: i.v.slice() }).output,
    );
    const calls = [backend.attention(first), backend.attention(second)];
    for (const inputs of [first, second]) {
      inputs.q.fill(Number.NaN);
      transfer(inputs.k.buffer);
    }
    const results = await Promise.all(calls);
    expectWithin(results[0]!.output, expected[0]);
    expectWithin(results[1]!.output, expected[1]);
    await backend.dispose();
  });
});

describe('wasm: real types', () => {
  it("a Float32Array subclass whose length lies is rejected, not read past its end (the previous call's rows)", async () => {
    const backend = createWasmBackend();
    const small: AttentionShape = { batch: 1, queryHeads: 1, queryLength: 4, headDim: 4 };
    const inputs = inputsFor(small, 6);
    await backend.attention(inputs);
    class Liar extends Float32Array {
      override get length(): number {
        return 16;
      }
    }
    const q = new Liar(8);
    await expect(backend.attention({ ...inputs, q })).rejects.toMatchObject({
      code: 'invalid-argument',
      argument: 'q.length',
      actual: '8',
    });
    await backend.dispose();
  });
});

describe('wasm: option values and inputs at the edge of float32', () => {
  it('a sliding window of 2^32 + 1 is no window (not a window of 1)', async () => {
    const backend = createWasmBackend();
    const inputs = inputsFor(shape, 8);
    for (const causal of [false, true]) {
      const { output } = await backend.attention(inputs, { slidingWindow: 2 ** 32 + 1, causal });
      expectWithin(output, referenceAttention64(inputs, { causal }).output);
    }
    await backend.dispose();
  });

  it.each([
    ['softcap', 1e-50],
    ['softcap', 1e39],
    ['scale', 1e300],
    ['scale', -1e300],
  ])('rejects options.%s = %d naming the float32 range', async (name, value) => {
    const backend = createWasmBackend();
    const options: AttentionOptions = { [name]: value };
    await expect(backend.attention(inputsFor(shape, 1), options)).rejects.toMatchObject({
      code: 'invalid-argument',
      argument: `options.${name}`,
      message: expect.stringContaining('float32 kernels'),
    });
    await backend.dispose();
  });

  it('rejects q = k = 1e30 (logits overflow float32) instead of returning NaN, and keeps working', async () => {
    const backend = createWasmBackend();
    const inputs = inputsFor(shape, 2);
    await expect(
      backend.attention({ ...inputs, q: inputs.q.map(() => 1e30), k: inputs.k.map(() => 1e30) }),
    ).rejects.toMatchObject({ code: 'invalid-argument', argument: 'q, k' });
    const { output } = await backend.attention(inputs);
    expectWithin(output, referenceAttention64(inputs).output);
    await backend.dispose();
  });
});

describe('createWasmBackend options (one validator)', () => {
  it('rejects a typo listing the known options', () => {
    expect(() => createWasmBackend({ thread: 2 } as never)).toThrow(
      expect.objectContaining({
        code: 'invalid-argument',
        argument: 'options.thread',
        message:
          'createWasmBackend: options has unknown key "thread" (known: threads, queryBlock, keyBlock, parallelMinWork, wasmUrl, wasmThreadsUrl)',
      }),
    );
  });

  it.each([null, 2, [1]])('rejects options = %j', (value) => {
    expect(() => createWasmBackend(value as never)).toThrow(
      expect.objectContaining({ code: 'invalid-argument', argument: 'options' }),
    );
  });

  it('rejects a wasmUrl that is neither a URL nor a string', () => {
    expect(() => createWasmBackend({ wasmUrl: 3 } as never)).toThrow(
      expect.objectContaining({ code: 'invalid-argument', argument: 'options.wasmUrl' }),
    );
  });

  it('reads each option once', async () => {
    let reads = 0;
    const backend = createWasmBackend({
      get threads() {
        reads++;
        return reads === 1 ? 1 : (0 as never);
      },
    });
    expect(reads).toBe(1);
    await backend.init();
    expect(backend.capabilities.threads).toBe(1);
    await backend.dispose();
  });

  it('a module without the kernel exports rejects init with unavailable naming the missing export', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'attnkit-wasm-'));
    const file = join(dir, 'empty.wasm');
    // the smallest valid module: magic and version, no sections, so no exports
    writeFileSync(file, new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
    const backend = createWasmBackend({ wasmUrl: pathToFileURL(file) });
    await expect(backend.init()).rejects.toMatchObject({
      name: 'AttnkitError',
      code: 'unavailable',
      argument: 'wasmUrl',
      message: expect.stringContaining('no export "attn_scratch_bytes"'),
    });
    await backend.dispose();
  });
});

describe('wasm: allocation failures', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('a refused memory.grow is unavailable naming what and how many bytes; the backend stays usable', async () => {
    const backend = createWasmBackend();
    await backend.init();
    // 1024 x 1024 weights (4 MiB) do not fit in the initial 4 MiB memory: the call must grow it
    const big: AttentionShape = { batch: 1, queryHeads: 1, queryLength: 1024, headDim: 4 };
    const inputs = inputsFor(big, 3);
    const spy = vi.spyOn(WebAssembly.Memory.prototype, 'grow').mockImplementation(() => {
      throw new RangeError('WebAssembly.Memory.grow(): Maximum memory size exceeded');
    });
    await expect(backend.attention(inputs, { returnWeights: true })).rejects.toMatchObject({
      name: 'AttnkitError',
      code: 'unavailable',
      message: expect.stringMatching(/cannot grow memory from \d+ to \d+ bytes for this attention call/),
    });
    spy.mockRestore();
    const small = inputsFor(shape, 4);
    expectWithin((await backend.attention(small)).output, referenceAttention64(small).output);
    const { weights } = await backend.attention(inputs, { returnWeights: true });
    expectWithin(weights, referenceAttention64(inputs, { returnWeights: true }).weights);
    await backend.dispose();
  });
});
