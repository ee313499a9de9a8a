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
//
// `--ort web,node`: also onnxruntime-web's wasm backend and onnxruntime-node, 1 thread each, on one
// com.microsoft GroupQueryAttention node (past_key/past_value buffers of Lk tokens holding Lk - 1,
// seqlens_k = Lk - 1, total_sequence_length = Lk, one new token): ORT's own decode op, its step = session.run with those feeds.
// onnxruntime-node is resolved from the benchmarks workspace package (where it is a dependency).

import { createRequire } from 'node:module';
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
const ORT = (args.get('ort') ?? '').split(',').filter(Boolean);
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

// ---- a minimal protobuf writer for one GroupQueryAttention ModelProto ----
const enc = new TextEncoder();
function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
}
const key = (field, wire) => varint((field << 3) | wire);
const bytesField = (field, bytes) => [...key(field, 2), ...varint(bytes.length), ...bytes];
const str = (field, text) => bytesField(field, [...enc.encode(text)]);
const int = (field, n) => [...key(field, 0), ...varint(n)];
const dims = (shape) =>
  bytesField(
    2,
    shape.flatMap((d) => bytesField(1, int(1, d))),
  );
/** elem 1 = float32, 6 = int32 */
const valueInfo = (field, name, elem, shape) =>
  bytesField(field, [...str(1, name), ...bytesField(2, bytesField(1, [...int(1, elem), ...dims(shape)]))]);
const attrInt = (name, v) => bytesField(5, [...str(1, name), ...int(3, v), ...int(20, 2)]);

function gqaModel(past) {
  const gqa = bytesField(1, [
    ...['q', 'k', 'v', 'past_key', 'past_value', 'seqlens_k', 'total'].flatMap((n) => str(1, n)),
    ...['y', 'present_key', 'present_value'].flatMap((n) => str(2, n)),
    ...str(4, 'GroupQueryAttention'),
    ...str(7, 'com.microsoft'),
    ...attrInt('num_heads', HQ),
    ...attrInt('kv_num_heads', HKV),
  ]);
  const inputs = [
    valueInfo(11, 'q', 1, [B, 1, HQ * D]),
    valueInfo(11, 'k', 1, [B, 1, HKV * D]),
    valueInfo(11, 'v', 1, [B, 1, HKV * D]),
    valueInfo(11, 'past_key', 1, [B, HKV, past, D]),
    valueInfo(11, 'past_value', 1, [B, HKV, past, D]),
    valueInfo(11, 'seqlens_k', 6, [B]),
    valueInfo(11, 'total', 6, []),
  ];
  const outputs = [
    valueInfo(12, 'y', 1, [B, 1, HQ * D]),
    valueInfo(12, 'present_key', 1, [B, HKV, past, D]),
    valueInfo(12, 'present_value', 1, [B, HKV, past, D]),
  ];
  const graph = [...gqa, ...str(2, 'g'), ...inputs.flat(), ...outputs.flat()];
  return new Uint8Array([
    ...int(1, 10),
    ...str(2, 'attnkit-bench'),
    ...bytesField(8, int(2, 17)),
    ...bytesField(8, [...str(1, 'com.microsoft'), ...int(2, 1)]),
    ...bytesField(7, graph),
  ]);
}

async function loadOrt(kind) {
  if (kind === 'web') {
    const ort = await import('onnxruntime-web');
    ort.env.wasm.numThreads = 1;
    ort.env.logLevel = 'error';
    return { ort, options: { executionProviders: ['wasm'] } };
  }
  const require = createRequire(new URL('../../../benchmarks/package.json', import.meta.url));
  const ort = require('onnxruntime-node');
  return { ort, options: { executionProviders: ['cpu'], intraOpNumThreads: 1, interOpNumThreads: 1 } };
}

