import { createCpuBackend } from '@attnkit/cpu';
import { multiHeadAttentionBackward, multiHeadAttentionForward } from '@attnkit/spec';

const backend = createCpuBackend(); // any backend whose capabilities list 'backward'
const shape = { batch: 2, queryLength: 8, modelDim: 16, queryHeads: 2, headDim: 8 };
const random = (n: number, scale: number) => new Float32Array(n).map(() => scale * (Math.random() - 0.5));
const x = random(2 * 8 * 16, 2); // [B, Lq, modelDim]
const target = random(2 * 8 * 16, 1);
const weights = {
  wq: random(16 * 16, 0.5),
  wk: random(16 * 16, 0.5),
  wv: random(16 * 16, 0.5),
  wo: random(16 * 16, 0.5),
};
const options = { causal: true };
const losses: number[] = [];
for (let step = 0; step < 100; step++) {
  // The training forward keeps what the backward needs (projections, attention output, lse).
  const { output, saved } = await multiHeadAttentionForward(backend, { x, weights, shape }, options);
  losses.push(output.reduce((sum, y, i) => sum + (y - target[i]) ** 2, 0) / output.length);
  const gradOutput = output.map((y, i) => (2 * (y - target[i])) / output.length); // d(mean squared error)/dY
  const { gradWeights } = await multiHeadAttentionBackward(
    backend,
    { x, weights, shape },
    gradOutput,
    options,
    saved,
  );
  for (const key of ['wq', 'wk', 'wv', 'wo'] as const) {
    const w = weights[key];
    const g = gradWeights[key];
    for (let i = 0; i < w.length; i++) w[i] -= 4 * g[i]; // plain gradient descent
  }
}
console.log(`mean squared error ${losses[0].toFixed(3)} -> ${losses[99].toFixed(3)}`);
if (!(losses[99] < losses[0] / 2)) throw new Error('the layer did not learn');
await backend.dispose();
