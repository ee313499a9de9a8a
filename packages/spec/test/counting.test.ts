import { describe, expect, it } from 'vitest';
import { AttnkitError, attentionFlops, countParameters } from '../src/index.js';

describe('countParameters', () => {
  it('reproduces the seed: GPT-3 has 57,982,058,496 attention parameters ("just under 58 billion")', () => {
    const gpt3 = countParameters({ modelDim: 12288, queryHeads: 96, headDim: 128, layers: 96 });
    // Seed: key and query maps are 12,288 x 128 per head, "about 1.5 million parameters each".
    expect(gpt3.query / 96).toBe(1_572_864);
    expect(gpt3.key).toBe(12288 * 128 * 96);
    // The value map factored into down (12288 x 128) and up (128 x 12288) per head.
    expect(gpt3.valueDown).toBe(12288 * 128 * 96);
    expect(gpt3.valueUp).toBe(128 * 12288 * 96);
    expect(gpt3.perLayer).toBe(603_979_776);
    expect(gpt3.total).toBe(57_982_058_496);
    expect(gpt3.total).toBeLessThan(58e9);
  });

  it('counts grouped-query layers and biases', () => {
    // 8 query heads share 2 kv heads of width 4 over modelDim 16.
    const c = countParameters({
      modelDim: 16,
      queryHeads: 8,
      kvHeads: 2,
      headDim: 4,
      valueDim: 3,
      bias: true,
    });
    expect(c.query).toBe(16 * 32);
    expect(c.key).toBe(16 * 8);
    expect(c.valueDown).toBe(16 * 6);
    expect(c.valueUp).toBe(24 * 16);
    expect(c.biases).toBe(32 + 8 + 6 + 16);
    expect(c.total).toBe(c.perLayer);
  });

  it('rejects bad configs with the argument named', () => {
    expect(() => countParameters({ modelDim: 0, queryHeads: 1, headDim: 1 })).toThrow(
      /config\.modelDim must be a positive integer, got 0/,
    );
    expect(() => countParameters({ modelDim: 4, queryHeads: 3, kvHeads: 2, headDim: 1 })).toThrow(
      AttnkitError,
    );
  });
});

describe('attentionFlops', () => {
  const shape = { batch: 2, queryHeads: 3, queryLength: 8, headDim: 64 };

  it('dense count is 4*B*Hq*Lq*Lk*D when Dv = D', () => {
    const f = attentionFlops(shape);
    expect(f.dense).toBe(4 * 2 * 3 * 8 * 8 * 64);
    expect(f.useful).toBe(f.dense);
    expect(f.visiblePairs).toBe(2 * 3 * 64);
  });

  it('causal keeps N(N+1)/2 pairs per head', () => {
    const f = attentionFlops(shape, { causal: true });
    expect(f.visiblePairs).toBe(2 * 3 * 36);
    expect(f.useful).toBe(f.visiblePairs * 2 * 128);
  });

  it('sliding window without causal: |p - j| < w, clipped at both ends', () => {
    // N = 8, w = 2: rows 0 and 7 see 2 keys, rows 1..6 see 3: 2*2 + 6*3 = 22
    expect(attentionFlops({ ...shape, batch: 1, queryHeads: 1 }, { slidingWindow: 2 }).visiblePairs).toBe(22);
  });

  it('bottom-right causal with Lq > Lk leaves the first rows empty', () => {
    // Lq = 4, Lk = 2: positions -2, -1, 0, 1 see 0, 0, 1, 2 keys
    const f = attentionFlops(
      { batch: 1, queryHeads: 1, queryLength: 4, keyLength: 2, headDim: 1 },
      { causal: true },
    );
    expect(f.visiblePairs).toBe(3);
  });

  it('key mask counts per batch row', () => {
    const keyMask = new Uint8Array([1, 0, 1, 0, 0, 0, 0, 1]); // batch 0: keys 0, 2; batch 1: key 3
    const f = attentionFlops({ batch: 2, queryHeads: 1, queryLength: 4, headDim: 1 }, { keyMask });
    expect(f.visiblePairs).toBe(4 * 2 + 4 * 1);
  });
});
