#!/usr/bin/env node
// Causal N = 65536, D = 64, one head (the memory goal in benchmarks/README.md): runs the backend once, reports time and
// wasm memory, and checks a few rows against float64 sums computed here for those rows only.
//
//   pnpm --filter @attnkit/wasm build && node packages/wasm/bench/long-context.mjs [N] [threads]
import { createWasmBackend } from '../dist/index.js';

const N = Number(process.argv[2] ?? 65536);
const threads = Number(process.argv[3] ?? 1);
const D = 64;
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
const backend = createWasmBackend({ threads });
const t0 = performance.now();
const c0 = process.cpuUsage();
const { output } = await backend.attention(
  { q, k, v, shape: { batch: 1, queryHeads: 1, queryLength: N, headDim: D } },
  { causal: true },
);
const cpu = process.cpuUsage(c0);
const wall = performance.now() - t0;
const memory = backend.memory().hostBytes;
await backend.dispose();

let worst = 0;
for (const i of [0, 1, 4097, N >> 1, N - 1]) {
  const scores = new Float64Array(i + 1);
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j <= i; j++) {
    let dot = 0;
    for (let d = 0; d < D; d++) dot += q[i * D + d] * k[j * D + d];
    scores[j] = dot / Math.sqrt(D);
    max = Math.max(max, scores[j]);
  }
  let den = 0;
  const o = new Float64Array(D);
  for (let j = 0; j <= i; j++) {
    const e = Math.exp(scores[j] - max);
    den += e;
    for (let d = 0; d < D; d++) o[d] += e * v[j * D + d];
  }
  for (let d = 0; d < D; d++) {
    const ref = o[d] / den;
    worst = Math.max(worst, Math.abs(output[i * D + d] - ref) / (1e-6 + 1e-5 * Math.abs(ref)));
  }
}
console.log(
  `causal N=${N} D=${D} threads=${threads}: wall ${(wall / 1000).toFixed(1)} s, cpu ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s, ` +
    `wasm memory ${(memory / 2 ** 20).toFixed(1)} MiB, worst error ratio on checked rows ${worst.toFixed(3)} (<= 1 passes)`,
);
process.exit(worst <= 1 ? 0 : 1);
