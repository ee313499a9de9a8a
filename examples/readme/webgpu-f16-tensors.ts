import { createWebGpuBackend } from '@attnkit/webgpu';

const backend = createWebGpuBackend();
const shape = { batch: 1, queryHeads: 8, kvHeads: 2, queryLength: 256, headDim: 64 };
const q = new Float32Array(1 * 8 * 256 * 64).map(Math.random);
const k = new Float32Array(1 * 2 * 256 * 64).map(Math.random);
const v = new Float32Array(1 * 2 * 256 * 64).map(Math.random);

// binary16 on the device: half the bytes of float32, rounded to nearest even on upload
const [qh, kh, vh] = await Promise.all([q, k, v].map((t) => backend.upload(t, { dtype: 'float16' })));
const out = await backend.attentionBuffers(
  { q: qh, k: kh, v: vh, shape },
  { causal: true, precision: 'f16-storage' },
);
const values = await backend.read(out.output); // a float32 output, [B, Hq, Lq, Dv]
const widened = await backend.read(qh); // float16 values come back widened to float32, exactly
console.log(values.length, widened[0] === q[0] ? 'exact in binary16' : 'rounded to binary16');
for (const tensor of [qh, kh, vh, out.output]) backend.release(tensor);
await backend.dispose();
