import { describe, expect, it } from 'vitest';
import {
  ALL_FEATURES,
  type BackendCapabilities,
  createBackend,
  createReferenceBackend,
  F16_UNIT_ROUNDOFF,
  f16Bits,
  f16StorageErrorBound,
  f16Value,
  multiHeadAttention,
  referenceAttention64,
  requiredFeatures,
  roundArrayToF16,
  roundToF16,
  validateAttention,
  withF16StoredInputs,
} from '../src/index.js';

/** A reproducible stream of values in [0, 1): the ANSI C linear congruential generator. */
function seededUniform(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

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

describe("the gate's f16Storage: 'rounded-on-host'", () => {
  // 1 + 2^-12 is below binary16's half-ulp at 1 (2^-11): it rounds to 1; 3 + 2^-10 ties to even (3).
  const given = {
    q: new Float32Array([1 + 2 ** -12, 2]),
    k: new Float32Array([3 + 2 ** -10, -1]),
    v: new Float32Array([0.1]),
    shape: { batch: 1, queryHeads: 1, queryLength: 1, headDim: 2, valueDim: 1 },
  };
  const recording = (f16Storage: 'native' | 'rounded-on-host' | undefined) => {
    const seen: { q: number[]; k: number[]; v: number[]; precision: string }[] = [];
    const backend = createBackend({
      name: 'f16-gate',
      capabilities: () => capabilities([...ALL_FEATURES]),
      init: async () => {},
      ...(f16Storage === undefined ? {} : { f16Storage }),
      attention: async (problem) => {
        seen.push({ q: [...problem.q], k: [...problem.k], v: [...problem.v], precision: problem.precision });
        return { output: new Float32Array(1) };
      },
      matmul: async () => new Float32Array(0),
      memory: () => ({ hostBytes: 0, deviceBytes: 0 }),
      dispose: async () => {},
    });
    return { backend, seen };
  };

  it('hands attention q, k and v rounded to binary16 (hand-derived values), and leaves the caller arrays alone', async () => {
    const { backend, seen } = recording('rounded-on-host');
    await backend.attention(given, { precision: 'f16-storage' });
    expect(seen).toEqual([{ q: [1, 2], k: [3, -1], v: [roundToF16(0.1)], precision: 'f16-storage' }]);
    expect(roundToF16(0.1)).not.toBe(Math.fround(0.1));
    expect(given.q[0]).toBe(Math.fround(1 + 2 ** -12));
    // the f32 precision is passed through untouched
    await backend.attention(given, {});
    expect(seen[1]).toEqual({ q: [...given.q], k: [...given.k], v: [...given.v], precision: 'f32' });
    await backend.dispose();
  });

  it("passes the inputs unrounded to a 'native' implementation (the default), which reads the option itself", async () => {
    for (const mode of ['native', undefined] as const) {
      const { backend, seen } = recording(mode);
      await backend.attention(given, { precision: 'f16-storage' });
      expect(seen).toEqual([{ q: [...given.q], k: [...given.k], v: [...given.v], precision: 'f16-storage' }]);
      await backend.dispose();
    }
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
      shape: { batch: 1, queryHeads: 1, kvHeads: 1, queryLength: 1, keyLength: 1, headDim: 2, valueDim: 1 },
      scale: 1,
    });
    const E = 2 * u + eta;
    expect(bound.lse[0]).toBeCloseTo(E, 15);
    expect(bound.output[0]).toBeCloseTo((Math.exp(2 * E) - 1) * (1 + u) * 0.5 + 0.5 * u + eta, 15);
  });

  it('bounds each batch row from its own q, k and v (hand-derived values, batch 2, GQA 2/1)', () => {
    // Row b = 0: q = [1, 0] for both heads, k = [2, 0], v = [0.5]: E = 2u + eta.
    // Row b = 1: q = [0, 3] for both heads, k = [0, 1], v = [-4]: E = 3 (u + eta) + 0 * eta.
    const u = F16_UNIT_ROUNDOFF;
    const eta = 2 ** -14;
    const bound = f16StorageErrorBound({
      q: new Float32Array([1, 0, 1, 0, 0, 3, 0, 3]),
      k: new Float32Array([2, 0, 0, 1]),
      v: new Float32Array([0.5, -4]),
      shape: { batch: 2, queryHeads: 2, kvHeads: 1, queryLength: 1, keyLength: 1, headDim: 2, valueDim: 1 },
      scale: 1,
    });
    const E0 = 2 * u + eta;
    const E1 = 3 * (u + eta);
    const out = (E: number, vMax: number) => (Math.exp(2 * E) - 1) * (1 + u) * vMax + vMax * u + eta;
    expect(bound.lse.length).toBe(4);
    const expected = [
      [E0, out(E0, 0.5)],
      [E0, out(E0, 0.5)],
      [E1, out(E1, 4)],
      [E1, out(E1, 4)],
    ];
    for (const [row, [E, o]] of expected.entries()) {
      expect(bound.lse[row], `lse row ${row}`).toBeCloseTo(E, 15);
      expect(bound.output[row], `output row ${row}`).toBeCloseTo(o, 15);
    }
  });

  it('covers the float64 result on binary16-rounded K and V, and is not vacuous (D 64, Lk 300)', () => {
    const unit = seededUniform(7);
    const random = () => 2 * unit() - 1;
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
      shape: { ...shape, keyLength: Lk, valueDim: D },
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

describe('f16Bits and f16Value', () => {
  it('give hand-checked bit patterns', () => {
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
    expect(f16Value(0x3c00)).toBe(1);
    expect(f16Value(0x7bff)).toBe(65504);
    expect(f16Value(0x0001)).toBe(2 ** -24);
    expect(f16Value(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f16Value(0xfc00)).toBe(Number.NEGATIVE_INFINITY);
    expect(Object.is(f16Value(0x8000), -0)).toBe(true);
    expect(f16Value(f16Bits(Number.NaN))).toBeNaN();
  });

  it('agree with the arithmetic roundToF16 over every binade, ties and subnormals (roundArrayToF16 too)', () => {
    const random = seededUniform(11);
    const values: number[] = [];
    for (let e = -27; e <= 16; e++) {
      for (let n = 0; n < 200; n++) values.push((random() < 0.5 ? -1 : 1) * (1 + random()) * 2 ** e);
      // exact ties between neighbours at this binade's spacing
      const ulp = 2 ** Math.max(e - 10, -24);
      values.push(2 ** e + ulp / 2, 2 ** e + (3 * ulp) / 2);
    }
    const x32 = Float32Array.from(values);
    const rounded = roundArrayToF16(x32);
    x32.forEach((x, i) => {
      expect(f16Value(f16Bits(x)), `x = ${x}`).toBe(roundToF16(x));
      expect(rounded[i], `x = ${x}`).toBe(roundToF16(x));
    });
  });
});

describe("attention precision: 'f16-storage'", () => {
  const shape = {
    batch: 1,
    queryHeads: 2,
    kvHeads: 1,
    queryLength: 3,
    keyLength: 5,
    headDim: 3,
    valueDim: 2,
  };
  const filled = (n: number, f: (i: number) => number) => Float32Array.from({ length: n }, (_, i) => f(i));
  const inputs = () => ({
    q: filled(2 * 3 * 3, (i) => Math.sin(i + 0.3) * 1.7),
    k: filled(5 * 3, (i) => Math.cos(i * 1.3) * 2.1),
    v: filled(5 * 2, (i) => Math.sin(i * 0.7) + 0.25),
    shape,
  });

  it("defaults to 'f32', needs the f16Storage feature, and keeps q/k/v as given", () => {
    const given = inputs();
    const plain = validateAttention(given);
    expect(plain.precision).toBe('f32');
    expect(requiredFeatures(plain)).not.toContain('f16Storage');
    const f16 = validateAttention(given, { precision: 'f16-storage' });
    expect(f16.precision).toBe('f16-storage');
    expect(requiredFeatures(f16)).toContain('f16Storage');
    expect(f16.q).toEqual(given.q);
  });

  it('rejects an unknown precision invalid-argument naming options.precision', () => {
    expect(() => validateAttention(inputs(), { precision: 'f16' as never })).toThrow(
      expect.objectContaining({ code: 'invalid-argument', argument: 'options.precision' }),
    );
  });

  it('rejects a finite q, k or v binary16 rounds to infinity, naming it; infinities and NaN pass', () => {
    for (const name of ['q', 'k', 'v'] as const) {
      const given = inputs();
      given[name][1] = -65520;
      expect(() => validateAttention(given, { precision: 'f16-storage' }), name).toThrow(
        expect.objectContaining({ code: 'invalid-argument', argument: name }),
      );
      expect(() => validateAttention(given), `${name} at f32`).not.toThrow();
    }
    const given = inputs();
    given.v[0] = Number.POSITIVE_INFINITY;
    given.q[0] = Number.NaN;
    given.k[0] = 65519;
    expect(() => validateAttention(given, { precision: 'f16-storage' })).not.toThrow();
  });

  it('is an option of attention only: the layer, the backward and a cache query reject it', async () => {
    const backend = createReferenceBackend();
    const given = inputs();
    const output = new Float32Array(2 * 3 * 2);
    await expect(
      backend.attentionBackward(
        { ...given, output, lse: new Float32Array(6), gradOutput: output },
        {
          precision: 'f16-storage',
        },
      ),
    ).rejects.toMatchObject({ code: 'invalid-argument', argument: 'options.precision' });
    const M = 4;
    const weights = {
      wq: new Float32Array(M * 4),
      wk: new Float32Array(M * 4),
      wv: new Float32Array(M * 4),
      wo: new Float32Array(4 * M),
    };
    await expect(
      multiHeadAttention(
        backend,
        {
          x: new Float32Array(2 * M),
          weights,
          shape: { batch: 1, queryLength: 2, modelDim: M, queryHeads: 2, headDim: 2 },
        },
        { precision: 'f16-storage' },
      ),
    ).rejects.toMatchObject({ code: 'invalid-argument', argument: 'options.precision' });
    const cache = await backend.createKVCache({ batch: 1, kvHeads: 1, headDim: 3, valueDim: 2 });
    await cache.append({ k: given.k, v: given.v, tokens: 5 });
    await expect(
      cache.attention(
        { q: given.q.subarray(0, 6), queryHeads: 2, queryLength: 1 },
        { precision: 'f16-storage' },
      ),
    ).rejects.toMatchObject({ code: 'invalid-argument', argument: 'options.precision' });
    await backend.dispose();
  });

  it('the reference answers as on inputs rounded by roundToF16, and withF16StoredInputs rounds exactly those', async () => {
    const given = inputs();
    const options = { causal: true, returnLse: true } as const;
    const f16 = referenceAttention64(given, { ...options, precision: 'f16-storage' });
    const byHand = referenceAttention64(
      { q: given.q.map(roundToF16), k: given.k.map(roundToF16), v: given.v.map(roundToF16), shape },
      options,
    );
    expect(f16.output).toEqual(byHand.output);
    expect(f16.lse).toEqual(byHand.lse);
    // not the f32 answer: the rounding is there to be seen
    expect(f16.output).not.toEqual(referenceAttention64(given, options).output);
    const stored = withF16StoredInputs(validateAttention(given, { precision: 'f16-storage' }));
    expect(stored.q).toEqual(given.q.map(roundToF16));
    expect(stored.k).toEqual(given.k.map(roundToF16));
    expect(stored.v).toEqual(given.v.map(roundToF16));
    const backend = createReferenceBackend();
    expect(backend.capabilities.features).toContain('f16Storage');
    const result = await backend.attention(given, { ...options, precision: 'f16-storage' });
    expect(result.output).toEqual(Float32Array.from(byHand.output));
    await backend.dispose();
  });

  it('with roundsQuery, the bound covers rounding q too and adds the hand-derived query term', () => {
    // q = [1, 0], k = [2, 0]: the cache term 1 * (2u + eta) + 0 * eta, plus the q term
    // ((1 + u) * 0 + eta) * (u * 0 + eta) + (0 * u + eta) * 0 for d = 1 and, for d = 0,
    // ((1 + u) + eta)(2u + eta) + (u + eta) * 2 in place of 1 * (2u + eta).
    const u = F16_UNIT_ROUNDOFF;
    const eta = 2 ** -14;
    const bound = f16StorageErrorBound({
      q: new Float32Array([1, 0]),
      k: new Float32Array([2, 0]),
      v: new Float32Array([0.5]),
      shape: { batch: 1, queryHeads: 1, kvHeads: 1, queryLength: 1, keyLength: 1, headDim: 2, valueDim: 1 },
      scale: 1,
      roundsQuery: true,
    });
    const E = (1 + u + eta) * (2 * u + eta) + (u + eta) * 2 + eta * eta;
    expect(bound.lse[0]).toBeCloseTo(E, 15);
    expect(bound.output[0]).toBeCloseTo((Math.exp(2 * E) - 1) * (1 + u) * 0.5 + 0.5 * u + eta, 15);

    const unit = seededUniform(5);
    const random = () => 2 * unit() - 1;
    const [Hq, Hkv, Lq, Lk, D] = [4, 2, 3, 200, 64];
    const q = Float32Array.from({ length: Hq * Lq * D }, () => 2 * random());
    const k = Float32Array.from({ length: Hkv * Lk * D }, () => 2 * random());
    const v = Float32Array.from({ length: Hkv * Lk * D }, () => random());
    const sh = { batch: 1, queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, keyLength: Lk, headDim: D };
    const exact = referenceAttention64({ q, k, v, shape: sh }, { returnLse: true });
    const rounded = referenceAttention64(
      { q, k, v, shape: sh },
      { returnLse: true, precision: 'f16-storage' },
    );
    const full = f16StorageErrorBound({
      q,
      k,
      v,
      shape: { ...sh, keyLength: Lk, valueDim: D },
      scale: 1 / Math.sqrt(D),
      roundsQuery: true,
    });
    const kvOnly = f16StorageErrorBound({
      q,
      k,
      v,
      shape: { ...sh, keyLength: Lk, valueDim: D },
      scale: 1 / Math.sqrt(D),
    });
    for (let r = 0; r < Hq * Lq; r++) {
      expect(full.lse[r]).toBeGreaterThan(kvOnly.lse[r]);
      for (let d = 0; d < D; d++) {
        expect(Math.abs(rounded.output[r * D + d] - exact.output[r * D + d])).toBeLessThanOrEqual(
          full.output[r],
        );
      }
      expect(Math.abs((rounded.lse?.[r] ?? Number.NaN) - (exact.lse?.[r] ?? Number.NaN))).toBeLessThanOrEqual(
        full.lse[r],
      );
    }
  });
});
