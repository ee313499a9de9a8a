/**
 * Host-side conversion of float32 K/V to packed binary16 pairs for the f16-storage KV cache. The
 * rounding is done here, not with WGSL `pack2x16float`, because that builtin's result is
 * indeterminate for values outside binary16's finite range, and the cache must keep infinities and
 * NaN as the float32 cache does (the spec rejects finite values that would round to infinity).
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The binary16 bits of `x` rounded to nearest, ties to even (NaN stays NaN, overflow is infinity). */
export function f16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa === 0 ? 0 : 0x200 | (mantissa >>> 13));
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal (or zero): the 24-bit significand shifted right by 14 - e, rounded half to even.
    if (e < -10) return sign;
    const significand = mantissa | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    return sign | ((significand + half - 1 + ((significand >>> shift) & 1)) >>> shift);
  }
  // A carry out of the mantissa moves into the exponent, which is the right next value (up to infinity).
  const rounded = (e << 10) + ((mantissa + 0xfff + ((mantissa >>> 13) & 1)) >>> 13);
  return sign | Math.min(rounded, 0x7c00);
}

/** 32-bit words one token of `dim` values occupies packed (two values a word, the last padded with 0). */
export function packedWords(dim: number): number {
  return Math.ceil(dim / 2);
}

/**
 * `tokens` rows of `dim` float32 values as binary16 pairs: value `2w` in the low half of word `w`
 * and `2w + 1` in the high half, as WGSL `unpack2x16float` reads them; each row padded to
 * {@link packedWords} words.
 */
export function packF16Rows(values: Float32Array, tokens: number, dim: number): Uint32Array {
  const words = packedWords(dim);
  const out = new Uint32Array(tokens * words);
  for (let t = 0; t < tokens; t++) {
    for (let w = 0; w < words; w++) {
      const at = t * dim + 2 * w;
      const low = f16Bits(values[at]);
      const high = 2 * w + 1 < dim ? f16Bits(values[at + 1]) : 0;
      out[t * words + w] = (low | (high << 16)) >>> 0;
    }
  }
  return out;
}
