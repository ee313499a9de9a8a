import {
  type AttentionInputs,
  type AttentionOptions,
  type AttentionShape,
  referenceAttention64,
  type Tolerance,
} from '@attnkit/spec';
import { expect } from 'vitest';

/** Deterministic uniform numbers in [-1, 1): mulberry32. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

export function fill(length: number, next: () => number, scale = 1): Float32Array {
  const out = new Float32Array(length);
  for (let n = 0; n < length; n++) out[n] = next() * scale;
  return out;
}

export function makeInputs(shape: AttentionShape, seed = 1): AttentionInputs {
  const next = random(seed);
  const Hkv = shape.kvHeads ?? shape.queryHeads;
  const Lk = shape.keyLength ?? shape.queryLength;
  const Dv = shape.valueDim ?? shape.headDim;
  return {
    q: fill(shape.batch * shape.queryHeads * shape.queryLength * shape.headDim, next),
    k: fill(shape.batch * Hkv * Lk * shape.headDim, next),
    v: fill(shape.batch * Hkv * Lk * Dv, next),
    shape,
  };
}

/** Largest |actual - expected| - (atol + rtol |expected|), with non-finite values required to match. */
export function expectClose(
  actual: Float32Array | undefined,
  expected: Float64Array | undefined,
  tolerance: Tolerance,
  label: string,
): number {
  expect(actual, `${label}: present`).toBeDefined();
  expect(expected).toBeDefined();
  const a = actual!;
  const e = expected!;
  expect(a.length, `${label}: length`).toBe(e.length);
  let worst = 0;
  for (let n = 0; n < e.length; n++) {
    const x = a[n];
    const y = e[n];
    if (!Number.isFinite(y)) {
      if (!Object.is(x, y) && !(Number.isNaN(x) && Number.isNaN(y))) {
        expect.fail(`${label}[${n}]: expected ${y}, got ${x}`);
      }
      continue;
    }
    const err = Math.abs(x - y);
    if (!(err <= tolerance.atol + tolerance.rtol * Math.abs(y))) {
      expect.fail(`${label}[${n}]: expected ${y}, got ${x} (|err| ${err})`);
    }
    worst = Math.max(worst, err);
  }
  return worst;
}

export function reference(inputs: AttentionInputs, options: AttentionOptions) {
  return referenceAttention64(inputs, options);
}
