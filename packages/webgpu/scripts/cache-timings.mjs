// Decode sanity timings (not a benchmark, not a speed claim on a software GPU): per step of the KV
// cache (append one token, attend, read the output back) next to the stateless call that uploads
// the whole K/V every step, GQA 32/8, D = 128, B = 1, median of a few steps after a warm-up, with
// the bytes each cache step moved (backend.transfers()).
//   node scripts/cache-timings.mjs [Lk...]
// e.g. VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json node scripts/cache-timings.mjs 1024 4096

import createWebGpu from '../dist/index.js';

const sizes = process.argv.slice(2).map(Number);
const lengths = sizes.length > 0 ? sizes : [1024, 4096, 16384];
const [Hq, Hkv, D] = [32, 8, 128];
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

const backend = createWebGpu();
await backend.init();
console.log(backend.capabilities.engine);
console.log('Lk\tcache step ms\tstateless ms\tstep up B\tstep down B');
for (const Lk of lengths) {
  const cache = await backend.createKVCache({ batch: 1, kvHeads: Hkv, headDim: D, capacity: Lk + 2 * REPS });
  await cache.append({ k: data(Hkv * Lk * D, 1), v: data(Hkv * Lk * D, 2), tokens: Lk });
  const k1 = data(Hkv * D, 3);
  const v1 = data(Hkv * D, 4);
  const q = data(Hq * D, 5);
  const step = async () => {
    await cache.append({ k: k1, v: v1, tokens: 1 });
    await cache.attention({ q, queryHeads: Hq, queryLength: 1 }, { causal: true });
  };
  const cached = await median(step);
  const before = backend.transfers();
  await step();
  const after = backend.transfers();
  const inputs = {
    q,
    k: data(Hkv * Lk * D, 1),
    v: data(Hkv * Lk * D, 2),
    shape: { batch: 1, queryHeads: Hq, kvHeads: Hkv, queryLength: 1, keyLength: Lk, headDim: D },
  };
  const stateless = await median(() => backend.attention(inputs, { causal: true }));
  console.log(
    `${Lk}\t${cached.toFixed(1)}\t${stateless.toFixed(1)}\t` +
      `${after.uploadBytes - before.uploadBytes}\t${after.downloadBytes - before.downloadBytes}`,
  );
  await cache.dispose();
}
await backend.dispose();
