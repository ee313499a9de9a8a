import { describe, expect, it } from 'vitest';
import { countParameters, createReferenceBackend, referenceAttention64 } from '../src/index.js';

describe('smoke', () => {
  it('GPT-3 attention parameters', () => {
    expect(countParameters({ modelDim: 12288, queryHeads: 96, headDim: 128, layers: 96 }).total).toBe(
      57_982_058_496,
    );
  });
  it('two keys, hand-derived', async () => {
    // q = [1, 0], k0 = [1, 0], k1 = [0, 1], scale 1: scores 1, 0 -> weights e/(e+1), 1/(e+1)
    const r = referenceAttention64(
      {
        q: new Float32Array([1, 0]),
        k: new Float32Array([1, 0, 0, 1]),
        v: new Float32Array([10, 20]),
        shape: { batch: 1, queryHeads: 1, queryLength: 1, keyLength: 2, headDim: 2, valueDim: 1 },
      },
      { scale: 1, returnLse: true },
    );
    const e = Math.E;
    expect(r.output[0]).toBeCloseTo((10 * e + 20) / (e + 1), 12);
    expect(r.lse![0]).toBeCloseTo(Math.log(e + 1), 12);
    const backend = createReferenceBackend();
    await expect(
      backend.attention({
        q: new Float32Array(3),
        k: new Float32Array(4),
        v: new Float32Array(2),
        shape: { batch: 1, queryHeads: 1, queryLength: 1, keyLength: 2, headDim: 2, valueDim: 1 },
      }),
    ).rejects.toThrow(/q.length must be 2/);
  });
});
