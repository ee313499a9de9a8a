// The KV cache on WebGPU (src/cache.ts): every result against the float64 reference over each row's
// concatenated K/V, at lengths where the split-K kernel splits each row's keys (more than one 256-key
// range) and where it does not, plus what a decode step moves between host and device and the
// device memory the cache holds.
import {
  type KVCache,
  type KVCacheAttentionOptions,
  type KVCacheConfig,
  ReferenceKVCache,
  referenceAttention64,
  type Tolerance,
  validateKVCacheConfig,
} from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { CACHE_PARAMS_BYTES } from '../src/kernels/cache-attention.js';
import { cleanupAfterEach, expectClose, newBackend, ownDevice, random } from './helpers.js';

const { track, defer } = cleanupAfterEach();

/** A cache on the backend and, beside it, the spec's plain store of what was appended. */
class Mirrored {
  readonly model: ReferenceKVCache;
  private seed = 1;

  constructor(
    readonly cache: KVCache,
    readonly queryHeads: number,
    readonly tolerance: Tolerance,
  ) {
    this.model = new ReferenceKVCache(validateKVCacheConfig(cache.config));
  }

  static async create(backend: WebGpuBackend, config: KVCacheConfig, queryHeads: number) {
    const cache = await backend.createKVCache(config);
    // the backend's declared tolerance, without the fudge (a stricter check than the suite's)
    return new Mirrored(cache, queryHeads, backend.capabilities.tolerance);
  }

  /** Appends random K/V (row b keeps `kept[b]` of the `tokens`); the promise is the cache's. */
  append(tokens: number, kept?: number[]): Promise<void> {
    const { batch: B, kvHeads: Hkv, headDim: D, valueDim: Dv } = this.model.config;
    const k = random(B * Hkv * tokens * D, this.seed++);
    const v = random(B * Hkv * tokens * Dv, this.seed++);
    const call = this.cache.append({ k, v, tokens, ...(kept && { lengths: kept }) });
    this.model.append({
      k: k.slice(),
      v: v.slice(),
      tokens,
      kept: kept ?? new Array<number>(B).fill(tokens),
    });
    k.fill(Number.NaN); // the cache copied them before append returned
    v.fill(Number.NaN);
    return call;
  }

  truncate(to: number[]): Promise<void> {
    this.model.truncate(to);
    return this.cache.truncate(to);
  }

  /**
   * Issues an attention now and returns a promise that compares it, row by row, with the stateless
   * float64 reference over what the rows held when it was issued.
   */
  attend(queryLength: number, options: KVCacheAttentionOptions = {}): Promise<void> {
    const { batch: B, kvHeads: Hkv, headDim: D, valueDim: Dv } = this.model.config;
    const Hq = this.queryHeads;
    const Lq = queryLength;
    const q = random(B * Hq * Lq * D, this.seed++);
    const rows = Array.from({ length: B }, (_, b) => this.model.rowTensors(b));
    const lengths = Array.from({ length: B }, (_, b) => this.model.length(b));
    const call = this.cache.attention({ q: q.slice(), queryHeads: Hq, queryLength: Lq }, options);
    return call.then((result) => {
      for (let b = 0; b < B; b++) {
        const ref = referenceAttention64(
          {
            q: q.slice(b * Hq * Lq * D, (b + 1) * Hq * Lq * D),
            ...rows[b],
            shape: {
              batch: 1,
              queryHeads: Hq,
              kvHeads: Hkv,
              queryLength: Lq,
              keyLength: lengths[b],
              headDim: D,
              valueDim: Dv,
            },
          },
          options,
        );
        const tolerance = this.tolerance;
        const out = result.output.subarray(b * Hq * Lq * Dv, (b + 1) * Hq * Lq * Dv);
        expectClose(`row ${b} (Lk ${lengths[b]}) output`, out, ref.output, tolerance);
        if (options.returnLse) {
          expectClose(
            `row ${b} lse`,
            result.lse?.subarray(b * Hq * Lq, (b + 1) * Hq * Lq),
            ref.lse,
            tolerance,
          );
        } else expect(result.lse).toBeUndefined();
      }
    });
  }
}

const slopes = (n: number) => Float32Array.from({ length: n }, (_, h) => 0.002 * (h + 1));
const sinks = (n: number) => Float32Array.from({ length: n }, (_, h) => h - 1);

