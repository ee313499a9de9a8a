import { createWasmBackend } from '@attnkit/wasm';

const backend = createWasmBackend({ threads: 2 }); // default: 1
const shape = { batch: 1, queryHeads: 8, kvHeads: 2, queryLength: 1024, headDim: 64 };
const n = 1024 * 64;
const q = new Float32Array(8 * n).fill(0.1),
  k = new Float32Array(2 * n).fill(0.2),
  v = new Float32Array(2 * n).fill(1);
const { output, lse } = await backend.attention({ q, k, v, shape }, { causal: true, returnLse: true });
console.log(output.length, lse.length, backend.capabilities.threads, backend.capabilities.notes);
await backend.dispose(); // terminates the workers, drops the wasm memory
