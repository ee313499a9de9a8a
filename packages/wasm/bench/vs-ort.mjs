#!/usr/bin/env node

// @attnkit/wasm against onnxruntime-web 1.30's wasm backend, one process, same inputs, D = 64, f32.
// ORT gets two graphs built here in code and the faster one counts per size: the standard Attention op
// (opset 23, is_causal) and a plain MatMul -> Softmax -> MatMul graph (K given pre-transposed, the
// scale folded into Q, causal as an additive mask input). ORT runs with numThreads = 1.
//
//   pnpm --filter @attnkit/wasm build
//   node packages/wasm/bench/vs-ort.mjs [--sizes 1024,2048] [--heads 1,8] [--reps 5] [--clock cpu|wall]
//   node packages/wasm/bench/vs-ort.mjs --heads 8 --threads-only 1      # 1 vs 2 threads, wall clock
//
// Prints one line per measurement and a markdown table of medians and ratios. Each call is timed
// whole (the copy into wasm memory counted for attnkit, session.run for ORT), after two warm-up calls.

import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-web';
import { createWasmBackend } from '../dist/index.js';

const args = new Map();
for (let i = 2; i < process.argv.length; i += 2)
  args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const SIZES = (args.get('sizes') ?? '1024,2048,4096,8192').split(',').map(Number);
const HEADS = (args.get('heads') ?? '1,8').split(',').map(Number);
const REPS = Number(args.get('reps') ?? 5);
const CLOCK = args.get('clock') ?? 'cpu';
// `--threads-only 1`: only attnkit on 1 and 2 threads, wall clock (no ORT)
const THREADS_ONLY = args.has('threads-only');
const D = 64;

ort.env.wasm.numThreads = 1;
ort.env.wasm.simd = true;
ort.env.logLevel = 'error';

