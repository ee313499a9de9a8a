import { randomArray, randomAttentionInputs, signedPrng } from '@attnkit/conformance';
import { expectClose } from '@attnkit/conformance/vitest';
import {
  type AttentionBackend,
  type AttentionOptions,
  type AttentionShape,
  referenceAttention64,
  referenceMatmul64,
} from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { CPU_TOLERANCE, createCpuBackend } from '../src/index.js';

const shape: AttentionShape = {
  batch: 2,
  queryHeads: 4,
  kvHeads: 2,
  queryLength: 5,
  keyLength: 7,
  headDim: 8,
};

function transfer(buffer: ArrayBufferLike): void {
  structuredClone(buffer, { transfer: [buffer as ArrayBuffer] });
}

function richOptions(): AttentionOptions {
  const next = signedPrng(77);
  return {
    causal: true,
    bias: { data: randomArray(2 * 1 * 5 * 7, next), shape: [2, 1, 5, 7] },
    keyMask: Uint8Array.from({ length: 14 }, (_, i) => (i % 5 === 3 ? 0 : 1)),
    alibiSlopes: randomArray(4, next),
    sinks: randomArray(4, next),
    returnLse: true,
  };
}

/**
 * While installed, `new Float32Array(n)` with `n >= limit` throws the RangeError V8 throws when it
 * cannot allocate (`Array buffer allocation failed`), so an allocation failure is testable without
 * exhausting the machine's memory (here 8 GiB `new Float32Array(2 ** 31 - 1)` succeeds lazily).
 */
function failingFloat32Allocations(limit: number): () => void {
  const original = globalThis.Float32Array;
  globalThis.Float32Array = new Proxy(original, {
    construct(target, args, newTarget) {
      if (typeof args[0] === 'number' && args[0] >= limit)
        throw new RangeError('Array buffer allocation failed');
      return Reflect.construct(target, args, newTarget) as object;
    },
  });
  return () => {
    globalThis.Float32Array = original;
  };
}

describe('cpu: inputs are read before the call returns', () => {
  for (const initialised of [true, false]) {
    const label = initialised ? 'initialised' : 'init pending';
    it(`overwriting q and transferring k's buffer right after attention() leaves the result unchanged (${label})`, async () => {
      const backend: AttentionBackend = createCpuBackend();
      if (initialised) await backend.init();
      const inputs = randomAttentionInputs(shape, 5);
      const options = richOptions();
      const expected = referenceAttention64(
        { ...inputs, q: inputs.q.slice(), k: inputs.k.slice(), v: inputs.v.slice() },
        options,
      );
      const call = backend.attention(inputs, options);
      inputs.q.fill(Number.NaN);
      transfer(inputs.k.buffer);
      transfer(options.keyMask!.buffer);
      options.sinks!.fill(1e30);
      const result = await call;
      expectClose(result.output, expected.output, CPU_TOLERANCE, 'output');
      expectClose(result.lse, expected.lse, CPU_TOLERANCE, 'lse');
      await backend.dispose();
    });

    it(`matmul inputs are read before the call returns (${label})`, async () => {
      const backend = createCpuBackend();
      if (initialised) await backend.init();
      const next = signedPrng(3);
      const a = randomArray(12, next);
      const b = randomArray(16, next);
      const bias = randomArray(4, next);
      const expected = referenceMatmul64(a, b, 3, 4, 4, bias);
      const call = backend.matmul({ a, b, bias, shape: { m: 3, k: 4, n: 4 } });
      a.fill(Number.NaN);
      transfer(b.buffer);
      bias.fill(9);
      expectClose(await call, expected, CPU_TOLERANCE, 'matmul');
      await backend.dispose();
    });
  }
});

