import { randomArray, randomAttentionInputs, signedPrng } from '@attnkit/conformance';
import { expectClose } from '@attnkit/conformance/vitest';
import {
  createBackend,
  multiHeadAttention,
  referenceAttention64,
  referenceMatmul64,
  referenceMultiHeadAttention64,
} from '@attnkit/spec';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebglImplementation } from '../src/backend.js';
import { createWebglBackend } from '../src/index.js';

const backend = createWebglBackend();
let tol = { atol: 0, rtol: 0 };

beforeAll(async () => {
  await backend.init();
  tol = backend.capabilities.tolerance;
});
afterAll(async () => {
  await backend.dispose();
});

describe('non-finite inputs and masked rows follow the reference', () => {
  test('NaN in a query row, infinite value in a masked key, -inf bias, fully masked batch row', async () => {
    const shape = { batch: 2, queryHeads: 2, queryLength: 4, keyLength: 6, headDim: 3 };
    const inputs = randomAttentionInputs(shape, 3);
    inputs.q[5] = Number.NaN; // batch 0, head 0, row 1
    const keyMask = new Uint8Array([1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]); // batch 1 sees nothing
    inputs.v[2 * 3 + 1] = Number.POSITIVE_INFINITY; // batch 0, head 0, key 2: masked
    const bias = new Float32Array(6);
    bias[4] = Number.NEGATIVE_INFINITY;
    const options = {
      keyMask,
      bias: { data: bias, shape: [1, 1, 1, 6] as [number, number, number, number] },
      returnLse: true,
      returnWeights: true,
    };
    const got = await backend.attention(inputs, options);
    const want = referenceAttention64(inputs, options);
    expectClose(got.output, want.output, tol, 'output');
    expectClose(got.lse, want.lse, tol, 'lse');
    expectClose(got.weights, want.weights, tol, 'weights');
    expect(Number.isNaN(got.output[4 * 3])).toBe(false);
    expect(got.lse![8]).toBe(Number.NEGATIVE_INFINITY);
  });

  test('sink only (every key masked): zeros and lse = sink', async () => {
    const shape = { batch: 1, queryHeads: 2, queryLength: 3, keyLength: 5, headDim: 4 };
    const inputs = randomAttentionInputs(shape, 4);
    const options = {
      keyMask: new Uint8Array(5),
      sinks: new Float32Array([0.5, Number.NEGATIVE_INFINITY]),
      returnLse: true,
      returnWeights: true,
    };
    const got = await backend.attention(inputs, options);
    const want = referenceAttention64(inputs, options);
    expectClose(got.output, want.output, tol, 'output');
    expectClose(got.lse, want.lse, tol, 'lse');
    expectClose(got.weights, want.weights, tol, 'weights');
  });

  test('large logits (1e4) and all-equal scores', async () => {
    const shape = { batch: 1, queryHeads: 1, queryLength: 8, keyLength: 40, headDim: 4 };
    const inputs = randomAttentionInputs(shape, 5);
    inputs.k.fill(0.25);
    for (const options of [
      { scale: 1 },
      { scale: 1, bias: { data: new Float32Array([1e4]), shape: [1, 1, 1, 1] as const } },
    ]) {
      const got = await backend.attention(inputs, { ...options, returnLse: true });
      const want = referenceAttention64(inputs, { ...options, returnLse: true });
      expectClose(got.output, want.output, tol, 'output');
      expectClose(got.lse, want.lse, tol, 'lse');
    }
  });
});

describe('long keys and the texture limit', () => {
  test('Lk larger than MAX_TEXTURE_SIZE', async () => {
    const impl = new WebglImplementation();
    await impl.init();
    const max = impl.gl!.maxTextureSize;
    await impl.dispose();
    const Lk = max + 808;
    const shape = { batch: 1, queryHeads: 2, kvHeads: 1, queryLength: 3, keyLength: Lk, headDim: 8 };
    const inputs = randomAttentionInputs(shape, 6);
    const got = await backend.attention(inputs, { causal: true, returnLse: true });
    const want = referenceAttention64(inputs, { causal: true, returnLse: true });
    console.log(
      `Lk ${Lk} > MAX_TEXTURE_SIZE ${max}: worst |err|`,
      expectClose(got.output, want.output, tol, 'output'),
    );
    expectClose(got.lse, want.lse, tol, 'lse');
  });
});

