import { describe, expect, it } from 'vitest';
import {
  type AttentionOptions,
  type AttentionShape,
  kvHeadFor,
  queryPosition,
  referenceAttention64,
  visibleKeyRange,
} from '../src/index.js';

/** One head, one batch: q [Lq, D], k [Lk, D], v [Lk, Dv]. */
function single(q: number[][], k: number[][], v: number[][], options: AttentionOptions = {}) {
  const shape: AttentionShape = {
    batch: 1,
    queryHeads: 1,
    queryLength: q.length,
    keyLength: k.length,
    headDim: q[0].length,
    valueDim: v[0].length,
  };
  return referenceAttention64(
    { q: new Float32Array(q.flat()), k: new Float32Array(k.flat()), v: new Float32Array(v.flat()), shape },
    { returnLse: true, returnWeights: true, ...options },
  );
}

describe('positions and visibility', () => {
  it('aligns queries bottom-right', () => {
    expect(queryPosition(0, 2, 5)).toBe(3);
    expect(queryPosition(1, 2, 5)).toBe(4);
    expect(queryPosition(0, 3, 1)).toBe(-2);
  });
  it('causal and window ranges', () => {
    expect(visibleKeyRange(3, 5, true, null)).toEqual({ start: 0, end: 4 });
    expect(visibleKeyRange(3, 5, true, 2)).toEqual({ start: 2, end: 4 });
    expect(visibleKeyRange(3, 8, false, 2)).toEqual({ start: 2, end: 5 });
    expect(visibleKeyRange(-1, 4, true, null)).toEqual({ start: 0, end: 0 });
    expect(visibleKeyRange(0, 4, false, 1)).toEqual({ start: 0, end: 1 });
  });
  it('maps query heads to kv heads in groups', () => {
    expect([0, 1, 2, 3, 4, 5].map((h) => kvHeadFor(h, 6, 2))).toEqual([0, 0, 0, 1, 1, 1]);
    expect([0, 1, 2].map((h) => kvHeadFor(h, 3, 1))).toEqual([0, 0, 0]);
  });
});

