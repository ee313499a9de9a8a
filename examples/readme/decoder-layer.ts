import { createCpuBackend } from '@attnkit/cpu';
import { multiHeadAttentionStep } from '@attnkit/spec';

const backend = createCpuBackend();
const [B, M, Hq, Hkv, D] = [1, 64, 8, 2, 8];
const random = (n: number) => new Float32Array(n).map(() => (Math.random() - 0.5) / 4);
const weights = {
  wq: random(M * Hq * D),
  wk: random(M * Hkv * D),
  wv: random(M * Hkv * D),
  wo: random(Hq * D * M),
};
const cache = await backend.createKVCache({ batch: B, kvHeads: Hkv, headDim: D });
const shape = (tokens: number) => ({
  batch: B,
  queryLength: tokens,
  modelDim: M,
  queryHeads: Hq,
  kvHeads: Hkv,
  headDim: D,
});
// RoPE (Llama's half-split layout) at each token's absolute position; causal for the prompt.
const options = { causal: true, rotary: { base: 10000 } };

// Prefill: the prompt's hidden states [B, 12, M] in one step.
await multiHeadAttentionStep(backend, cache, { x: random(B * 12 * M), weights, shape: shape(12) }, options);
// Decode: one new hidden state per step; only it is projected, its K/V appended.
for (let step = 0; step < 3; step++) {
  const { output } = await multiHeadAttentionStep(
    backend,
    cache,
    { x: random(B * M), weights, shape: shape(1) },
    options,
  );
  console.log(cache.lengths[0], output.length); // 13 64, 14 64, 15 64
}
await backend.dispose();
