import { f16Bits, f16Value } from '@attnkit/spec';

/**
 * Host-side conversion of float32 values to packed binary16 pairs for f16 storage (the KV cache's
 * K/V and a stateless call's q/k/v). The
 * rounding is done here, not with WGSL `pack2x16float`, because that builtin's result is
 * indeterminate for values outside binary16's finite range, and f16 storage must keep infinities and
 * NaN as float32 does (the spec rejects finite values that would round to infinity).
 */

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

/**
 * The first `count` binary16 values of packed pairs (as {@link packF16Rows} lays out one row),
 * widened to float32: every binary16 value is a float32 value, so nothing rounds. `words` is the
 * words' bytes as read back (any 4-byte view).
 */
export function unpackF16(words: Float32Array, count: number): Float32Array {
  const halves = new Uint16Array(words.buffer, words.byteOffset, words.length * 2);
  const out = new Float32Array(count);
  // Little-endian, as WebGPU buffers are: value 2w is the low half of word w, the first Uint16.
  for (let i = 0; i < count; i++) out[i] = f16Value(halves[i]);
  return out;
}
