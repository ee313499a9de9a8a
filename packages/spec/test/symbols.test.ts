import { describe, expect, it } from 'vitest';
import { mergeHeads, resolveShape, shapeSymbols, splitHeads } from '../src/index.js';

describe('shapeSymbols', () => {
  it('names every resolved dimension by its symbol, defaults applied', () => {
    const shape = resolveShape({
      batch: 2,
      queryHeads: 6,
      kvHeads: 3,
      queryLength: 5,
      keyLength: 7,
      headDim: 4,
      valueDim: 8,
    });
    expect(shapeSymbols(shape)).toEqual({ B: 2, Hq: 6, Hkv: 3, Lq: 5, Lk: 7, D: 4, Dv: 8 });
    expect(shapeSymbols(resolveShape({ batch: 1, queryHeads: 2, queryLength: 3, headDim: 4 }))).toEqual({
      B: 1,
      Hq: 2,
      Hkv: 2,
      Lq: 3,
      Lk: 3,
      D: 4,
      Dv: 4,
    });
  });
});

describe('splitHeads / mergeHeads', () => {
  // B = 1, L = 2, H = 2, D = 2: [B, L, H*D] rows are (l0: h0 h0 h1 h1), (l1: h0 h0 h1 h1).
  const blhd = Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  // [B, H, L, D]: head 0 holds l0's (1, 2) then l1's (5, 6); head 1 holds (3, 4) then (7, 8).
  const bhld = Float64Array.from([1, 2, 5, 6, 3, 4, 7, 8]);

  it('moves the heads first and back, keeping the array type', () => {
    const split = splitHeads(blhd, 1, 2, 2, 2);
    expect(Array.from(split)).toEqual(Array.from(bhld));
    expect(split).toBeInstanceOf(Float64Array);
    const merged = mergeHeads(Float32Array.from(bhld), 1, 2, 2, 2);
    expect(Array.from(merged)).toEqual(Array.from(blhd));
    expect(merged).toBeInstanceOf(Float32Array);
  });
});
