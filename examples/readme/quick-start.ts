import { createWasmBackend } from '@attnkit/wasm';

const backend = createWasmBackend({ threads: 2 }); // or createCpuBackend(), createWebGpuBackend(), createWebglBackend()
const shape = { batch: 1, queryHeads: 8, kvHeads: 2, queryLength: 1024, headDim: 64 }; // GQA, self-attention
const q = new Float32Array(1 * 8 * 1024 * 64); // [B, Hq, Lq, D], row-major
const k = new Float32Array(1 * 2 * 1024 * 64); // [B, Hkv, Lk, D]
const v = new Float32Array(1 * 2 * 1024 * 64); // [B, Hkv, Lk, Dv]
const { output, lse } = await backend.attention({ q, k, v, shape }, { causal: true, returnLse: true });
console.log(backend.capabilities.engine, output.length, lse.length); // [B, Hq, Lq, Dv], [B, Hq, Lq]
await backend.dispose();
