import { describe, expect, it } from 'vitest';
import { packF16Rows } from '../src/f16.js';

// The bit conversion itself (f16Bits, against the spec's arithmetic roundToF16) is tested in
// @attnkit/spec's test/f16.test.ts; here, the packing the kernels read.
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
