// The f16-storage KV cache (precision: 'f16-storage'): K/V stored as packed binary16 pairs. The kernel
// is checked against the float64 reference on K/V rounded to binary16 by the spec's roundToF16 (so
// the only difference left is the kernel's float32 arithmetic) under atol/rtol alone, including an
// odd head size (rows padded to whole words) and growth; then the bytes it holds and moves.
import { type KVCacheAttentionOptions, referenceAttention64, roundToF16 } from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach, expectClose, newBackend, random } from './helpers.js';

const { track } = cleanupAfterEach();

describe("KV cache on WebGPU, precision 'f16-storage'", () => {
  it('declares kvCacheF16Storage and answers as the reference on f16-rounded K/V (odd D, growth, options)', async () => {
    const backend = track(newBackend());
    await backend.init();
    expect(backend.capabilities.features).toContain('kvCacheF16Storage');
    const [B, Hkv, Hq, D, Dv] = [2, 2, 4, 33, 24];
    const cache = await backend.createKVCache({
      batch: B,
      kvHeads: Hkv,
      headDim: D,
      valueDim: Dv,
      capacity: 16,
      precision: 'f16-storage',
    });
    expect(cache.config.precision).toBe('f16-storage');
    // what each row holds, per kv head, rounded as f16 storage keeps it
    const rows = Array.from({ length: B }, () =>
      Array.from({ length: Hkv }, () => ({ k: [] as number[], v: [] as number[] })),
    );
    let seed = 1;
    const append = async (tokens: number) => {
      const k = random(B * Hkv * tokens * D, seed++, 3);
      const v = random(B * Hkv * tokens * Dv, seed++);
      await cache.append({ k, v, tokens });
      for (let b = 0; b < B; b++)
        for (let g = 0; g < Hkv; g++) {
          const s = b * Hkv + g;
          rows[b][g].k.push(...Array.from(k.subarray(s * tokens * D, (s + 1) * tokens * D), roundToF16));
          rows[b][g].v.push(...Array.from(v.subarray(s * tokens * Dv, (s + 1) * tokens * Dv), roundToF16));
        }
    };
    const attend = async (Lq: number, options: KVCacheAttentionOptions) => {
      const q = random(B * Hq * Lq * D, seed++);
      const result = await cache.attention({ q, queryHeads: Hq, queryLength: Lq }, options);
      const Lk = cache.lengths[0];
      for (let b = 0; b < B; b++) {
        const ref = referenceAttention64(
          {
            q: q.slice(b * Hq * Lq * D, (b + 1) * Hq * Lq * D),
            k: Float32Array.from(rows[b].flatMap((r) => r.k)),
            v: Float32Array.from(rows[b].flatMap((r) => r.v)),
            shape: {
              batch: 1,
              queryHeads: Hq,
              kvHeads: Hkv,
              queryLength: Lq,
              keyLength: Lk,
              headDim: D,
              valueDim: Dv,
            },
          },
          options,
        );
        const { atol, rtol } = backend.capabilities.tolerance;
        const out = result.output.subarray(b * Hq * Lq * Dv, (b + 1) * Hq * Lq * Dv);
        expectClose(`row ${b} (Lk ${Lk}) output`, out, ref.output, { atol, rtol });
        if (options.returnLse)
          expectClose(`row ${b} lse`, result.lse?.subarray(b * Hq * Lq, (b + 1) * Hq * Lq), ref.lse, {
            atol,
            rtol,
          });
      }
    };
    await append(40); // grows past the 16-token reservation
    await attend(3, { causal: true, returnLse: true });
    await append(1300); // and again, across 256-key ranges
    await attend(1, { returnLse: true });
    await attend(1, { slidingWindow: 300, sinks: Float32Array.from([0, 1, -1, 2]), softcap: 4 });
    await attend(1, {
      alibiSlopes: Float32Array.from([0.01, 0.02, 0.03, 0.04]),
      scale: 0.3,
      returnLse: true,
    });
  });

  it('holds half the device bytes of an f32 cache and uploads half the bytes per appended token', async () => {
    const backend = track(newBackend());
    await backend.init();
    const config = { batch: 2, kvHeads: 2, headDim: 64, valueDim: 32, capacity: 500 };
    const held = async (precision: 'f32' | 'f16-storage') => {
      const before = backend.memory().deviceBytes;
      const cache = await backend.createKVCache({ ...config, precision });
      const bytes = backend.memory().deviceBytes - before;
      await cache.append({ k: random(2 * 2 * 64, 1), v: random(2 * 2 * 32, 2), tokens: 1 });
      const up = backend.transfers().uploadBytes;
      await cache.append({ k: random(2 * 2 * 64, 3), v: random(2 * 2 * 32, 4), tokens: 1 });
      const uploaded = backend.transfers().uploadBytes - up;
      await cache.dispose();
      return { bytes, uploaded };
    };
    const f32 = await held('f32');
    const f16 = await held('f16-storage');
    expect(f32.bytes).toBe(2 * 2 * 500 * (64 + 32) * 4);
    expect(f16.bytes).toBe(f32.bytes / 2);
    // one token: B * Hkv * (D + Dv) values, 4 bytes each in f32, 2 in f16
    expect(f32.uploaded).toBe(2 * 2 * (64 + 32) * 4);
    expect(f16.uploaded).toBe(f32.uploaded / 2);
  });
});
