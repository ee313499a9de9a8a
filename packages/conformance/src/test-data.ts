/**
 * Test data for backend packages' own unit tests: the conformance suite's PRNG behind small builders,
 * so every package draws its inputs the same way and a failing seed replays anywhere.
 */
import type { AttentionInputs, AttentionShape } from '@attnkit/spec';
import { prng } from './random.js';

/** Uniform in `[-1, 1)` from {@link prng} (mulberry32) seeded by `seed`. */
export function signedPrng(seed: number): () => number {
  const next = prng(seed);
  return () => 2 * next() - 1;
}

/** `length` values `amplitude * next()`, rounded to float32. */
export function randomArray(length: number, next: () => number, amplitude = 1): Float32Array {
  const out = new Float32Array(length);
  for (let index = 0; index < length; index++) out[index] = amplitude * next();
  return out;
}

/** `length` values uniform in `[-amplitude, amplitude)` from their own stream seeded by `seed`. */
export function signedUniform(length: number, seed: number, amplitude = 1): Float32Array {
  return randomArray(length, signedPrng(seed), amplitude);
}

/**
 * Random `q`, `k`, `v` for a shape from one stream seeded by `seed` (q, then k, then v): q and k
 * uniform in `[-amplitude, amplitude)` (the amplitude sets the size of the logits), v in `[-1, 1)`.
 */
export function randomAttentionInputs(shape: AttentionShape, seed: number, amplitude = 1): AttentionInputs {
  const next = signedPrng(seed);
  const kvHeads = shape.kvHeads ?? shape.queryHeads;
  const keyLength = shape.keyLength ?? shape.queryLength;
  const valueDim = shape.valueDim ?? shape.headDim;
  return {
    q: randomArray(shape.batch * shape.queryHeads * shape.queryLength * shape.headDim, next, amplitude),
    k: randomArray(shape.batch * kvHeads * keyLength * shape.headDim, next, amplitude),
    v: randomArray(shape.batch * kvHeads * keyLength * valueDim, next),
    shape,
  };
}
