import { createWebGpuBackend } from '@attnkit/webgpu';

const backend = createWebGpuBackend();
const shape = { batch: 1, queryHeads: 8, kvHeads: 2, queryLength: 512, headDim: 64 };
const q = new Float32Array(1 * 8 * 512 * 64).map(Math.random);
const k = new Float32Array(1 * 2 * 512 * 64).map(Math.random);
const v = new Float32Array(1 * 2 * 512 * 64).map(Math.random);
const w = new Float32Array(64 * 64).map(Math.random); // a [Dv, n] projection applied to every row

const [qb, kb, vb, wb] = await Promise.all([q, k, v, w].map((t) => backend.upload(t)));
const out = await backend.attentionBuffers({ q: qb, k: kb, v: vb, shape }, { causal: true });
const m = 8 * 512; // out.output is [B, Hq, Lq, Dv]: B*Hq*Lq rows of Dv = 64
const n = 64;
const projected = await backend.matmulBuffers({ a: out.output, b: wb, shape: { m, k: 64, n } });
const values = await backend.read(projected); // the only readback: projected.elements = m * n floats
for (const tensor of [qb, kb, vb, wb, out.output, projected]) backend.release(tensor); // back to the pool
console.log(values.length);
await backend.dispose(); // frees the pool (and would free any buffer not released)