describe('cpu: option values and inputs at the edge of float32', () => {
  it('a sliding window of 2^32 + 1 is no window', async () => {
    const backend = createCpuBackend();
    const inputs = randomAttentionInputs(shape, 8);
    const { output } = await backend.attention(inputs, { slidingWindow: 2 ** 32 + 1 });
    expectClose(output, referenceAttention64(inputs).output, CPU_TOLERANCE, 'output');
    await backend.dispose();
  });

  it.each([
    ['softcap', 1e-50],
    ['softcap', 1e39],
    ['scale', 1e300],
    ['scale', -1e300],
  ] as const)('rejects options.%s = %d naming the float32 range', async (name, value) => {
    const backend = createCpuBackend();
    const options: AttentionOptions = { [name]: value };
    await expect(backend.attention(randomAttentionInputs(shape, 1), options)).rejects.toMatchObject({
      code: 'invalid-argument',
      argument: `options.${name}`,
      message: expect.stringContaining('float32 kernels'),
    });
    await backend.dispose();
  });

  it('rejects q = k = 1e30 (logits overflow float32) and keeps working', async () => {
    const backend = createCpuBackend();
    const inputs = randomAttentionInputs(shape, 2);
    await expect(
      backend.attention({ ...inputs, q: inputs.q.map(() => 1e30), k: inputs.k.map(() => 1e30) }),
    ).rejects.toMatchObject({ code: 'invalid-argument', argument: 'q, k' });
    const { output } = await backend.attention(inputs);
    expectClose(output, referenceAttention64(inputs).output, CPU_TOLERANCE, 'output');
    await backend.dispose();
  });
});

describe('createCpuBackend options', () => {
  it('rejects a typo listing the known options', () => {
    expect(() => createCpuBackend({ keyblock: 8 } as never)).toThrow(
      expect.objectContaining({
        code: 'invalid-argument',
        argument: 'options.keyblock',
        message: 'createCpuBackend: options has unknown key "keyblock" (known: queryBlock, keyBlock)',
      }),
    );
  });

  it.each([null, 3, [1]])('rejects options = %j', (value) => {
    expect(() => createCpuBackend(value as never)).toThrow(
      expect.objectContaining({ code: 'invalid-argument', argument: 'options' }),
    );
  });

  it('reads each option once', async () => {
    let reads = 0;
    const backend = createCpuBackend({
      get keyBlock() {
        reads++;
        return reads === 1 ? 16 : 0;
      },
    });
    expect(reads).toBe(1);
    expect(backend.capabilities.engine).toContain('key tile 16');
    await backend.dispose();
  });
});

describe('cpu: allocation failures', () => {
  it('a weights buffer that cannot be allocated is unavailable naming it and its bytes; the backend stays usable', async () => {
    const backend = createCpuBackend();
    const big: AttentionShape = { batch: 1, queryHeads: 1, queryLength: 64, keyLength: 64, headDim: 4 };
    const inputs = randomAttentionInputs(big, 4);
    const restore = failingFloat32Allocations(64 * 64);
    try {
      await expect(backend.attention(inputs, { returnWeights: true })).rejects.toMatchObject({
        name: 'AttnkitError',
        code: 'unavailable',
        argument: 'weights',
        message: expect.stringContaining(`${64 * 64 * 4} bytes`),
      });
      const { output } = await backend.attention(inputs);
      expectClose(output, referenceAttention64(inputs).output, CPU_TOLERANCE, 'output after the failure');
    } finally {
      restore();
    }
    await backend.dispose();
  });

  it('a matmul output that cannot be allocated is unavailable', async () => {
    const backend = createCpuBackend();
    const a = new Float32Array(8);
    const b = new Float32Array(8);
    const restore = failingFloat32Allocations(64);
    try {
      await expect(backend.matmul({ a, b, shape: { m: 8, k: 1, n: 8 } })).rejects.toMatchObject({
        code: 'unavailable',
        argument: 'output',
        message: expect.stringContaining('256 bytes'),
      });
    } finally {
      restore();
    }
    await backend.dispose();
  });
});
