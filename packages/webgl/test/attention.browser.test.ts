import { randomArray, randomAttentionInputs, signedPrng } from '@attnkit/conformance';
import { expectClose } from '@attnkit/conformance/vitest';
import { type AttentionOptions, type AttentionShape, referenceAttention64 } from '@attnkit/spec';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createWebglBackend } from '../src/index.js';

const backend = createWebglBackend({ tileKeys: 64 });

beforeAll(async () => {
  await backend.init();
  console.log(`engine: ${backend.capabilities.engine}`);
});
afterAll(async () => {
  await backend.dispose();
});

async function check(shape: AttentionShape, options: AttentionOptions = {}, seed = 1) {
  const inputs = randomAttentionInputs(shape, seed);
  const got = await backend.attention(inputs, { ...options, returnLse: true, returnWeights: true });
  const want = referenceAttention64(inputs, { ...options, returnLse: true, returnWeights: true });
  const tol = backend.capabilities.tolerance;
  const worst = Math.max(
    expectClose(got.output, want.output, tol, 'output'),
    expectClose(got.lse, want.lse, tol, 'lse'),
    expectClose(got.weights, want.weights, tol, 'weights'),
  );
  return worst;
}

describe('webgl attention against the float64 reference', () => {
  test('runs on a GL kernel class', () => {
    expect(backend.capabilities.engine).toMatch(/WebGL2Kernel|WebGLKernel|HeadlessGLKernel/);
  });
  test('plain', async () => {
    console.log('worst', await check({ batch: 1, queryHeads: 1, queryLength: 5, headDim: 4 }));
  });
  test('multi-tile, causal, GQA, cross', async () => {
    console.log(
      'worst',
      await check(
        { batch: 2, queryHeads: 4, kvHeads: 2, queryLength: 33, keyLength: 150, headDim: 7, valueDim: 5 },
        { causal: true },
      ),
    );
  });
  test('causal and windowed rows longer than a tile: chunks by query position, GQA, cross, lse and weights', async () => {
    // tileKeys 64 and Lq 150: the rows go to chunks position by position (every batch row and head
    // at one position together), each chunk skips the key tiles none of its rows sees; output, lse
    // and weights must land at each row's own place.
    const shape = {
      batch: 2,
      queryHeads: 4,
      kvHeads: 2,
      queryLength: 150,
      keyLength: 170,
      headDim: 7,
      valueDim: 5,
    };
    console.log('worst', await check(shape, { causal: true }, 3));
    console.log('worst', await check(shape, { slidingWindow: 30 }, 4));
    console.log(
      'worst',
      await check(shape, { slidingWindow: 50, causal: true, sinks: new Float32Array([0, 1, -1, 2]) }, 5),
    );
  });
  test('everything', async () => {
    const next = signedPrng(7);
    const shape = { batch: 2, queryHeads: 2, queryLength: 9, keyLength: 130, headDim: 3 };
    const keyMask = new Uint8Array(2 * 130).map(() => (next() > -0.6 ? 1 : 0));
    console.log(
      'worst',
      await check(shape, {
        slidingWindow: 40,
        keyMask,
        bias: { data: randomArray(2 * 130, next), shape: [2, 1, 1, 130] },
        alibiSlopes: new Float32Array([0.5, 0.25]),
        softcap: 2,
        sinks: new Float32Array([0.3, -1]),
        scale: 0.7,
      }),
    );
  });
});
