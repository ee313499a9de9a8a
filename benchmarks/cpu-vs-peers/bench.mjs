// @attnkit/cpu against a naive JavaScript loop and TF.js's cpu backend: causal attention, one head,
// single thread, same inputs, median of several runs after warm-up. Run from the repository root
// after building @attnkit/cpu:  node benchmarks/cpu-vs-peers/bench.mjs [N=1024] [D=64] [runs=7]
import { createCpuBackend } from '@attnkit/cpu';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';

const N = Number(process.argv[2] ?? 1024);
const D = Number(process.argv[3] ?? 64);
const RUNS = Number(process.argv[4] ?? 7);
const WARMUP = 2;

function random(length, seed) {
  const out = new Float32Array(length);
  let s = seed >>> 0;
  for (let i = 0; i < length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}
const q = random(N * D, 1);
const k = random(N * D, 2);
const v = random(N * D, 3);
const scale = 1 / Math.sqrt(D);

/** The obvious implementation: for each query, a full row of scores (future keys set to -inf), softmax, weighted sum. */
function naive(boundLoop) {
  const out = new Float32Array(N * D);
  const scores = new Float32Array(N);
  for (let i = 0; i < N; i++) {
    const end = boundLoop ? i + 1 : N;
    let max = -Infinity;
    for (let j = 0; j < end; j++) {
      let dot = 0;
      for (let d = 0; d < D; d++) dot += q[i * D + d] * k[j * D + d];
      const s = j <= i ? dot * scale : -Infinity;
      scores[j] = s;
      if (s > max) max = s;
    }
    let sum = 0;
    for (let j = 0; j < end; j++) {
      scores[j] = Math.exp(scores[j] - max);
      sum += scores[j];
    }
    for (let j = 0; j < end; j++) {
      const w = scores[j] / sum;
      for (let d = 0; d < D; d++) out[i * D + d] += w * v[j * D + d];
    }
  }
  return out;
}

await tf.setBackend('cpu');
await tf.ready();
const tq = tf.tensor2d(q, [N, D]);
const tk = tf.tensor2d(k, [N, D]);
const tv = tf.tensor2d(v, [N, D]);
const maskData = new Float32Array(N * N);
for (let i = 0; i < N; i++) for (let j = i + 1; j < N; j++) maskData[i * N + j] = -1e9;
const mask = tf.tensor2d(maskData, [N, N]);
function tfjs() {
  return tf.tidy(() => {
    const scores = tf.add(tf.mul(tf.matMul(tq, tk, false, true), scale), mask);
    return tf.matMul(tf.softmax(scores), tv).dataSync();
  });
}

const backend = createCpuBackend();
const shape = { batch: 1, queryHeads: 1, queryLength: N, headDim: D };
const attnkit = async () => (await backend.attention({ q, k, v, shape }, { causal: true })).output;

async function measure(fn) {
  let result;
  for (let r = 0; r < WARMUP; r++) result = await fn();
  const times = [];
  const cpuTimes = [];
  for (let r = 0; r < RUNS; r++) {
    const start = performance.now();
    const cpuStart = process.cpuUsage();
    result = await fn();
    const cpu = process.cpuUsage(cpuStart);
    times.push(performance.now() - start);
    cpuTimes.push((cpu.user + cpu.system) / 1000);
  }
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return { ms: median(times), cpuMs: median(cpuTimes), result };
}

const rows = [
  ['@attnkit/cpu', attnkit],
  ['naive JS (full rows, masked)', () => naive(false)],
  ['naive JS (loop bound j <= i)', () => naive(true)],
  ['TF.js cpu 4.22', tfjs],
];
const measured = [];
for (const [name, fn] of rows) measured.push({ name, ...(await measure(fn)) });
const ours = measured[0];
console.log(`causal attention, N = ${N}, D = ${D}, one head, median of ${RUNS} runs after ${WARMUP} warm-up`);
console.log(`node ${process.version}, ${process.arch}`);
// CPU time beside wall time: on a shared machine the wall clock also measures the neighbours
console.log(
  '| implementation | median wall ms | @attnkit/cpu speed-up (wall) | median CPU ms | speed-up (CPU) | max abs diff vs @attnkit/cpu |',
);
console.log('|---|---:|---:|---:|---:|---:|');
for (const m of measured) {
  let diff = 0;
  for (let i = 0; i < ours.result.length; i++) diff = Math.max(diff, Math.abs(m.result[i] - ours.result[i]));
  console.log(
    `| ${m.name} | ${m.ms.toFixed(1)} | ${(m.ms / ours.ms).toFixed(2)}x | ${m.cpuMs.toFixed(1)} | ` +
      `${(m.cpuMs / ours.cpuMs).toFixed(2)}x | ${diff.toExponential(1)} |`,
  );
}
await backend.dispose();
tf.dispose([tq, tk, tv, mask]);
