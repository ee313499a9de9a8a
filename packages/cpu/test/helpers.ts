import type { AttentionInputs, AttentionShape, Tolerance } from '@attnkit/spec';
import { expect } from 'vitest';

/** Deterministic uniform numbers in [-1, 1) (mulberry32), so a failing seed can be replayed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2147483648 - 1;
  };
}

export function randomArray(length: number, next: () => number, amplitude = 1): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = next() * amplitude;
  return out;
}

/** Random q, k, v for a shape. */
export function randomInputs(shape: AttentionShape, seed: number, amplitude = 1): AttentionInputs {
  const next = rng(seed);
  const Hkv = shape.kvHeads ?? shape.queryHeads;
  const Lk = shape.keyLength ?? shape.queryLength;
  const Dv = shape.valueDim ?? shape.headDim;
  return {
    q: randomArray(shape.batch * shape.queryHeads * shape.queryLength * shape.headDim, next, amplitude),
    k: randomArray(shape.batch * Hkv * Lk * shape.headDim, next, amplitude),
    v: randomArray(shape.batch * Hkv * Lk * Dv, next),
    shape,
  };
}

/**
 * `|actual - expected| <= atol + rtol * |expected|` element by element; NaN must meet NaN and an
 * infinity the same infinity. Reports the first offending index.
 */
export function expectClose(
  actual: ArrayLike<number> | undefined,
  expected: ArrayLike<number> | undefined,
  tolerance: Tolerance,
  label: string,
): void {
  expect(actual, `${label}: missing`).toBeDefined();
  expect(expected, `${label}: reference missing`).toBeDefined();
  if (actual === undefined || expected === undefined) return;
  expect(actual.length, `${label}: length`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const e: number = expected[i];
    const a: number = actual[i];
    if (Number.isNaN(e) || !Number.isFinite(e)) {
      if (!Object.is(a, e) && !(Number.isNaN(a) && Number.isNaN(e))) {
        expect.fail(`${label}[${i}]: expected ${e}, got ${a}`);
      }
      continue;
    }
    const bound = tolerance.atol + tolerance.rtol * Math.abs(e);
    if (!(Math.abs(a - e) <= bound)) expect.fail(`${label}[${i}]: expected ${e}, got ${a} (bound ${bound})`);
  }
}
