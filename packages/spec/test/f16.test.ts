import { describe, expect, it } from 'vitest';
import {
  ALL_FEATURES,
  type BackendCapabilities,
  createBackend,
  createReferenceBackend,
  F16_UNIT_ROUNDOFF,
  f16StorageErrorBound,
  referenceAttention64,
  roundToF16,
} from '../src/index.js';

const capabilities = (features: BackendCapabilities['features']): BackendCapabilities => ({
  features,
  limits: {},
  tolerance: { atol: 0, rtol: 0 },
  deterministic: true,
  engine: 'test',
  threads: 1,
  notes: [],
});

describe("createKVCache precision: 'f16-storage'", () => {
  it('rejects an unknown precision invalid-argument naming config.precision, before init', async () => {
    const backend = createReferenceBackend();
    await expect(
      backend.createKVCache({ batch: 1, kvHeads: 1, headDim: 2, precision: 'f16' as never }),
    ).rejects.toMatchObject({ code: 'invalid-argument', argument: 'config.precision' });
    await backend.dispose();
  });

  it('rejects unsupported where the capabilities lack kvCacheF16Storage (the reference backend)', async () => {
    const backend = createReferenceBackend();
    await expect(
      backend.createKVCache({ batch: 1, kvHeads: 1, headDim: 2, precision: 'f16-storage' }),
    ).rejects.toMatchObject({ code: 'unsupported', argument: 'config.precision' });
    const cache = await backend.createKVCache({ batch: 1, kvHeads: 1, headDim: 2, precision: 'f32' });
    expect(cache.config.precision).toBe('f32');
    await backend.dispose();
  });

  it('rejects a finite value binary16 rounds to infinity, naming chunk.k or chunk.v', async () => {
    let appends = 0;
    const backend = createBackend({
      name: 'f16',
      capabilities: () => capabilities([...ALL_FEATURES, 'kvCache', 'kvCacheF16Storage']),
      init: async () => {},
      attention: async () => ({ output: new Float32Array(0) }),
      matmul: async () => new Float32Array(0),
      memory: () => ({ hostBytes: 0, deviceBytes: 0 }),
      dispose: async () => {},
      createKVCache: () => ({
        append: () => {
          appends++;
        },
        attention: async () => ({ output: new Float32Array(0) }),
        truncate: () => {},
        dispose: () => {},
      }),
    });
    const cache = await backend.createKVCache({ batch: 1, kvHeads: 1, headDim: 2, precision: 'f16-storage' });
    const ok = new Float32Array([65519, -1]);
    await cache.append({ k: ok, v: new Float32Array([Number.POSITIVE_INFINITY, Number.NaN]), tokens: 1 });
    expect(appends).toBe(1);
    await expect(
      cache.append({ k: new Float32Array([1, -65520]), v: new Float32Array(2), tokens: 1 }),
    ).rejects.toMatchObject({ code: 'invalid-argument', argument: 'chunk.k' });
    await expect(
      cache.append({ k: new Float32Array(2), v: new Float32Array([1e6, 0]), tokens: 1 }),
    ).rejects.toMatchObject({ code: 'invalid-argument', argument: 'chunk.v' });
    expect(appends).toBe(1);
    expect(cache.lengths).toEqual([1]);
    await backend.dispose();
  });
});

describe('roundToF16', () => {
  it('rounds to the nearest binary16 value, ties to even (hand-derived values)', () => {
    const u = 2 ** -11;
    const cases: [number, number][] = [
      [1, 1],
      [1 + u, 1], // a tie: to the even neighbour 1
      [1 + 3 * u, 1 + 4 * u], // a tie: to the even neighbour 1 + 2^-9
      [1 + 1.01 * u, 1 + 2 * u],
      [-2.71, -2.7109375],
      [65504, 65504],
      [65519.99, 65504],
      [65520, Number.POSITIVE_INFINITY],
      [-1e9, Number.NEGATIVE_INFINITY],
      [2 ** -24, 2 ** -24], // smallest subnormal
      [2 ** -25, 0], // a tie: to even, 0
      [1.5 * 2 ** -25, 2 ** -24],
      [3 * 2 ** -25, 2 * 2 ** -24], // a tie between 1 and 2 subnormal steps: 2
      [2 ** -14 * (1 + 2 ** -10), 2 ** -14 * (1 + 2 ** -10)],
      [1e-9, 0],
    ];
    for (const [x, want] of cases) expect(roundToF16(x), `roundToF16(${x})`).toBe(want);
    expect(Object.is(roundToF16(-0), -0)).toBe(true);
    expect(roundToF16(Number.NaN)).toBeNaN();
    expect(roundToF16(Number.NEGATIVE_INFINITY)).toBe(Number.NEGATIVE_INFINITY);
  });
});

describe('f16StorageErrorBound', () => {
  it('gives the hand-derived values for one key', () => {
    // q = [1, 0], k = [2, 0], v = [0.5], scale 1: E = 1 * (u * 2 + eta) + 0 * (u * 0 + eta) = 2u + eta.
    const u = F16_UNIT_ROUNDOFF;
    const eta = 2 ** -14;
    const bound = f16StorageErrorBound({
      q: new Float32Array([1, 0]),
      k: new Float32Array([2, 0]),
      v: new Float32Array([0.5]),
      queryHeads: 1,
      kvHeads: 1,
      queryLength: 1,
      keyLength: 1,
      headDim: 2,
      valueDim: 1,
      scale: 1,
    });
    const E = 2 * u + eta;
    expect(bound.lse[0]).toBeCloseTo(E, 15);
    expect(bound.output[0]).toBeCloseTo((Math.exp(2 * E) - 1) * (1 + u) * 0.5 + 0.5 * u + eta, 15);
  });

  it('covers the float64 result on binary16-rounded K and V, and is not vacuous (D 64, Lk 300)', () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 30 - 1;
    };
    const [Hq, Hkv, Lq, Lk, D] = [4, 2, 3, 300, 64];
    const q = Float32Array.from({ length: Hq * Lq * D }, () => 2 * random());
    const k = Float32Array.from({ length: Hkv * Lk * D }, () => 2 * random());
    const v = Float32Array.from({ length: Hkv * Lk * D }, () => random());
    const shape = { batch: 1, queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, keyLength: Lk, headDim: D };
    const exact = referenceAttention64({ q, k, v, shape }, { causal: true, returnLse: true });
    const rounded = referenceAttention64(
      { q, k: k.map(roundToF16), v: v.map(roundToF16), shape },
      { causal: true, returnLse: true },
    );
    const bound = f16StorageErrorBound({
      q,
      k,
      v,
      ...shape,
      valueDim: D,
      scale: 1 / Math.sqrt(D),
    });
    let worst = 0;
    for (let r = 0; r < Hq * Lq; r++) {
      for (let d = 0; d < D; d++) {
        const diff = Math.abs(rounded.output[r * D + d] - exact.output[r * D + d]);
        expect(diff).toBeLessThanOrEqual(bound.output[r]);
        worst = Math.max(worst, diff / bound.output[r]);
      }
      expect(Math.abs((rounded.lse?.[r] ?? Number.NaN) - (exact.lse?.[r] ?? Number.NaN))).toBeLessThanOrEqual(
        bound.lse[r],
      );
    }
    // A worst case (every rounding error aligned): on random data the measured error is about 1/140 of it.
    expect(worst).toBeGreaterThan(1 / 1000);
  });
});