describe('referenceAttention64, hand-derived', () => {
  it('two keys: weights e/(e+1) and 1/(e+1)', () => {
    const r = single(
      [[1, 0]],
      [
        [1, 0],
        [0, 1],
      ],
      [[10], [20]],
      { scale: 1 },
    );
    const e = Math.E;
    expect(r.weights![0]).toBeCloseTo(e / (e + 1), 14);
    expect(r.weights![1]).toBeCloseTo(1 / (e + 1), 14);
    expect(r.output[0]).toBeCloseTo((10 * e + 20) / (e + 1), 12);
    expect(r.lse![0]).toBeCloseTo(Math.log(e + 1), 14);
  });

  it('default scale is 1/sqrt(D)', () => {
    // D = 4, q.k = 4 for key 0 and 0 for key 1: scaled score 2 vs 0
    const r = single(
      [[1, 1, 1, 1]],
      [
        [1, 1, 1, 1],
        [0, 0, 0, 0],
      ],
      [[1], [0]],
    );
    expect(r.output[0]).toBeCloseTo(Math.exp(2) / (Math.exp(2) + 1), 12);
  });

  it('equal scores average the values', () => {
    const r = single([[0.5]], [[2], [2], [2]], [[3], [6], [9]]);
    expect(r.output[0]).toBeCloseTo(6, 12);
    expect(r.lse![0]).toBeCloseTo(1 + Math.log(3), 12);
  });

  it('causal: the first query of self-attention sees only key 0', () => {
    const r = single([[1], [1]], [[5], [-5]], [[7], [11]], { causal: true, scale: 1 });
    expect(r.output[0]).toBe(7);
    expect(r.weights![1]).toBe(0);
    // second row sees both: scores 5, -5
    expect(r.output[1]).toBeCloseTo((7 * Math.exp(5) + 11 * Math.exp(-5)) / (Math.exp(5) + Math.exp(-5)), 12);
  });

  it('causal with Lq < Lk is bottom-right: a single decode query sees every key', () => {
    const r = single([[0]], [[0], [0], [0]], [[1], [2], [3]], { causal: true });
    expect(r.output[0]).toBeCloseTo(2, 12);
  });

  it('a fully masked row gives zeros, lse -inf and zero weights, never NaN', () => {
    // Lq = 2 > Lk = 1, causal: row 0 sits at position -1 and sees nothing.
    const r = single([[1], [1]], [[1]], [[Number.NaN]], { causal: true });
    expect(r.output[0]).toBe(0);
    expect(r.lse![0]).toBe(Number.NEGATIVE_INFINITY);
    expect(r.weights![0]).toBe(0);
    expect(Number.isNaN(r.output[1])).toBe(true); // row 1 sees the NaN value: IEEE says NaN
  });

  it('key mask hides keys; NaN in a masked value row does not leak', () => {
    const r = single([[0]], [[0], [0]], [[4], [Number.NaN]], { keyMask: new Uint8Array([1, 0]) });
    expect(r.output[0]).toBe(4);
    expect(r.weights![1]).toBe(0);
  });

  it('sliding window without causal looks both ways', () => {
    // Lq = Lk = 3, w = 2: row 1 sees keys 0..2, row 0 sees 0..1
    const r = single([[0], [0], [0]], [[0], [0], [0]], [[3], [6], [9]], { slidingWindow: 2 });
    expect(r.output[0]).toBeCloseTo(4.5, 12);
    expect(r.output[1]).toBeCloseTo(6, 12);
    expect(r.output[2]).toBeCloseTo(7.5, 12);
  });

  it('a sink joins the denominator and adds no value', () => {
    // one key with score 0 and a sink of 0: weight 1/2
    const r = single([[0]], [[0]], [[8]], { sinks: new Float32Array([0]) });
    expect(r.output[0]).toBeCloseTo(4, 12);
    expect(r.lse![0]).toBeCloseTo(Math.log(2), 12);
    expect(r.weights![0]).toBeCloseTo(0.5, 12);
  });

  it('a sink with every key masked: zeros out, lse = sink', () => {
    const r = single([[0]], [[0]], [[8]], { sinks: new Float32Array([1.5]), keyMask: new Uint8Array([0]) });
    expect(r.output[0]).toBe(0);
    expect(r.lse![0]).toBeCloseTo(1.5, 6);
  });

  it('softcap bounds the scaled score before bias', () => {
    // score 1000 capped to 2*tanh(500) = 2; bias adds -2 -> 0; other key scores 0: equal weights
    const r = single([[1000]], [[1], [0]], [[2], [4]], {
      scale: 1,
      softcap: 2,
      bias: { data: new Float32Array([-2, 0]), shape: [1, 1, 1, 2] },
    });
    expect(r.output[0]).toBeCloseTo(3, 10);
  });

  it('ALiBi subtracts slope * distance', () => {
    // position of the single query is 1 (Lk = 2): key 0 at distance 1 gets -ln 2, key 1 gets 0
    const r = single([[0]], [[0], [0]], [[3], [6]], { alibiSlopes: new Float32Array([Math.LN2]) });
    // weights proportional to 1/2 and 1: (3*0.5 + 6) / 1.5 = 5
    expect(r.output[0]).toBeCloseTo(5, 6);
  });

  it('bias broadcasts along size-1 dimensions', () => {
    const shape = { batch: 2, queryHeads: 2, queryLength: 1, keyLength: 2, headDim: 1 };
    const zeros = (n: number) => new Float32Array(n);
    const v = new Float32Array([0, 1, 0, 1, 0, 1, 0, 1]); // every head: v = [0, 1]
    // bias per batch only: batch 0 favours key 1 by ln 3, batch 1 favours key 0 by ln 3
    const bias = { data: new Float32Array([0, Math.log(3), Math.log(3), 0]), shape: [2, 1, 1, 2] as const };
    const r = referenceAttention64({ q: zeros(4), k: zeros(8), v, shape }, { bias });
    expect(Array.from(r.output, (x) => Number(x.toFixed(6)))).toEqual([0.75, 0.75, 0.25, 0.25]);
  });

  it('grouped-query: query heads read their group kv head', () => {
    // Hq = 4, Hkv = 2, one key each: output of head h = v of kv head floor(h / 2)
    const shape = { batch: 1, queryHeads: 4, kvHeads: 2, queryLength: 1, keyLength: 1, headDim: 1 };
    const r = referenceAttention64({
      q: new Float32Array(4),
      k: new Float32Array(2),
      v: new Float32Array([10, 20]),
      shape,
    });
    expect(Array.from(r.output)).toEqual([10, 10, 20, 20]);
  });

  it('large logits do not overflow', () => {
    const r = single([[100]], [[100], [99]], [[1], [0]], { scale: 1 }); // scores 1e4 and 9900
    expect(r.output[0]).toBeCloseTo(1, 12);
    expect(r.lse![0]).toBeCloseTo(10000, 8);
  });

  it('NaN in a visible logit propagates; +inf key gives NaN as IEEE does', () => {
    expect(Number.isNaN(single([[Number.NaN]], [[1]], [[1]]).output[0])).toBe(true);
    expect(Number.isNaN(single([[1]], [[Number.POSITIVE_INFINITY]], [[1]]).output[0])).toBe(true);
  });

  it('a -inf bias on every key acts as a full mask', () => {
    const r = single([[1]], [[1], [2]], [[1], [2]], {
      bias: {
        data: new Float32Array([Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY]),
        shape: [1, 1, 1, 2],
      },
    });
    expect(r.output[0]).toBe(0);
    expect(r.lse![0]).toBe(Number.NEGATIVE_INFINITY);
  });

  it('weights of every visible row sum to 1 (with no sink)', () => {
    const q = [
      [0.3, -1],
      [2, 0.5],
      [-0.7, 0.1],
    ];
    const k = [
      [1, 2],
      [-1, 0.5],
      [0.2, 0.2],
      [3, -3],
    ];
    const v = k.map((row) => [row[0] + row[1]]);
    const r = single(q, k, v, { causal: true });
    for (let i = 0; i < 3; i++) {
      const sum = Array.from(r.weights!.subarray(i * 4, i * 4 + 4)).reduce((a, b) => a + b, 0);
      expect(sum).toBeCloseTo(1, 14);
    }
  });
});