// ---- a minimal protobuf writer for ONNX ModelProto ----
const enc = new TextEncoder();
function varint(n) {
  const out = [];
  let v = BigInt(n);
  if (v < 0n) v += 1n << 64n;
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
const str = (field, s) => bytesField(field, [...enc.encode(s)]);
const int = (field, n) => [...key(field, 0), ...varint(n)];
const float = (field, f) => {
  const b = new Uint8Array(new Float32Array([f]).buffer);
  return [...key(field, 5), ...b];
};
const dims = (shape) =>
  bytesField(
    2,
    shape.flatMap((d) => bytesField(1, int(1, d))),
  );
const valueInfo = (field, name, shape) =>
  bytesField(field, [...str(1, name), ...bytesField(2, bytesField(1, [...int(1, 1), ...dims(shape)]))]);
const attrInt = (name, v) => bytesField(5, [...str(1, name), ...int(3, v), ...int(20, 2)]);
const attrFloat = (name, v) => bytesField(5, [...str(1, name), ...float(2, v), ...int(20, 1)]);
const node = (op, inputs, outputs, attrs = []) =>
  bytesField(1, [
    ...inputs.flatMap((n) => str(1, n)),
    ...outputs.flatMap((n) => str(2, n)),
    ...str(4, op),
    ...attrs.flat(),
  ]);
function model(opset, nodes, inputs, outputs) {
  const graph = [...nodes.flat(), ...str(2, 'g'), ...inputs.flat(), ...outputs.flat()];
  return new Uint8Array([
    ...int(1, 10),
    ...str(2, 'attnkit-bench'),
    ...bytesField(8, int(2, opset)),
    ...bytesField(7, graph),
  ]);
}

function attentionOpModel(H, N, causal) {
  const s = [1, H, N, D];
  return model(
    23,
    [
      node(
        'Attention',
        ['q', 'k', 'v'],
        ['y'],
        [attrInt('is_causal', causal ? 1 : 0), attrFloat('scale', 1 / Math.sqrt(D))],
      ),
    ],
    [valueInfo(11, 'q', s), valueInfo(11, 'k', s), valueInfo(11, 'v', s)],
    [valueInfo(12, 'y', s)],
  );
}

function matmulModel(H, N, causal) {
  const nodes = [node('MatMul', ['q', 'kt'], ['s'])];
  let logits = 's';
  if (causal) {
    nodes.push(node('Add', ['s', 'mask'], ['sm']));
    logits = 'sm';
  }
  nodes.push(node('Softmax', [logits], ['p'], [attrInt('axis', -1)]), node('MatMul', ['p', 'v'], ['y']));
  const inputs = [
    valueInfo(11, 'q', [1, H, N, D]),
    valueInfo(11, 'kt', [1, H, D, N]),
    valueInfo(11, 'v', [1, H, N, D]),
  ];
  if (causal) inputs.push(valueInfo(11, 'mask', [N, N]));
  return model(17, nodes, inputs, [valueInfo(12, 'y', [1, H, N, D])]);
}

function random(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Median milliseconds of `reps` calls after two warm-up calls. CLOCK=cpu (the
 * default) counts this process's CPU time, which other load on a shared machine barely moves; use
 * `--clock wall` on a quiet machine, and always for the thread-scaling column (CPU time cannot show it).
 */
async function time(fn, reps, clock = CLOCK) {
  // two warm-up calls: compilation, memory growth, and V8's tier-up from Liftoff to TurboFan
  await fn();
  await fn();
  const t = [];
  for (let i = 0; i < reps; i++) {
    if (clock === 'cpu') {
      const c0 = process.cpuUsage();
      await fn();
      const c = process.cpuUsage(c0);
      t.push((c.user + c.system) / 1000);
    } else {
      const t0 = performance.now();
      await fn();
      t.push(performance.now() - t0);
    }
  }
  return median(t);
}

async function ortTime(kind, H, N, causal, q, k, v, reps) {
  // 'MatMulPerHead': the H = 1 graph run once per head (its N x N scores fit where H of them do not)
  const perHead = kind === 'MatMulPerHead';
  const bytes =
    kind === 'Attention' ? attentionOpModel(H, N, causal) : matmulModel(perHead ? 1 : H, N, causal);
  let session;
  try {
    session = await ort.InferenceSession.create(bytes, {
      executionProviders: ['wasm'],
      graphOptimizationLevel: 'all',
    });
    const T = (data, shape) => new ort.Tensor('float32', data, shape);
    let feeds;
    if (kind === 'Attention') {
      feeds = { q: T(q, [1, H, N, D]), k: T(k, [1, H, N, D]), v: T(v, [1, H, N, D]) };
    } else {
      const scale = 1 / Math.sqrt(D);
      const qs = q.map((x) => x * scale);
      const kt = new Float32Array(H * N * D);
      for (let h = 0; h < H; h++)
        for (let j = 0; j < N; j++)
          for (let d = 0; d < D; d++) kt[(h * D + d) * N + j] = k[(h * N + j) * D + d];
      const mask = new Float32Array(causal ? N * N : 0);
      for (let i = 0; causal && i < N; i++) mask.fill(Number.NEGATIVE_INFINITY, i * N + i + 1, (i + 1) * N);
      if (perHead) {
        const n = N * D;
        const list = [];
        for (let h = 0; h < H; h++) {
          const one = {
            q: T(qs.subarray(h * n, (h + 1) * n), [1, 1, N, D]),
            kt: T(kt.subarray(h * n, (h + 1) * n), [1, 1, D, N]),
            v: T(v.subarray(h * n, (h + 1) * n), [1, 1, N, D]),
          };
          if (causal) one.mask = T(mask, [N, N]);
          list.push(one);
        }
        return await time(async () => {
          for (const one of list) await session.run(one);
        }, reps);
      }
      feeds = { q: T(qs, [1, H, N, D]), kt: T(kt, [1, H, D, N]), v: T(v, [1, H, N, D]) };
      if (causal) feeds.mask = T(mask, [N, N]);
    }
    return await time(() => session.run(feeds), reps);
  } catch (error) {
    // ORT's messages start with a long build path: keep the reason at the end
    return {
      error: String(error.message ?? error)
        .replace(/\s+/g, ' ')
        .slice(-90),
    };
  } finally {
    await session?.release();
  }
}

// `--ort-child KIND,H,N,causal,reps`: measure one ORT variant and print its JSON (the parent runs each
// in a fresh process: onnxruntime-web's wasm heap never shrinks, and after other runs' N x N tensors
// it may find no contiguous block for the next, failing with std::bad_alloc)
if (args.has('ort-child')) {
  const [kind, h, n, c, reps] = args.get('ort-child').split(',');
  const [H, N] = [Number(h), Number(n)];
  const result = await ortTime(
    kind,
    H,
    N,
    c === '1',
    random(H * N * D, 1),
    random(H * N * D, 2),
    random(H * N * D, 3),
    Number(reps),
  );
  process.stdout.write(JSON.stringify(result));
  process.exit(0);
}
function ortFresh(kind, H, N, causal, reps) {
  const out = execFileSync(
    process.execPath,
    [
      fileURLToPath(import.meta.url),
      '--clock',
      CLOCK,
      '--ort-child',
      `${kind},${H},${N},${causal ? 1 : 0},${reps}`,
    ],
    { encoding: 'utf8', maxBuffer: 1 << 20 },
  );
  return JSON.parse(out);
}

const rows = [];
const one = createWasmBackend({ threads: 1 });
const two = createWasmBackend({ threads: 2 });
await one.init();
await two.init();
console.log(
  `attnkit: ${one.capabilities.engine} / ${two.capabilities.engine}; ORT ${ort.env.versions?.web ?? '1.30'} wasm, numThreads 1`,
);
for (const H of [...HEADS].sort((a, b) => a - b)) {
  for (const N of [...SIZES].sort((a, b) => b - a)) {
    const q = random(H * N * D, 1);
    const k = random(H * N * D, 2);
    const v = random(H * N * D, 3);
    const reps = Math.max(1, Math.round(REPS * Math.min(1, (1024 * 1024) / (N * N * H)) * 4)) || 1;
    const r = Math.min(REPS, reps);
    for (const causal of [true, false]) {
      const shape = { batch: 1, queryHeads: H, queryLength: N, headDim: D };
      if (THREADS_ONLY) {
        const a1w = await time(() => one.attention({ q, k, v, shape }, { causal }), r, 'wall');
        const a2 = await time(() => two.attention({ q, k, v, shape }, { causal }), r, 'wall');
        const row = { H, N, causal, a1w, a2 };
        rows.push(row);
        console.log(JSON.stringify(row));
        continue;
      }
      const a1 = await time(() => one.attention({ q, k, v, shape }, { causal }), r);
      const a1w = H > 1 ? await time(() => one.attention({ q, k, v, shape }, { causal }), r, 'wall') : null;
      const a2 = H > 1 ? await time(() => two.attention({ q, k, v, shape }, { causal }), r, 'wall') : null;
      const oa = ortFresh('Attention', H, N, causal, r);
      // per head first: after a failed 2 GiB allocation ORT's wasm heap cannot fit even one head
      const oh = H > 1 ? ortFresh('MatMulPerHead', H, N, causal, r) : null;
      const om = ortFresh('MatMul', H, N, causal, r);
      const ortBest = Math.min(...[oa, om, oh].map((t) => (typeof t === 'number' ? t : Infinity)));
      const row = { H, N, causal, a1, a1w, a2, oa, om, oh, ortBest };
      rows.push(row);
      console.log(JSON.stringify(row));
    }
  }
}
await one.dispose();
await two.dispose();

rows.sort((a, b) => a.H - b.H || a.N - b.N || Number(b.causal) - Number(a.causal));
const f = (x) => (typeof x === 'number' ? x.toFixed(1) : x === null ? '-' : `fails (${x.error})`);
if (THREADS_ONLY) {
  console.log('\n| H | N | mask | attnkit 1T wall ms | attnkit 2T wall ms | 1T / 2T |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows)
    console.log(
      `| ${r.H} | ${r.N} | ${r.causal ? 'causal' : 'none'} | ${f(r.a1w)} | ${f(r.a2)} | ${(r.a1w / r.a2).toFixed(2)}x |`,
    );
  process.exit(0);
}
console.log(
  `\n| H | N | mask | attnkit 1T ms (${CLOCK}) | ORT Attention ms (${CLOCK}) | ORT MatMul graph ms (${CLOCK}) | ORT MatMul per head ms (${CLOCK}) | ORT best / attnkit 1T | attnkit 1T wall ms | attnkit 2T wall ms | 1T / 2T |`,
);
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.H} | ${r.N} | ${r.causal ? 'causal' : 'none'} | ${f(r.a1)} | ${f(r.oa)} | ${f(r.om)} | ${f(r.oh)} | ${(r.ortBest / r.a1).toFixed(2)}x | ${f(r.a1w)} | ${f(r.a2)} | ${r.a2 ? `${(r.a1w / r.a2).toFixed(2)}x` : '-'} |`,
  );
}
