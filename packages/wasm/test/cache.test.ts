import {
  type AttentionBackend,
  type KVCache,
  type KVCacheAttentionOptions,
  type KVCacheConfig,
  referenceAttention64,
} from '@attnkit/spec';
import { afterEach, describe, expect, it } from 'vitest';
import { cacheTransfers, createWasmBackend, PAGE_TOKENS, WASM_TOLERANCE } from '../src/index.js';
import { threadsTestHooks, type WorkerPool } from '../src/threads.js';
import { errorRatio, uniform } from './helpers.js';

// The shared cache/* conformance cases run in conformance.test.ts (1 and 2 threads). These check what
// is wasm's own: pages and split-K chunks against the float64 reference, the transfer counters, the
// cache's own memory coming back on dispose, and the same bits on every call and thread count.

const open: AttentionBackend[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.dispose()));
});

function backendOf(threads: 1 | 2, queryBlock = 8): AttentionBackend {
  // tiny tiles and no minimum work, so that two threads really split every call
  const backend = createWasmBackend({ threads, queryBlock, keyBlock: 16, parallelMinWork: 0 });
  open.push(backend);
  return backend;
}

/** The cache's content kept on the host: per row, per kv head, its keys and values. */
class Mirror {
  readonly k: number[][][];
  readonly v: number[][][];
  constructor(readonly config: Required<Omit<KVCacheConfig, 'precision'>>) {
    this.k = Array.from({ length: config.batch }, () => Array.from({ length: config.kvHeads }, () => []));
    this.v = Array.from({ length: config.batch }, () => Array.from({ length: config.kvHeads }, () => []));
  }
  async append(cache: KVCache, tokens: number, seed: number, kept?: number[]): Promise<void> {
    const { batch: B, kvHeads: Hkv, headDim: D, valueDim: Dv } = this.config;
    const k = uniform(B * Hkv * tokens * D, seed);
    const v = uniform(B * Hkv * tokens * Dv, seed + 1);
    await cache.append({ k, v, tokens, ...(kept && { lengths: kept }) });
    for (let b = 0; b < B; b++) {
      for (let g = 0; g < Hkv; g++) {
        const n = kept?.[b] ?? tokens;
        const at = (b * Hkv + g) * tokens;
        this.k[b][g].push(...k.subarray(at * D, (at + n) * D));
        this.v[b][g].push(...v.subarray(at * Dv, (at + n) * Dv));
      }
    }
  }
  async truncate(cache: KVCache, lengths: number[]): Promise<void> {
    await cache.truncate(lengths);
    const { headDim: D, valueDim: Dv } = this.config;
    lengths.forEach((n, b) => {
      for (const rows of this.k[b]) rows.length = n * D;
      for (const rows of this.v[b]) rows.length = n * Dv;
    });
  }
  /** Attends on the cache and compares every row with the float64 reference over that row's keys. */
  async check(
    cache: KVCache,
    queryHeads: number,
    queryLength: number,
    seed: number,
    options: KVCacheAttentionOptions = {},
  ) {
    const { batch: B, kvHeads: Hkv, headDim: D, valueDim: Dv } = this.config;
    const q = uniform(B * queryHeads * queryLength * D, seed);
    const got = await cache.attention({ q, queryHeads, queryLength }, { ...options, returnLse: true });
    const rowQ = queryHeads * queryLength;
    for (let b = 0; b < B; b++) {
      const Lk = this.k[b][0].length / D;
      const reference = referenceAttention64(
        {
          q: q.slice(b * rowQ * D, (b + 1) * rowQ * D),
          k: Float32Array.from(this.k[b].flat()),
          v: Float32Array.from(this.v[b].flat()),
          shape: { batch: 1, queryHeads, kvHeads: Hkv, queryLength, keyLength: Lk, headDim: D, valueDim: Dv },
        },
        { ...options, returnLse: true },
      );
      const output = got.output.subarray(b * rowQ * Dv, (b + 1) * rowQ * Dv);
      expect(errorRatio(output, reference.output, WASM_TOLERANCE.atol, WASM_TOLERANCE.rtol)).toBeLessThan(1);
      const lse = got.lse.subarray(b * rowQ, (b + 1) * rowQ);
      expect(
        errorRatio(lse, reference.lse as Float64Array, WASM_TOLERANCE.atol, WASM_TOLERANCE.rtol),
      ).toBeLessThan(1);
    }
    return got;
  }
}

