#!/usr/bin/env node
// Forward vs backward time of @attnkit/wasm: causal, D = 64, B = 1, for N = 1024, 2048, 4096, H = 1
// and 8, on 1 and 2 threads. Prints the median forward ms (with lse, as training needs), backward ms
// and backward / forward (issue 13's target: at most 3).
//
//   pnpm --filter @attnkit/wasm build
//   node packages/wasm/bench/backward.mjs [--sizes 1024,2048,4096] [--heads 1,8] [--threads 1,2]
//                                          [--reps 5] [--clock cpu|wall]
//
// `cpu` (the default for one thread) times the process's CPU, steadier than wall time on a shared
// machine; two threads are always timed by the wall clock (CPU time would add both threads up).
import { createWasmBackend } from '../dist/index.js';

const args = new Map();
for (let i = 2; i < process.argv.length; i += 2)
  args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const list = (name, fallback) => (args.get(name) ?? fallback).split(',').map(Number);
const SIZES = list('sizes', '1024,2048,4096');
const HEADS = list('heads', '1,8');
const THREADS = list('threads', '1,2');
const REPS = Number(args.get('reps') ?? 5);
const CLOCK = args.get('clock') ?? 'cpu';
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

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function timed(threads, fn) {
  const wall = performance.now();
  const cpu = process.cpuUsage();
  await fn();
  if (threads === 1 && CLOCK === 'cpu') {
    const used = process.cpuUsage(cpu);
    return (used.user + used.system) / 1000;
  }
  return performance.now() - wall;
}

console.log('| threads | H | N | forward ms | backward ms | backward / forward |');
console.log('| ------- | - | - | ---------- | ----------- | ------------------ |');
for (const threads of THREADS) {
  const backend = createWasmBackend({ threads });
  for (const H of HEADS) {
    for (const N of SIZES) {
      const shape = { batch: 1, queryHeads: H, queryLength: N, headDim: D };
      const inputs = { q: random(H * N * D, 1), k: random(H * N * D, 2), v: random(H * N * D, 3), shape };
      const gradOutput = random(H * N * D, 4);
      const options = { causal: true, returnLse: true };
      let fwd = await backend.attention(inputs, options);
      const backwardInputs = () => ({ ...inputs, output: fwd.output, lse: fwd.lse, gradOutput });
      // warm-up: V8 tiers the module up after the first calls
      for (let i = 0; i < 2; i++) await backend.attentionBackward(backwardInputs(), options);
      const forward = [];
      const backward = [];
      for (let r = 0; r < REPS; r++) {
        forward.push(
          await timed(threads, async () => {
            fwd = await backend.attention(inputs, options);
          }),
        );
        backward.push(await timed(threads, () => backend.attentionBackward(backwardInputs(), options)));
      }
      const f = median(forward);
      const b = median(backward);
      console.log(`| ${threads} | ${H} | ${N} | ${f.toFixed(1)} | ${b.toFixed(1)} | ${(b / f).toFixed(2)} |`);
    }
  }
  await backend.dispose();
}
