import { createWebGpuBackend } from '@attnkit/webgpu';

const backend = createWebGpuBackend(); // or createWebGpuBackend({ device }) with your own GPUDevice
const shape = { batch: 1, queryHeads: 8, kvHeads: 2, queryLength: 512, headDim: 64 };
const q = new Float32Array(1 * 8 * 512 * 64).map(Math.random);
const k = new Float32Array(1 * 2 * 512 * 64).map(Math.random);
const v = new Float32Array(1 * 2 * 512 * 64).map(Math.random);
const { output, lse } = await backend.attention({ q, k, v, shape }, { causal: true, returnLse: true });
console.log(backend.capabilities.engine, output.length, lse.length);
await backend.dispose(); // destroys every buffer it made, and the device only if it acquired it
