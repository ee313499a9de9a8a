import { describe, expect, it } from 'vitest';
import { prng, randomArray, randomAttentionInputs, signedPrng, signedUniform } from '../src/index.js';
import { expectClose } from '../src/vitest.js';

describe('test data for backend unit tests', () => {
  it('prng is mulberry32: its first output for seed 1 is the published 0.6270739405881613', () => {
    expect(prng(1)()).toBe(0.6270739405881613);
  });

  it('signed streams are 2u - 1 of the same stream, and amplitudes scale them', () => {
    const u = prng(7);
    const s = signedPrng(7);
    for (let i = 0; i < 100; i++) expect(s()).toBe(2 * u() - 1);
    const a = signedUniform(50, 7, 3);
    const b = randomArray(50, signedPrng(7), 3);
    expect(a).toEqual(b);
    for (const x of a) expect(Math.abs(x)).toBeLessThan(3);
  });

  it('randomAttentionInputs draws q, then k, then v from one stream, sized by the shape', () => {
    const shape = {
      batch: 2,
      queryHeads: 4,
      kvHeads: 2,
      queryLength: 3,
      keyLength: 5,
      headDim: 2,
      valueDim: 3,
    };
    const inputs = randomAttentionInputs(shape, 9, 4);
    expect(inputs.q).toHaveLength(2 * 4 * 3 * 2);
    expect(inputs.k).toHaveLength(2 * 2 * 5 * 2);
    expect(inputs.v).toHaveLength(2 * 2 * 5 * 3);
    const next = signedPrng(9);
    const all = [...inputs.q].concat([...inputs.k], [...inputs.v]);
    all.forEach((x, i) => {
      const amplitude = i < inputs.q.length + inputs.k.length ? 4 : 1;
      expect(x).toBe(Math.fround(amplitude * next()));
    });
  });
});

describe('expectClose', () => {
  const tol = { atol: 1e-3, rtol: 1e-2 };

  it('accepts values within atol + rtol |expected| and returns the worst absolute error', () => {
    expect(expectClose([1.01, 2], [1, 2], tol, 'x')).toBeCloseTo(0.01, 12);
  });

  it('fails outside the bound, on a length mismatch, and on a non-finite mismatch', () => {
    expect(() => expectClose([1.1], [1], tol, 'x')).toThrow(/x\[0\]: expected 1, got 1.1/);
    expect(() => expectClose([1], [1, 2], tol, 'x')).toThrow(/x: length/);
    expect(() => expectClose([0], [Number.NaN], tol, 'x')).toThrow(/expected NaN, got 0/);
    expect(() => expectClose([Number.POSITIVE_INFINITY], [Number.NEGATIVE_INFINITY], tol, 'x')).toThrow();
    expect(() => expectClose([Number.NaN], [1], tol, 'x')).toThrow(/got NaN/);
    expect(() => expectClose(undefined, [1], tol, 'x')).toThrow(/x: result missing/);
  });

  it('requires NaN for NaN and the same infinity, as the float64 reference gives', () => {
    expect(
      expectClose([Number.NaN, Number.NEGATIVE_INFINITY], [Number.NaN, Number.NEGATIVE_INFINITY], tol, 'x'),
    ).toBe(0);
  });
});
