import { describe, expect, it } from 'vitest';
import {
  ALL_FEATURES,
  type BackendCapabilities,
  createBackend,
  createReferenceBackend,
  type KVCacheAppendProblem,
  type KVCacheAttentionProblem,
  referenceAttention64,
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

const implementation = (features: BackendCapabilities['features']) => ({
  name: 'no-cache',
  capabilities: () => capabilities(features),
  init: async () => {},
  attention: async () => ({ output: new Float32Array(0) }),
  matmul: async () => new Float32Array(0),
  memory: () => ({ hostBytes: 0, deviceBytes: 0 }),
  dispose: async () => {},
});

const config = { batch: 2, kvHeads: 1, headDim: 2 };

describe('createKVCache through the gate', () => {
  it('rejects unsupported when the implementation has no createKVCache (wasm, webgl, webgpu today)', async () => {
    const backend = createBackend(implementation(ALL_FEATURES));
    await expect(backend.createKVCache(config)).rejects.toMatchObject({
      code: 'unsupported',
      argument: 'kvCache',
    });
  });

  it('rejects unsupported when the capabilities lack kvCache, even with an implementation', async () => {
    const backend = createBackend({
      ...implementation(ALL_FEATURES),
      createKVCache: () => {
        throw new Error('must not be called');
      },
    });
    await expect(backend.createKVCache(config)).rejects.toMatchObject({ code: 'unsupported' });
  });

  it('validates the config before init, on any backend', async () => {
    let inits = 0;
    const backend = createBackend({
      ...implementation(ALL_FEATURES),
      init: async () => {
        inits++;
      },
    });
    await expect(backend.createKVCache({ ...config, headDim: 0 })).rejects.toMatchObject({
      code: 'invalid-argument',
      argument: 'config.headDim',
    });
    expect(inits).toBe(0);
  });

  it('hands the implementation validated calls, in call order, reading inputs in the caller tick', async () => {
    const log: string[] = [];
    let seen: Float32Array | null = null;
    const backend = createBackend({
      ...implementation([...ALL_FEATURES, 'kvCache']),
      createKVCache: () => ({
        append: (problem: KVCacheAppendProblem) => {
          seen = new Float32Array(problem.k);
          log.push(`append ${problem.kept.join(',')}`);
        },
        attention: async (problem: KVCacheAttentionProblem) => {
          log.push(`attention ${problem.lengths.join(',')} ${problem.shape.keyLength}`);
          return { output: new Float32Array(2 * 2) };
        },
        truncate: (lengths: readonly number[]) => {
          log.push(`truncate ${lengths.join(',')}`);
        },
        dispose: () => {
          log.push('dispose');
        },
      }),
    });
    const cache = await backend.createKVCache(config);
    const k = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]);
    const appended = cache.append({ k, v: new Float32Array(8), tokens: 2, lengths: [2, 1] });
    k.fill(0);
    expect(Array.from(seen ?? [])).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(cache.lengths).toEqual([2, 1]);
    const calls = [
      appended,
      cache.attention({ q: new Float32Array(4), queryHeads: 1, queryLength: 1 }),
      cache.truncate([1, 0]),
      cache.attention({ q: new Float32Array(4), queryHeads: 1, queryLength: 1 }).catch((e) => e.argument),
    ];
    const results = await Promise.all(calls);
    expect(results[3]).toBe('cache.lengths[1]');
    await backend.dispose();
    expect(log).toEqual(['append 2,1', 'attention 2,1 2', 'truncate 1,0', 'dispose']);
    await expect(cache.truncate(0)).rejects.toMatchObject({ code: 'disposed', argument: 'backend' });
  });
});

describe('the reference backend cache', () => {
  it("answers as the stateless reference on each row's concatenated keys", async () => {
    const backend = createReferenceBackend();
    const cache = await backend.createKVCache({ batch: 1, kvHeads: 1, headDim: 2, valueDim: 1 });
    await cache.append({ k: new Float32Array([1, 0]), v: new Float32Array([3]), tokens: 1 });
    await cache.append({ k: new Float32Array([0, 1, 1, 1]), v: new Float32Array([4, 5]), tokens: 2 });
    await cache.truncate(2);
    const q = new Float32Array([1, 2]);
    const { output, lse } = await cache.attention({ q, queryHeads: 1, queryLength: 1 }, { returnLse: true });
    const reference = referenceAttention64(
      {
        q,
        k: new Float32Array([1, 0, 0, 1]),
        v: new Float32Array([3, 4]),
        shape: { batch: 1, queryHeads: 1, queryLength: 1, keyLength: 2, headDim: 2, valueDim: 1 },
      },
      { returnLse: true },
    );
    expect(output[0]).toBeCloseTo(reference.output[0], 6);
    expect(lse[0]).toBeCloseTo((reference.lse as Float64Array)[0], 6);
    await backend.dispose();
  });
});
