import { createWebglBackend } from '@attnkit/webgl';

const backend = createWebglBackend();
await backend.init(); // rejects with code 'unavailable' (and why) where no GL kernel can run
console.log(backend.capabilities.engine); // "gpu.js WebGL2Kernel on ANGLE (... SwiftShader ...)"
const shape = { batch: 1, queryHeads: 8, kvHeads: 2, queryLength: 512, headDim: 64 };
const n = 512 * 64;
const q = new Float32Array(8 * n).fill(0.1),
  k = new Float32Array(2 * n).fill(0.2),
  v = new Float32Array(2 * n).fill(1);
const { output, lse } = await backend.attention({ q, k, v, shape }, { causal: true, returnLse: true });
console.log(output.length, lse.length);
await backend.dispose(); // awaits gpu.destroy(): kernels, textures and the context are freed
