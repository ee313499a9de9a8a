import { randomAttentionInputs, signedUniform } from '@attnkit/conformance';
import type { AttentionShape } from '@attnkit/spec';

/** Deterministic uniform data in [-1, 1): the conformance suite's PRNG (mulberry32), so a failing seed replays anywhere. */
export const uniform = (n: number, seed: number): Float32Array => signedUniform(n, seed);

/** Random q, k, v for a shape, from the conformance suite's data builder. */
export const inputsFor = (shape: AttentionShape, seed = 1) => randomAttentionInputs(shape, seed);

/** Largest `|a - b| / (atol + rtol * |b|)`; NaN where exactly one side is NaN. */
export function errorRatio(a: ArrayLike<number>, b: ArrayLike<number>, atol: number, rtol: number): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) !== Number.isNaN(b[i])) return Number.NaN;
    if (Number.isNaN(b[i]) || a[i] === b[i]) continue;
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / (atol + rtol * Math.abs(b[i])));
  }
  return worst;
}