describe('KV cache on WebGPU', () => {
  it('declares kvCache and answers ragged rows, split over many key ranges, with every option', async () => {
    const backend = track(newBackend());
    await backend.init();
    expect(backend.capabilities.features).toContain('kvCache');
    const m = await Mirrored.create(backend, { batch: 3, kvHeads: 2, headDim: 32, valueDim: 24 }, 4);
    // rows of 1500, 700 and 1100 keys: six, three and five 256-key ranges in a decode step
    await m.append(1500, [1500, 700, 1100]);
    await m.attend(1);
    await m.attend(1, { causal: true, returnLse: true });
    await m.attend(1, { slidingWindow: 300, returnLse: true });
    await m.attend(1, { alibiSlopes: slopes(4), sinks: sinks(4), softcap: 3, scale: 0.5, returnLse: true });
    await m.attend(1, { causal: true, slidingWindow: 257, alibiSlopes: slopes(4), returnLse: true });
    // a prefill-sized query block: many row tiles, causal band per row
    await m.append(40, [40, 0, 17]);
    await m.attend(17, { causal: true, returnLse: true });
    await m.attend(5, { causal: true, slidingWindow: 9, sinks: sinks(4) });
    await m.cache.dispose();
  });

  it('truncates then appends (speculative decoding), and grows across many doublings', async () => {
    const backend = track(newBackend());
    const m = await Mirrored.create(backend, { batch: 2, kvHeads: 1, headDim: 16, capacity: 3 }, 2);
    for (let step = 0; step < 12; step++) await m.append(step % 3 === 0 ? 130 : 1);
    await m.attend(1, { returnLse: true });
    await m.truncate([200, 37]);
    await m.attend(2, { causal: true, returnLse: true });
    await m.append(5, [5, 2]);
    await m.attend(1, { causal: true });
    await m.truncate([0, 39]);
    await m.append(700, [700, 1]); // grows while row 1 holds tokens that must survive the copy
    await m.attend(1, { causal: true, returnLse: true });
    await m.cache.dispose();
  });

  it('orders un-awaited calls: a truncate and append after a compiling attention do not change it', async () => {
    // A fresh device: the first attention must wait for its pipelines, so it is queued, and the
    // append after it overwrites the very positions it reads unless it waits for it.
    const device = await ownDevice();
    defer(() => device.destroy());
    const backend = track(createWebGpuBackend({ device }));
    const m = await Mirrored.create(backend, { batch: 2, kvHeads: 2, headDim: 8 }, 2);
    await m.append(30);
    const checks = [m.attend(1, { returnLse: true }), m.truncate([10, 20]), m.append(15)];
    checks.push(m.attend(3, { causal: true }), m.truncate([5, 5]), m.append(2), m.attend(1));
    await Promise.all(checks);
    await m.cache.dispose();
  });

  it('keys and values outside the window never leak (NaN and infinities in other key ranges)', async () => {
    const backend = track(newBackend());
    const config = { batch: 1, kvHeads: 1, headDim: 8 };
    const cache = await backend.createKVCache(config);
    const model = new ReferenceKVCache(validateKVCacheConfig(config));
    const tokens = 1000;
    const k = random(tokens * 8, 11);
    const v = random(tokens * 8, 12);
    // the first 600 tokens (two and a half 256-key ranges) hold non-finite keys and values
    for (let n = 0; n < 600 * 8; n += 3) {
      k[n] = Number.NaN;
      v[n] = n % 2 === 0 ? Number.POSITIVE_INFINITY : Number.NaN;
    }
    await cache.append({ k, v, tokens });
    model.append({ k, v, tokens, kept: [tokens] });
    const q = random(2 * 3 * 8, 13);
    const options = { slidingWindow: 300, causal: true, returnLse: true } as const;
    const got = await cache.attention({ q, queryHeads: 2, queryLength: 3 }, options);
    const ref = referenceAttention64(
      {
        q,
        ...model.rowTensors(0),
        shape: { batch: 1, queryHeads: 2, kvHeads: 1, queryLength: 3, keyLength: tokens, headDim: 8 },
      },
      options,
    );
    expect(got.output.every(Number.isFinite)).toBe(true);
    expectClose('output', got.output, ref.output, backend.capabilities.tolerance);
    expectClose('lse', got.lse, ref.lse, backend.capabilities.tolerance);
    await cache.dispose();
  });

  it('is deterministic: the same call over the same cache gives the same bits', async () => {
    const backend = track(newBackend());
    const m = await Mirrored.create(backend, { batch: 1, kvHeads: 2, headDim: 16 }, 4);
    await m.append(3000); // twelve ranges merged per row
    const q = random(4 * 16, 21);
    const options = { alibiSlopes: slopes(4), returnLse: true } as const;
    const first = await m.cache.attention({ q, queryHeads: 4, queryLength: 1 }, options);
    for (let run = 0; run < 3; run++) {
      const again = await m.cache.attention({ q, queryHeads: 4, queryLength: 1 }, options);
      expect(again.output).toEqual(first.output);
      expect(again.lse).toEqual(first.lse);
    }
    await m.cache.dispose();
  });

  it('GQA, MQA and MHA head mappings, and valueDim != headDim', async () => {
    const backend = track(newBackend());
    for (const [Hq, Hkv, D, Dv] of [
      [8, 2, 16, 16],
      [6, 1, 12, 5],
      [3, 3, 16, 8],
    ] as const) {
      const m = await Mirrored.create(backend, { batch: 2, kvHeads: Hkv, headDim: D, valueDim: Dv }, Hq);
      await m.append(600, [600, 333]);
      await m.attend(1, { returnLse: true });
      await m.append(1);
      await m.attend(2, { causal: true, alibiSlopes: slopes(Hq) });
      await m.cache.dispose();
    }
  });

  it('a decode step uploads only the new token and q (and uniforms), reads back only output and lse', async () => {
    const backend = track(newBackend());
    const config = { batch: 2, kvHeads: 2, headDim: 32 };
    const Hq = 8;
    const m = await Mirrored.create(backend, config, Hq);
    await m.append(2000);
    await m.attend(1, { returnLse: true }); // compiles; grows nothing later (capacity 2048)
    const kvBytes = 2 * 2 * 1 * 32 * 4 * 2; // k and v of one token per stream
    const qBytes = 2 * Hq * 32 * 4;
    const outBytes = 2 * Hq * 32 * 4;
    const lseBytes = 2 * Hq * 4;
    const step = async (options: KVCacheAttentionOptions) => {
      const before = backend.transfers();
      await m.append(1);
      await m.attend(1, options);
      const after = backend.transfers();
      return { up: after.uploadBytes - before.uploadBytes, down: after.downloadBytes - before.downloadBytes };
    };
    const small = await step({ returnLse: true });
    // uniforms: two parameter blocks; the row lengths table: 2 u32
    expect(small.up).toBe(kvBytes + qBytes + 2 * CACHE_PARAMS_BYTES + 2 * 4);
    expect(small.down).toBe(outBytes + lseBytes);
    // the same after 40 more tokens: nothing scales with what is cached
    await m.append(40);
    expect(await step({ returnLse: true })).toEqual(small);
    // options add their per-head table (slopes and sinks, 2 * Hq floats); no lse, no lse read
    expect(await step({ sinks: sinks(Hq) })).toEqual({ up: small.up + 2 * Hq * 4, down: outBytes });
    await m.cache.dispose();
  });

  it('memory().deviceBytes counts the cache and returns to its value after cache.dispose()', async () => {
    const backend = track(newBackend());
    await backend.init();
    const config = { batch: 2, kvHeads: 2, headDim: 16, valueDim: 8 };
    const script = async (m: Mirrored) => {
      await m.append(100);
      await m.attend(1, { returnLse: true });
      await m.append(300);
      await m.attend(2, { causal: true });
    };
    // once to fill the pool with this script's scratch (it is reused, not grown, by later runs)
    const warm = await Mirrored.create(backend, config, 4);
    await script(warm);
    await warm.cache.dispose();
    const before = backend.memory().deviceBytes;
    const m = await Mirrored.create(backend, config, 4);
    await script(m);
    const held = backend.memory().deviceBytes;
    // K and V of 400 tokens per stream, at the doubled capacity of 512
    expect(held - before).toBe(2 * 2 * 512 * (16 + 8) * 4);
    await m.cache.dispose();
    expect(backend.memory().deviceBytes).toBe(before);
    // and a cache left open is freed by backend.dispose()
    const open = await Mirrored.create(backend, config, 4);
    await open.append(50);
    expect(backend.memory().deviceBytes).toBeGreaterThan(before);
    await backend.dispose();
    expect(backend.memory().deviceBytes).toBe(0);
  });

  it('rejects a cache the device cannot hold, before anything is allocated', async () => {
    const backend = track(newBackend());
    await backend.init();
    const before = backend.memory().deviceBytes;
    const { headDim: dimLimit, tensorElements } = backend.capabilities.limits;
    expect(dimLimit).toBeGreaterThan(0);
    // a head size past the declared limit
    await expect(
      backend.createKVCache({ batch: 1, kvHeads: 1, headDim: (dimLimit ?? 0) + 4 }),
    ).rejects.toMatchObject({ code: 'unsupported' });
    // a reservation past one storage binding
    const capacity = Math.ceil((tensorElements ?? 0) / 16) + 1;
    await expect(
      backend.createKVCache({ batch: 1, kvHeads: 1, headDim: 16, capacity }),
    ).rejects.toMatchObject({ code: 'unsupported' });
    expect(backend.memory().deviceBytes).toBe(before);
  });

  it('prepare({ kvCache: true }) compiles the decode pipelines, so the first step compiles nothing', async () => {
    const device = await ownDevice();
    let compiled = 0;
    const create = device.createComputePipelineAsync.bind(device);
    device.createComputePipelineAsync = (descriptor: GPUComputePipelineDescriptor) => {
      compiled++;
      return create(descriptor);
    };
    defer(() => device.destroy());
    const backend = track(createWebGpuBackend({ device }));
    const shape = { batch: 1, queryHeads: 4, kvHeads: 2, queryLength: 1, headDim: 16 };
    await backend.prepare([{ shape, kvCache: true }]);
    // the stateless attention of the shape (every workload prepares it), the partial kernel, the merge
    expect(compiled).toBe(3);
    const m = await Mirrored.create(backend, { batch: 1, kvHeads: 2, headDim: 16 }, 4);
    await m.append(9);
    await m.attend(1, { causal: true, sinks: sinks(4) });
    expect(compiled).toBe(3);
    // The count is real: a prefill block has a tile of its own.
    await m.attend(8, { causal: true });
    expect(compiled).toBeGreaterThan(3);
    await m.cache.dispose();
  });
});
