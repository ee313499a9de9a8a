import { createCpuBackend } from '@attnkit/cpu';

const backend = createCpuBackend();
const [B, Hq, Hkv, D] = [1, 8, 2, 64];
const cache = await backend.createKVCache({ batch: B, kvHeads: Hkv, headDim: D });
const random = (n: number) => new Float32Array(n).map(() => Math.random() - 0.5);

// Prefill: the prompt's 16 tokens, attended causally.
await cache.append({ k: random(B * Hkv * 16 * D), v: random(B * Hkv * 16 * D), tokens: 16 });
await cache.attention({ q: random(B * Hq * 16 * D), queryHeads: Hq, queryLength: 16 }, { causal: true });

// Decode: append one token's K/V, then attend with its query; the cache is never copied.
for (let step = 0; step < 4; step++) {
  await cache.append({ k: random(B * Hkv * D), v: random(B * Hkv * D), tokens: 1 });
  const { output } = await cache.attention({ q: random(B * Hq * D), queryHeads: Hq, queryLength: 1 });
  console.log(cache.lengths[0], output.length);
}

// Speculative decoding rejected the last two tokens: roll back.
await cache.truncate(cache.lengths[0] - 2);
await backend.dispose(); // frees the cache too
