#!/usr/bin/env node

// Decode steps with a resident KV cache, @attnkit/wasm against onnxruntime's GroupQueryAttention: a
// thin wrapper over the bench's `--mode decode-cache` (apps/bench, benchmarks/src: one home for the
// workloads, the peers and the ONNX builder), narrowed to issue 12's bar sizes: B = 1, GQA 32/8,
// D = 128, Lk 4096, 8192, 32768; wasm 1 thread and all cores, their stateless calls, onnxruntime-web
// 1 thread and onnxruntime-node 1 thread. Any other bench option is passed through, e.g.
//
//   pnpm build && node packages/wasm/bench/decode.mjs [--sizes 4096..32768] [--budget 20] [--name wasm-decode]
//
// Results go where the bench writes them (bench-results/bench-decode-cache.*, or --name).

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../../../apps/bench/dist/cli.js', import.meta.url));
const defaults = {
  '--mode': 'decode-cache',
  '--heads': 'gqa',
  '--dims': '128',
  '--sizes': '4096,8192,32768',
  '--backends': 'wasm,ort-web-1t,ort-node',
};
const given = process.argv.slice(2);
const args = [...given];
for (const [flag, value] of Object.entries(defaults)) if (!given.includes(flag)) args.push(flag, value);
const result = spawnSync(process.execPath, [cli, ...args], { stdio: 'inherit' });
process.exit(result.status ?? 1);
