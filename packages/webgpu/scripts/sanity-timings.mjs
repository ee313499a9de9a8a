// Sanity timings (not a benchmark, not a speed claim): WebGPU on whatever adapter this machine has
// next to another backend module, d = 64, causal, one head, median of a few calls after a warm-up:
// the forward, and attentionBackward (from the forward's output and lse) where the backend has it.
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

async function median(call) {
  await call(); // warm-up: pipelines, pools
  const times = [];
  for (let r = 0; r < REPS; r++) {
    const t0 = performance.now();
    await call();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** [forward ms, backward ms or null]. */
async function time(backend, N) {
  const inputs = {
    q: data(N * D, 1),
    k: data(N * D, 2),
    v: data(N * D, 3),
    shape: { batch: 1, queryHeads: 1, queryLength: N, headDim: D },
  };
  const options = { causal: true };
  const forward = await median(() => backend.attention(inputs, options));
  if (!backend.capabilities.features.includes('backward')) return [forward, null];
  const { output, lse } = await backend.attention(inputs, { ...options, returnLse: true });
  const problem = { ...inputs, output, lse, gradOutput: data(N * D, 4) };
  return [forward, await median(() => backend.attentionBackward(problem, options))];
}

const backends = [['webgpu', await createWebGpu()]];
if (otherPath) {
  const mod = await import(pathToFileURL(resolve(otherPath)).href);
  backends.push([otherPath, await mod.default()]);
}
for (const [, b] of backends) await b.init();
console.log(`engine: ${backends[0][1].capabilities.engine}`);
console.log(['N', ...backends.flatMap(([name]) => [`${name} ms`, `${name} backward ms`])].join('\t'));
for (const N of sizes) {
  const row = [N];
  for (const [, b] of backends) {
    const [forward, backward] = await time(b, N);
    row.push(forward.toFixed(1), backward === null ? '-' : backward.toFixed(1));
  }
  console.log(row.join('\t'));
}
for (const [, b] of backends) await b.dispose();
