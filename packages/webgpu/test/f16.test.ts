import { roundToF16 } from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { f16Bits, packF16Rows } from '../src/f16.js';

/** The value of binary16 bits, decoded by arithmetic. */
function f16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

describe('f16Bits', () => {
  it('gives hand-checked bit patterns', () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65519.99, 0x7bff],
      [65520, 0x7c00],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000],
      [2 ** -14, 0x0400],
      [Number.NEGATIVE_INFINITY, 0xfc00],
      [-0, 0x8000],
    ];
    for (const [x, bits] of cases) expect(f16Bits(x), `f16Bits(${x})`).toBe(bits);
    expect(f16Value(f16Bits(Number.NaN))).toBeNaN();
  });

  it("agrees with the spec's arithmetic roundToF16 over every binade, ties and subnormals", () => {
    let seed = 11;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const values: number[] = [];
    for (let e = -27; e <= 16; e++) {
      for (let n = 0; n < 200; n++) values.push((random() < 0.5 ? -1 : 1) * (1 + random()) * 2 ** e);
      // exact ties between neighbours at this binade's spacing
      const ulp = 2 ** Math.max(e - 10, -24);
      values.push(2 ** e + ulp / 2, 2 ** e + (3 * ulp) / 2);
    }
    for (const x of values) {
      const x32 = Math.fround(x);
      expect(f16Value(f16Bits(x32)), `x = ${x32}`).toBe(roundToF16(x32));
    }
  });
});

describe('packF16Rows', () => {
  it('puts value 2w in the low half of word w and pads an odd row with 0', () => {
    const words = packF16Rows(new Float32Array([1, -2, 65504, 0.5, 0.25, 2]), 2, 3);
    expect([...words]).toEqual([
      (0x3c00 | (0xc000 << 16)) >>> 0,
      0x7bff,
      (0x3800 | (0x3400 << 16)) >>> 0,
      0x4000,
    ]);
  });
});
