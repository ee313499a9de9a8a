#!/usr/bin/env node

// KV cache decode steps on @attnkit/wasm, 1 and 2 threads: B = 1, GQA 32/8, D = 128. A step is what a
// decoder does per token: append one token's K/V, attend with its query, read the output back.
//
//   pnpm --filter @attnkit/wasm build
//   node packages/wasm/bench/decode.mjs [--sizes 4096,8192,32768] [--steps 20] [--threads 1,2] [--clock wall|cpu]
//
// The cache is prefilled to Lk - 1 tokens (one append, not timed), then each timed step appends one
// token (so it attends over Lk keys) and truncates back after, so every step sees the same Lk.
// Prints ms/step (median of --steps, after 3 warm-up steps) per size and thread count, and 2t/1t.

import { createWasmBackend } from '../dist/index.js';

const args = new Map();
for (let i = 2; i < process.argv.length; i += 2)
  args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const SIZES = (args.get('sizes') ?? '4096,8192,32768').split(',').map(Number);
const STEPS = Number(args.get('steps') ?? 20);
const THREADS = (args.get('threads') ?? '1,2').split(',').map(Number);
// `--clock cpu`: process CPU time (all threads together), for 1 thread on a loaded machine; wall otherwise
const CLOCK = args.get('clock') ?? 'wall';
const clock = () => (CLOCK === 'cpu' ? process.cpuUsage().user / 1000 : performance.now());
const B = 1;
const HQ = 32;
const HKV = 8;
const D = 128;

function random(n, seed) {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const results = new Map();
for (const threads of THREADS) {
  const backend = createWasmBackend({ threads });
  await backend.init();
  for (const Lk of SIZES) {
    const cache = await backend.createKVCache({ batch: B, kvHeads: HKV, headDim: D, capacity: Lk });
    const prefill = Lk - 1;
    await cache.append({
      k: random(B * HKV * prefill * D, 1),
      v: random(B * HKV * prefill * D, 2),
      tokens: prefill,
    });
    const k = random(B * HKV * D, 3);
    const v = random(B * HKV * D, 4);
    const q = random(B * HQ * D, 5);
    const times = [];
    for (let step = 0; step < STEPS + 3; step++) {
      const t0 = clock();
      await cache.append({ k, v, tokens: 1 });
      const { output } = await cache.attention({ q, queryHeads: HQ, queryLength: 1 }, { causal: true });
      if (output.length !== B * HQ * D) throw new Error('bad output');
      const t1 = clock();
      await cache.truncate(prefill);
      if (step >= 3) times.push(t1 - t0);
    }
    const ms = median(times);
    results.set(`${threads}:${Lk}`, ms);
    console.log(`threads ${threads}  Lk ${Lk}  ${ms.toFixed(3)} ms/step`);
    await cache.dispose();
  }
  await backend.dispose();
}

console.log('\n| Lk | 1 thread ms/step | 2 threads ms/step | 2t speedup |');
console.log('|---:|---:|---:|---:|');
for (const Lk of SIZES) {
  const one = results.get(`1:${Lk}`);
  const two = results.get(`2:${Lk}`);
  const ratio = one !== undefined && two !== undefined ? (one / two).toFixed(2) : '-';
  console.log(`| ${Lk} | ${one?.toFixed(3) ?? '-'} | ${two?.toFixed(3) ?? '-'} | ${ratio} |`);
}