describe.each([1, 2] as const)('wasm KV cache, %i thread(s)', (threads) => {
  it('ragged rows across page boundaries, truncate, GQA 8/2, padded head dims', async () => {
    const config = { batch: 3, kvHeads: 2, headDim: 6, valueDim: 5, capacity: 0 };
    const cache = await backendOf(threads).createKVCache(config);
    const mirror = new Mirror(config);
    await mirror.append(cache, PAGE_TOKENS + 7, 1, [PAGE_TOKENS + 7, 3, PAGE_TOKENS]);
    await mirror.check(cache, 8, 3, 10, { causal: true });
    await mirror.append(cache, 2, 20, [0, 2, 1]);
    await mirror.check(cache, 8, 1, 30);
    await mirror.truncate(cache, [PAGE_TOKENS - 1, 4, 1]);
    await mirror.append(cache, 5, 40, [5, 1, 5]);
    expect(cache.lengths).toEqual([PAGE_TOKENS + 4, 5, 6]);
    await mirror.check(cache, 8, 2, 50, { causal: true, slidingWindow: 5 });
    await mirror.check(cache, 2, 1, 60);
  });

  it('options over a cache split into several chunks (3000 keys): scale, softcap, ALiBi, sinks, window', async () => {
    const config = { batch: 1, kvHeads: 1, headDim: 8, valueDim: 8, capacity: 500 };
    const cache = await backendOf(threads).createKVCache(config);
    const mirror = new Mirror(config);
    await mirror.append(cache, 3000, 70);
    const Hq = 3;
    const cases: KVCacheAttentionOptions[] = [
      { scale: 0.9 },
      { softcap: 1.5, scale: 2 },
      { alibiSlopes: new Float32Array([0.001, 0.01, 0.002]) },
      { sinks: new Float32Array([-1, 0.5, 3]) },
      { slidingWindow: 1500, causal: true },
    ];
    for (const [index, options] of cases.entries()) await mirror.check(cache, Hq, 2, 80 + index, options);
  });

  it('a NaN or infinite value outside the visible keys leaves the output finite', async () => {
    const config = { batch: 1, kvHeads: 1, headDim: 4, valueDim: 4, capacity: 0 };
    const cache = await backendOf(threads).createKVCache(config);
    const v = uniform(10 * 4, 91);
    v[0] = Number.POSITIVE_INFINITY;
    v[5] = Number.NaN;
    await cache.append({ k: uniform(10 * 4, 90), v, tokens: 10 });
    const { output } = await cache.attention(
      { q: uniform(4, 92), queryHeads: 1, queryLength: 1 },
      { slidingWindow: 4, causal: true },
    );
    expect([...output].every(Number.isFinite)).toBe(true);
  });
});

