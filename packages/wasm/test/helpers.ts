import type { AttentionShape } from '@attnkit/spec';

/** Deterministic uniform data in [-1, 1). */
export function uniform(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32) * 2 - 1;
  }
  return out;
}

/** Random q, k, v for a shape. */
export function inputsFor(shape: AttentionShape, seed = 1) {
  const kv = shape.kvHeads ?? shape.queryHeads;
  const lk = shape.keyLength ?? shape.queryLength;
  const dv = shape.valueDim ?? shape.headDim;
  return {
    q: uniform(shape.batch * shape.queryHeads * shape.queryLength * shape.headDim, seed),
    k: uniform(shape.batch * kv * lk * shape.headDim, seed + 1),
    v: uniform(shape.batch * kv * lk * dv, seed + 2),
    shape,
  };
}

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
