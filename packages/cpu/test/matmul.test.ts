import { randomArray, signedPrng } from '@attnkit/conformance';
import { expectClose } from '@attnkit/conformance/vitest';
import {
  type LayerInputs,
  multiHeadAttention,
  referenceMatmul64,
  referenceMultiHeadAttention64,
} from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { CPU_TOLERANCE, createCpuBackend } from '../src/index.js';

describe('cpu matmul', () => {
  it('matches the float64 reference, with and without bias, on odd and blocked sizes', async () => {
    const backend = createCpuBackend();
    const next = signedPrng(1);
    for (const [m, k, n] of [
      [1, 1, 1],
      [3, 5, 7],
      [4, 8, 4],
      [9, 17, 300],
      [33, 64, 513],
    ]) {
      const a = randomArray(m * k, next);
      const b = randomArray(k * n, next);
      const bias = randomArray(n, next);
      const plain = await backend.matmul({ a, b, shape: { m, k, n } });
      expectClose(plain, referenceMatmul64(a, b, m, k, n), CPU_TOLERANCE, `${m}x${k}x${n}`);
      const biased = await backend.matmul({ a, b, bias, shape: { m, k, n } });
      // Same summation order as the reference, so it is the reference rounded once to float32
      expect(Array.from(biased)).toEqual(
        Array.from(Float32Array.from(referenceMatmul64(a, b, m, k, n, bias))),
      );
    }
  });

  it('propagates non-finite entries as IEEE arithmetic does (0 * Infinity is NaN)', async () => {
    const backend = createCpuBackend();
    const a = new Float32Array([0, 1, 2, 3]);
    const b = new Float32Array([Number.POSITIVE_INFINITY, 1, 2, 3]);
    const c = await backend.matmul({ a, b, shape: { m: 2, k: 2, n: 2 } });
    expectClose(c, referenceMatmul64(a, b, 2, 2, 2), CPU_TOLERANCE, 'inf');
    expect(Number.isNaN(c[0])).toBe(true);
  });

  it('rejects mismatched lengths', async () => {
    const backend = createCpuBackend();
    await expect(
      backend.matmul({ a: new Float32Array(5), b: new Float32Array(6), shape: { m: 2, k: 3, n: 2 } }),
    ).rejects.toMatchObject({ code: 'invalid-argument' });
  });
});

describe('multi-head attention layer on the cpu backend', () => {
  it('self- and cross-attention layers match the float64 layer', async () => {
    const backend = createCpuBackend();
    const next = signedPrng(2);
    const M = 12;
    const Hq = 4;
    const Hkv = 2;
    const D = 3;
    const Dv = 5;
    const weights = {
      wq: randomArray(M * Hq * D, next, 0.5),
      wk: randomArray(M * Hkv * D, next, 0.5),
      wv: randomArray(M * Hkv * Dv, next, 0.5),
      wo: randomArray(Hq * Dv * M, next, 0.5),
      bq: randomArray(Hq * D, next),
      bo: randomArray(M, next),
    };
    const self: LayerInputs = {
      x: randomArray(2 * 9 * M, next),
      weights,
      shape: {
        batch: 2,
        queryLength: 9,
        modelDim: M,
        queryHeads: Hq,
        kvHeads: Hkv,
        headDim: D,
        valueDim: Dv,
      },
    };
    const cross: LayerInputs = {
      ...self,
      context: randomArray(2 * 14 * M, next),
      shape: { ...self.shape, keyLength: 14 },
    };
    for (const [inputs, label] of [
      [self, 'self'],
      [cross, 'cross'],
    ] as const) {
      const options = { causal: true, returnLse: true };
      const result = await multiHeadAttention(backend, inputs, options);
      const reference = referenceMultiHeadAttention64(inputs, options);
      expectClose(result.output, reference.output, CPU_TOLERANCE, `${label} output`);
      expectClose(result.lse, reference.lse, CPU_TOLERANCE, `${label} lse`);
    }
  });
});
