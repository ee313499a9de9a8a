// Sanity timings (not a benchmark, not a speed claim): WebGPU on whatever adapter this machine has
// next to another backend module, d = 64, causal, one head, median of a few calls after a warm-up.
//   node scripts/sanity-timings.mjs [other-backend-module] [N...]
// e.g. VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json node scripts/sanity-timings.mjs ../cpu/dist/index.js

import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import createWebGpu from '../dist/index.js';

const [otherPath, ...sizesArg] = process.argv.slice(2);
const sizes = sizesArg.length > 0 ? sizesArg.map(Number) : [256, 512, 1024, 2048];
const D = 64;
const REPS = 5;

function data(n, seed) {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32) * 2 - 1;
  }
  return out;
}

async function time(backend, N) {
  const inputs = {
    q: data(N * D, 1),
    k: data(N * D, 2),
    v: data(N * D, 3),
    shape: { batch: 1, queryHeads: 1, queryLength: N, headDim: D },
  };
  await backend.attention(inputs, { causal: true }); // warm-up: pipelines, pools
  const times = [];
  for (let r = 0; r < REPS; r++) {
    const t0 = performance.now();
    await backend.attention(inputs, { causal: true });
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

const backends = [['webgpu', await createWebGpu()]];
if (otherPath) {
  const mod = await import(pathToFileURL(resolve(otherPath)).href);
  backends.push([otherPath, await mod.default()]);
}
for (const [, b] of backends) await b.init();
console.log(`engine: ${backends[0][1].capabilities.engine}`);
console.log(['N', ...backends.map(([name]) => `${name} ms`)].join('\t'));
for (const N of sizes) {
  const row = [N];
  for (const [, b] of backends) row.push((await time(b, N)).toFixed(1));
  console.log(row.join('\t'));
}
for (const [, b] of backends) await b.dispose();
