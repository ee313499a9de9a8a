#!/usr/bin/env node
// Causal N = 16384, D = 64, one head, forward then backward (issue 13's memory goal): reports time,
// wasm memory and the process's RSS (an N x N float32 buffer alone would be 1 GiB), and checks the
// gradQ of a few rows against float64 sums computed here for those rows only.
//
//   pnpm --filter @attnkit/wasm build && node packages/wasm/bench/long-backward.mjs [N] [threads]
import { createWasmBackend } from '../dist/index.js';

const N = Number(process.argv[2] ?? 16384);
const threads = Number(process.argv[3] ?? 1);
const D = 64;
const MiB = 2 ** 20;
function random(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}
const q = random(N * D, 1);
const k = random(N * D, 2);
const v = random(N * D, 3);
const gradOutput = random(N * D, 4);
const inputs = { q, k, v, shape: { batch: 1, queryHeads: 1, queryLength: N, headDim: D } };
const options = { causal: true };
const backend = createWasmBackend({ threads });
const rssBefore = process.memoryUsage().rss;
const fwd = await backend.attention(inputs, { ...options, returnLse: true });
const rssForward = process.memoryUsage().rss;
const t0 = performance.now();
const c0 = process.cpuUsage();
const grads = await backend.attentionBackward(
  { ...inputs, output: fwd.output, lse: fwd.lse, gradOutput },
  options,
);
const cpu = process.cpuUsage(c0);
const wall = performance.now() - t0;
const rssBackward = process.memoryUsage().rss;
const memory = backend.memory().hostBytes;
await backend.dispose();

// gradQ_i = scale * sum_j P_ij (dP_ij - D_i) k_j, in float64, for a few rows
const scale = 1 / Math.sqrt(D);
let worst = 0;
for (const i of [0, 1, 4097 % N, N >> 1, N - 1]) {
  const s = new Float64Array(i + 1);
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j <= i; j++) {
    let dot = 0;
    for (let d = 0; d < D; d++) dot += q[i * D + d] * k[j * D + d];
    s[j] = dot * scale;
    max = Math.max(max, s[j]);
  }
  let den = 0;
  for (let j = 0; j <= i; j++) den += Math.exp(s[j] - max);
  const o = new Float64Array(D);
  for (let j = 0; j <= i; j++) {
    const p = Math.exp(s[j] - max) / den;
    for (let d = 0; d < D; d++) o[d] += p * v[j * D + d];
  }
  let Di = 0;
  for (let d = 0; d < D; d++) Di += gradOutput[i * D + d] * o[d];
  const dq = new Float64Array(D);
  for (let j = 0; j <= i; j++) {
    const p = Math.exp(s[j] - max) / den;
    let dP = 0;
    for (let d = 0; d < D; d++) dP += gradOutput[i * D + d] * v[j * D + d];
    const dS = p * (dP - Di);
    for (let d = 0; d < D; d++) dq[d] += scale * dS * k[j * D + d];
  }
  for (let d = 0; d < D; d++)
    worst = Math.max(worst, Math.abs(grads.gradQ[i * D + d] - dq[d]) / (1e-6 + 1e-5 * Math.abs(dq[d])));
}
console.log(
  `causal N=${N} D=${D} H=1 threads=${threads}: backward wall ${(wall / 1000).toFixed(2)} s, cpu ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s; ` +
    `wasm memory ${(memory / MiB).toFixed(1)} MiB; RSS ${(rssBefore / MiB).toFixed(0)} MiB before, ${(rssForward / MiB).toFixed(0)} after the forward, ` +
    `${(rssBackward / MiB).toFixed(0)} after the backward (an N x N float32 buffer: ${((N * N * 4) / MiB).toFixed(0)} MiB); ` +
    `worst gradQ error ratio on checked rows ${worst.toFixed(3)} (<= 1 passes)`,
);
process.exit(worst <= 1 ? 0 : 1);
