import { createCpuBackend } from '@attnkit/cpu';
import { multiHeadAttention } from '@attnkit/spec';

const backend = createCpuBackend(); // any backend
// Cross-attention: 4 positions of x attend over 6 positions of context; 4 query heads share 2 kv heads.
const shape = { batch: 1, queryLength: 4, keyLength: 6, modelDim: 32, queryHeads: 4, kvHeads: 2, headDim: 8 };
const random = (n: number) => new Float32Array(n).map(() => Math.random() - 0.5);
const x = random(1 * 4 * 32); // [B, Lq, modelDim]
const context = random(1 * 6 * 32); // [B, Lk, modelDim]
const weights = {
  wq: random(32 * 4 * 8), // [modelDim, Hq*D]
  wk: random(32 * 2 * 8), // [modelDim, Hkv*D]
  wv: random(32 * 2 * 8), // [modelDim, Hkv*Dv]
  wo: random(4 * 8 * 32), // [Hq*Dv, modelDim]
};
const { output } = await multiHeadAttention(backend, { x, context, weights, shape }, { causal: true });
console.log(output.length); // [B, Lq, modelDim] = 128
await backend.dispose();