describe('one backend, changing shapes', () => {
  // Regression: gpu.js swaps in a remembered texture when a kernel reads its own output; with a
  // shape change between calls that texture had the old size and the results were garbage.
  for (const vectorized of [true, false]) {
    test(`shapes change between calls (vectorized: ${vectorized})`, async () => {
      const local = createWebglBackend({ vectorized });
      for (const [Lk, D] of [
        [2048, 64],
        [2048, 8],
        [600, 64],
        [9, 3],
      ]) {
        const inputs = randomAttentionInputs(
          { batch: 1, queryHeads: 1, queryLength: 2, keyLength: Lk, headDim: D },
          Lk + D,
        );
        const got = await local.attention(inputs, { returnLse: true });
        const want = referenceAttention64(inputs, { returnLse: true });
        expectClose(got.output, want.output, tol, `output Lk ${Lk} D ${D}`);
        expectClose(got.lse, want.lse, tol, `lse Lk ${Lk} D ${D}`);
      }
      await local.dispose();
    });
  }
});

describe('matmul and the multi-head attention layer', () => {
  test('matmul with bias, odd sizes', async () => {
    const next = signedPrng(9);
    const [m, k, n] = [37, 29, 13];
    const a = randomArray(m * k, next);
    const b = randomArray(k * n, next);
    const bias = randomArray(n, next);
    const got = await backend.matmul({ a, b, bias, shape: { m, k, n } });
    expectClose(got, referenceMatmul64(a, b, m, k, n, bias), tol, 'matmul');
  });

  test('MHA layer, cross-attention with GQA', async () => {
    const next = signedPrng(10);
    const shape = {
      batch: 2,
      queryLength: 5,
      keyLength: 7,
      modelDim: 12,
      queryHeads: 4,
      kvHeads: 2,
      headDim: 3,
    };
    const inputs = {
      x: randomArray(2 * 5 * 12, next),
      context: randomArray(2 * 7 * 12, next),
      weights: {
        wq: randomArray(12 * 12, next),
        wk: randomArray(12 * 6, next),
        wv: randomArray(12 * 6, next),
        wo: randomArray(12 * 12, next),
        bq: randomArray(12, next),
        bo: randomArray(12, next),
      },
      shape,
    };
    const got = await multiHeadAttention(backend, inputs, { causal: true });
    const want = referenceMultiHeadAttention64(inputs, { causal: true });
    expectClose(got.output, want.output, tol, 'layer output');
  });
});

describe('resources', () => {
  test('1,000 calls with flat device memory and texture count', async () => {
    const impl = new WebglImplementation({ tileKeys: 16 });
    const local = createWebglBackendFrom(impl);
    const inputs = randomAttentionInputs(
      { batch: 1, queryHeads: 2, queryLength: 8, keyLength: 40, headDim: 4 },
      11,
    );
    await local.attention(inputs, { returnWeights: true });
    const bytes = impl.gl!.deviceBytes();
    const textures = impl.gl!.liveTextures();
    for (let n = 0; n < 1000; n++) await local.attention(inputs, { causal: n % 2 === 0 });
    await local.attention(inputs, { returnWeights: true });
    console.log(
      `after 1,002 calls: ${impl.gl!.liveTextures()} textures, ${impl.gl!.deviceBytes()} bytes (was ${textures}, ${bytes})`,
    );
    expect(impl.gl!.liveTextures()).toBe(textures);
    expect(impl.gl!.deviceBytes()).toBe(bytes);
    await local.dispose();
    expect(local.memory().deviceBytes).toBe(0);
  });
});

function createWebglBackendFrom(impl: WebglImplementation) {
  return createBackend(impl);
}