async function ortStep(kind, Lk) {
  const { ort, options } = await loadOrt(kind);
  // ORT's GQA takes past as a buffer of the full length (present has its shape): Lk - 1 valid tokens
  const past = Lk;
  const session = await ort.InferenceSession.create(gqaModel(past), {
    graphOptimizationLevel: 'all',
    ...options,
  });
  const T = (data, shape) => new ort.Tensor(data instanceof Int32Array ? 'int32' : 'float32', data, shape);
  const feeds = {
    q: T(random(B * HQ * D, 5), [B, 1, HQ * D]),
    k: T(random(B * HKV * D, 3), [B, 1, HKV * D]),
    v: T(random(B * HKV * D, 4), [B, 1, HKV * D]),
    past_key: T(random(B * HKV * past * D, 1), [B, HKV, past, D]),
    past_value: T(random(B * HKV * past * D, 2), [B, HKV, past, D]),
    seqlens_k: T(new Int32Array([Lk - 1]), [B]),
    total: T(new Int32Array([Lk]), []),
  };
  const times = [];
  for (let step = 0; step < STEPS + 3; step++) {
    const t0 = clock();
    const out = await session.run(feeds);
    if (out.y.data.length !== B * HQ * D) throw new Error('bad ORT output');
    const t1 = clock();
    if (step >= 3) times.push(t1 - t0);
  }
  await session.release?.();
  return median(times);
}

const results = new Map();
for (const kind of ORT) {
  for (const Lk of SIZES) {
    try {
      const ms = await ortStep(kind, Lk);
      results.set(`ort-${kind}:${Lk}`, ms);
      console.log(`onnxruntime-${kind} GQA  Lk ${Lk}  ${ms.toFixed(3)} ms/step`);
    } catch (error) {
      console.log(`onnxruntime-${kind} GQA  Lk ${Lk}  failed: ${String(error).slice(-300)}`);
    }
  }
}
// Every thread count gets its own backend and cache; their steps alternate (1t, 2t, 1t, ...) so that
// load from elsewhere on a shared machine hits each alike and the ratio is fair.
const backends = [];
for (const threads of THREADS) {
  const backend = createWasmBackend({ threads });
  await backend.init();
  backends.push({ threads, backend });
}
for (const Lk of SIZES) {
  const prefill = Lk - 1;
  const runs = [];
  for (const { threads, backend } of backends) {
    const cache = await backend.createKVCache({ batch: B, kvHeads: HKV, headDim: D, capacity: Lk });
    await cache.append({
      k: random(B * HKV * prefill * D, 1),
      v: random(B * HKV * prefill * D, 2),
      tokens: prefill,
    });
    runs.push({ threads, cache, times: [] });
  }
  const k = random(B * HKV * D, 3);
  const v = random(B * HKV * D, 4);
  const q = random(B * HQ * D, 5);
  for (let step = 0; step < STEPS + 3; step++) {
    for (const run of runs) {
      const t0 = clock();
      await run.cache.append({ k, v, tokens: 1 });
      const { output } = await run.cache.attention({ q, queryHeads: HQ, queryLength: 1 }, { causal: true });
      if (output.length !== B * HQ * D) throw new Error('bad output');
      const t1 = clock();
      await run.cache.truncate(prefill);
      if (step >= 3) run.times.push(t1 - t0);
    }
  }
  for (const run of runs) {
    const ms = median(run.times);
    results.set(`${run.threads}:${Lk}`, ms);
    console.log(`threads ${run.threads}  Lk ${Lk}  ${ms.toFixed(3)} ms/step`);
    await run.cache.dispose();
  }
}
for (const { backend } of backends) await backend.dispose();

const cell = (x) => x?.toFixed(3) ?? '-';
const ratio = (a, b) => (a !== undefined && b !== undefined ? (a / b).toFixed(2) : '-');
console.log(`\nclock: ${CLOCK}`);
console.log(
  '| Lk | wasm 1t | wasm 2t | 2t speedup | ort-web 1t | ort-web / wasm 1t | ort-node 1t | ort-node / wasm 1t |',
);
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const Lk of SIZES) {
  const one = results.get(`1:${Lk}`);
  const two = results.get(`2:${Lk}`);
  const web = results.get(`ort-web:${Lk}`);
  const nodeOrt = results.get(`ort-node:${Lk}`);
  console.log(
    `| ${Lk} | ${cell(one)} | ${cell(two)} | ${ratio(one, two)} | ${cell(web)} | ${ratio(web, one)} | ${cell(nodeOrt)} | ${ratio(nodeOrt, one)} |`,
  );
}
