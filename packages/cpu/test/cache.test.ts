import { describeConformance } from '@attnkit/conformance/vitest';
import { createReferenceBackend, referenceAttention64 } from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { createCpuBackend, PAGE_TOKENS } from '../src/index.js';

// The shared cache/* cases, on cpu and on the reference backend (whose cache is the float64 reference cache)
describeConformance(() => createCpuBackend(), { filter: /^cache\// });
describeConformance(() => createReferenceBackend(), { filter: /^cache\/(?!long-decode)/ });

function uniform(length: number, seed: number): Float32Array {
  let state = seed >>> 0;
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = (state / 2 ** 32) * 2 - 1;
  }
  return out;
}

describe('cpu KV cache', () => {
  it('counts whole pages in memory() and frees them on dispose', async () => {
    const backend = createCpuBackend();
    await backend.init();
    const before = backend.memory().hostBytes;
    const cache = await backend.createKVCache({ batch: 1, kvHeads: 2, headDim: 8, valueDim: 4 });
    expect(backend.memory().hostBytes).toBe(before);
    await cache.append({ k: uniform(2 * 3 * 8, 1), v: uniform(2 * 3 * 4, 2), tokens: 3 });
    // one page of K and V for each of the two kv heads
    expect(backend.memory().hostBytes - before).toBe(2 * PAGE_TOKENS * (8 + 4) * 4);
    await cache.append({
      k: uniform(2 * PAGE_TOKENS * 8, 3),
      v: uniform(2 * PAGE_TOKENS * 4, 4),
      tokens: PAGE_TOKENS,
    });
    expect(backend.memory().hostBytes - before).toBe(2 * 2 * PAGE_TOKENS * (8 + 4) * 4);
    await cache.dispose();
    expect(backend.memory().hostBytes).toBe(before);
    await backend.dispose();
  });

  it('matches the stateless reference across a page boundary, with a row shorter than the other', async () => {
    const backend = createCpuBackend();
    const cache = await backend.createKVCache({ batch: 2, kvHeads: 1, headDim: 4, capacity: 10 });
    const tokens = PAGE_TOKENS + 5;
    const k = uniform(2 * tokens * 4, 5);
    const v = uniform(2 * tokens * 4, 6);
    await cache.append({ k, v, tokens, lengths: [tokens, 7] });
    expect(cache.lengths).toEqual([tokens, 7]);
    const q = uniform(2 * 2 * 2 * 4, 7);
    const { output, lse } = await cache.attention(
      { q, queryHeads: 2, queryLength: 2 },
      { causal: true, returnLse: true },
    );
    for (const [b, Lk] of [
      [0, tokens],
      [1, 7],
    ] as const) {
      const rowK = k.slice(b * tokens * 4, (b * tokens + Lk) * 4);
      const rowV = v.slice(b * tokens * 4, (b * tokens + Lk) * 4);
      const reference = referenceAttention64(
        {
          q: q.slice(b * 16, (b + 1) * 16),
          k: rowK,
          v: rowV,
          shape: { batch: 1, queryHeads: 2, kvHeads: 1, queryLength: 2, keyLength: Lk, headDim: 4 },
        },
        { causal: true, returnLse: true },
      );
      const got = output.subarray(b * 16, (b + 1) * 16);
      for (let i = 0; i < 16; i++) expect(Math.abs(got[i] - reference.output[i])).toBeLessThan(1e-6);
      for (let i = 0; i < 4; i++)
        expect(Math.abs(lse[b * 4 + i] - (reference.lse as Float64Array)[i])).toBeLessThan(1e-5);
    }
    await backend.dispose();
  });

  it('rejects a row shorter than the query, naming it, before any work', async () => {
    const backend = createCpuBackend();
    const cache = await backend.createKVCache({ batch: 2, kvHeads: 1, headDim: 4 });
    await cache.append({ k: uniform(2 * 2 * 4, 8), v: uniform(2 * 2 * 4, 9), tokens: 2, lengths: [2, 1] });
    await expect(
      cache.attention({ q: uniform(2 * 2 * 4, 10), queryHeads: 1, queryLength: 2 }),
    ).rejects.toMatchObject({ code: 'invalid-argument', argument: 'cache.lengths[1]' });
    await backend.dispose();
  });
});