describe('wasm KV cache transfers and memory', () => {
  it('moves only the new token K/V and q in, and the output (and lse) out, per decode step', async () => {
    for (const threads of [1, 2] as const) {
      const backend = backendOf(threads);
      const config = { batch: 2, kvHeads: 2, headDim: 16 };
      const cache = await backend.createKVCache(config);
      await cache.append({ k: uniform(2 * 2 * 600 * 16, 1), v: uniform(2 * 2 * 600 * 16, 2), tokens: 600 });
      for (let step = 0; step < 3; step++) {
        const k = uniform(2 * 2 * 16, 3 + step);
        const v = uniform(2 * 2 * 16, 4 + step);
        const q = uniform(2 * 8 * 16, 5 + step);
        const before = { ...cacheTransfers };
        await cache.append({ k, v, tokens: 1 });
        const { output, lse } = await cache.attention(
          { q, queryHeads: 8, queryLength: 1 },
          { causal: true, returnLse: step === 2 },
        );
        expect(cacheTransfers.bytesIn - before.bytesIn).toBe((k.length + v.length + q.length) * 4);
        expect(cacheTransfers.bytesOut - before.bytesOut).toBe((output.length + (lse?.length ?? 0)) * 4);
      }
    }
  });

  it('holds its pages in a memory of its own, which dispose() returns', async () => {
    const backend = backendOf(2);
    await backend.init();
    const before = backend.memory().hostBytes;
    const cache = await backend.createKVCache({ batch: 1, kvHeads: 2, headDim: 64 });
    await cache.append({
      k: uniform(2 * 3 * PAGE_TOKENS * 64, 1),
      v: uniform(2 * 3 * PAGE_TOKENS * 64, 2),
      tokens: 3 * PAGE_TOKENS,
    });
    await cache.attention({ q: uniform(4 * 64, 3), queryHeads: 4, queryLength: 1 });
    // three pages of K and V per kv head, at least
    expect(backend.memory().hostBytes - before).toBeGreaterThanOrEqual(3 * 2 * PAGE_TOKENS * 128 * 4);
    await cache.dispose();
    expect(backend.memory().hostBytes).toBe(before);
    // and the kernel still answers (the workers dropped only the cache's instances)
    const next = await backend.createKVCache({ batch: 1, kvHeads: 1, headDim: 4 });
    await next.append({ k: uniform(4, 4), v: uniform(4, 5), tokens: 1 });
    const { output } = await next.attention({ q: uniform(4, 6), queryHeads: 1, queryLength: 1 });
    expect([...output]).toEqual([...uniform(4, 5)]);
  });

  it('gives the same bits on every call and on 1 and 2 threads', async () => {
    const results: Float32Array[] = [];
    for (const threads of [1, 2, 2] as const) {
      const cache = await backendOf(threads).createKVCache({ batch: 2, kvHeads: 2, headDim: 8 });
      await cache.append({
        k: uniform(2 * 2 * 2500 * 8, 1),
        v: uniform(2 * 2 * 2500 * 8, 2),
        tokens: 2500,
        lengths: [2500, 1100],
      });
      for (let call = 0; call < 2; call++) {
        const { output } = await cache.attention(
          { q: uniform(2 * 4 * 2 * 8, 3), queryHeads: 4, queryLength: 2 },
          { causal: true },
        );
        results.push(output);
      }
    }
    for (const output of results.slice(1))
      expect(Buffer.from(output.buffer).equals(Buffer.from(results[0].buffer))).toBe(true);
  });

  it('memory() does not grow over repeated decode steps at one length', async () => {
    const backend = backendOf(2);
    const cache = await backend.createKVCache({ batch: 1, kvHeads: 2, headDim: 32 });
    await cache.append({ k: uniform(2 * 900 * 32, 1), v: uniform(2 * 900 * 32, 2), tokens: 900 });
    const step = async () => {
      await cache.append({ k: uniform(2 * 32, 3), v: uniform(2 * 32, 4), tokens: 1 });
      await cache.attention({ q: uniform(4 * 32, 5), queryHeads: 4, queryLength: 1 }, { returnLse: true });
      await cache.truncate(900);
    };
    await step();
    const held = backend.memory().hostBytes;
    for (let i = 0; i < 5; i++) await step();
    expect(backend.memory().hostBytes).toBe(held);
  });

  it('an append after a truncate waits for a queued attention, which sees the keys it was called on', async () => {
    const backend = backendOf(2);
    const config = { batch: 1, kvHeads: 1, headDim: 8, valueDim: 8, capacity: 0 };
    const cache = await backend.createKVCache(config);
    const mirror = new Mirror(config);
    await mirror.append(cache, 40, 1);
    const q = uniform(2 * 8, 2);
    const expected = referenceAttention64({
      q,
      k: Float32Array.from(mirror.k[0][0]),
      v: Float32Array.from(mirror.v[0][0]),
      shape: { batch: 1, queryHeads: 2, kvHeads: 1, queryLength: 1, keyLength: 40, headDim: 8 },
    });
    // a stateless call holds the kernel, so the cache attention queues behind it
    const busy = backend.attention({
      q: uniform(4 * 64 * 8, 3),
      k: uniform(4 * 64 * 8, 4),
      v: uniform(4 * 64 * 8, 5),
      shape: { batch: 1, queryHeads: 4, queryLength: 64, headDim: 8 },
    });
    const queued = cache.attention({ q, queryHeads: 2, queryLength: 1 });
    const truncated = cache.truncate(10);
    const appended = cache.append({ k: uniform(30 * 8, 6), v: uniform(30 * 8, 7).fill(100), tokens: 30 });
    await Promise.all([busy, truncated, appended]);
    const { output } = await queued;
    expect(errorRatio(output, expected.output, WASM_TOLERANCE.atol, WASM_TOLERANCE.rtol)).toBeLessThan(1);
    // and the next call sees the new keys
    expect(cache.lengths).toEqual([40]);
    const after = await cache.attention({ q, queryHeads: 2, queryLength: 1 });
    expect(Math.max(...after.output)).toBeGreaterThan(1);
  });

  it('a worker that dies fails one cache call with a device error; the next call is right', async () => {
    const pools: WorkerPool[] = [];
    threadsTestHooks.poolStarted = (pool) => pools.push(pool);
    const backend = backendOf(2);
    try {
      await backend.init();
    } finally {
      threadsTestHooks.poolStarted = null;
    }
    const config = { batch: 1, kvHeads: 2, headDim: 8, valueDim: 8, capacity: 0 };
    const cache = await backend.createKVCache(config);
    const mirror = new Mirror(config);
    await mirror.append(cache, 1500, 1);
    await mirror.check(cache, 4, 1, 2);
    pools[0].failNextRun(0);
    await expect(
      cache.attention({ q: uniform(4 * 8, 3), queryHeads: 4, queryLength: 1 }),
    ).rejects.toMatchObject({
      name: 'AttnkitError',
      code: 'device',
    });
    // the replacement worker instantiated the kernel on the cache's memory too
    for (let i = 0; i < 2; i++) await mirror.check(cache, 4, 1, 4 + i);
  });

  it('decode over 3M cached keys with positive values stays within atol/rtol alone (float64 merge)', async () => {
    const Lk = 3 << 20;
    const k = uniform(Lk * 4, 22);
    const v = uniform(Lk * 4, 23);
    for (let i = 0; i < v.length; i++) v[i] = 1 + v[i] / 2;
    const q = uniform(4, 21);
    const cache = await backendOf(2, 64).createKVCache({ batch: 1, kvHeads: 1, headDim: 4 });
    await cache.append({ k, v, tokens: Lk });
    const { output } = await cache.attention({ q, queryHeads: 1, queryLength: 1 });
    const reference = referenceAttention64({
      q,
      k,
      v,
      shape: { batch: 1, queryHeads: 1, queryLength: 1, keyLength: Lk, headDim: 4 },
    });
    expect(errorRatio(output, reference.output, WASM_TOLERANCE.atol, WASM_TOLERANCE.rtol)).toBeLessThan(0.5);
  }, 60_000);
});
