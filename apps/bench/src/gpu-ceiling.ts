/**
 * The WGSL matmul ceiling of `--mode gpu`: a register-tiled f32 matmul (64 x 64 output tiles, 4 x 4
 * outputs per invocation, K in steps of 16 staged in workgroup memory), timed on the same device as
 * attnkit in the same run. It is a yardstick for what plain WGSL reaches on this adapter, not the
 * hardware's peak (no subgroup matrix ops, no f16, no tensor cores).
 */

import { signedUniform } from '@attnkit/conformance';

/** WebGPU's buffer usage and map-mode bits as numbers: Node (Dawn) has no `GPUBufferUsage` global unless installed. */
export const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const;
const MAP_READ_MODE = 0x1;

/** Output tile side and K step the kernel is written for; sizes must be multiples of {@link CEILING_TILE}. */
export const CEILING_TILE = 64;
const K_STEP = 16;

export const CEILING_SHADER = /* wgsl */ `
struct Dims { m: u32, n: u32, k: u32, pad: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
var<workgroup> as_: array<f32, ${K_STEP * CEILING_TILE}>;
var<workgroup> bs: array<f32, ${K_STEP * CEILING_TILE}>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row0 = wg.y * ${CEILING_TILE}u;
  let col0 = wg.x * ${CEILING_TILE}u;
  let t = lid.y * 16u + lid.x;
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < dims.k; k0 += ${K_STEP}u) {
    for (var i = 0u; i < 4u; i++) {
      let e = t + i * 256u;
      let m = e / ${K_STEP}u;
      let kk = e % ${K_STEP}u;
      as_[kk * ${CEILING_TILE}u + m] = A[(row0 + m) * dims.k + k0 + kk];
      let kb = e / ${CEILING_TILE}u;
      let n = e % ${CEILING_TILE}u;
      bs[kb * ${CEILING_TILE}u + n] = B[(k0 + kb) * dims.n + col0 + n];
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${K_STEP}u; kk++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        a[i] = as_[kk * ${CEILING_TILE}u + lid.y * 4u + i];
        b[i] = bs[kk * ${CEILING_TILE}u + lid.x * 4u + i];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i * 4u + j] = fma(a[i], b[j], acc[i * 4u + j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) {
      C[(row0 + lid.y * 4u + i) * dims.n + col0 + lid.x * 4u + j] = acc[i * 4u + j];
    }
  }
}
`;

/** One size of the ceiling: `n x n @ n x n`. */
export interface CeilingRow {
  n: number;
  /** Dispatches timed in one submission, and the time per dispatch. */
  dispatches: number;
  msPerDispatch: number;
  gflops: number;
  /** Largest |C - A@B| over the sampled entries against a float64 product (the kernel must be right to count). */
  checkedMaxError: number;
}

/**
 * Times the ceiling kernel at each size: `dispatches` back-to-back dispatches in one command buffer
 * (so per-submission latency is amortised), median of 3 submissions, after one warm-up. Checks 16
 * entries of C against a float64 product first.
 */
export async function measureCeiling(
  device: GPUDevice,
  n: number,
  targetMs: number,
  now: () => number,
): Promise<CeilingRow> {
  const module = device.createShaderModule({ code: CEILING_SHADER, label: 'gpu-check:ceiling' });
  const pipeline = await device.createComputePipelineAsync({
    layout: 'auto',
    compute: { module, entryPoint: 'main' },
  });
  const a = signedUniform(n * n, 1);
  const b = signedUniform(n * n, 2);
  const usage = USAGE.STORAGE | USAGE.COPY_DST | USAGE.COPY_SRC;
  const make = (data: Float32Array) => {
    const buffer = device.createBuffer({ size: data.byteLength, usage });
    device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    return buffer;
  };
  const bufA = make(a);
  const bufB = make(b);
  const bufC = device.createBuffer({ size: n * n * 4, usage });
  const uniform = device.createBuffer({ size: 16, usage: USAGE.UNIFORM | USAGE.COPY_DST });
  device.queue.writeBuffer(uniform, 0, new Uint32Array([n, n, n, 0]));
  const bind = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [uniform, bufA, bufB, bufC].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const submit = async (count: number) => {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    for (let i = 0; i < count; i++) pass.dispatchWorkgroups(n / CEILING_TILE, n / CEILING_TILE);
    pass.end();
    const start = now();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    return now() - start;
  };
  try {
    const once = await submit(1); // warm-up, and the size of one dispatch
    // check 16 entries against float64
    const read = device.createBuffer({ size: n * n * 4, usage: USAGE.MAP_READ | USAGE.COPY_DST });
    const copy = device.createCommandEncoder();
    copy.copyBufferToBuffer(bufC, 0, read, 0, n * n * 4);
    device.queue.submit([copy.finish()]);
    await read.mapAsync(MAP_READ_MODE);
    const c = new Float32Array(read.getMappedRange().slice(0));
    read.unmap();
    read.destroy();
    let checkedMaxError = 0;
    for (let s = 0; s < 16; s++) {
      const i = (s * 7919) % n;
      const j = (s * 104729) % n;
      let sum = 0;
      for (let k = 0; k < n; k++) sum += a[i * n + k] * b[k * n + j];
      checkedMaxError = Math.max(checkedMaxError, Math.abs(c[i * n + j] - sum));
    }
    const dispatches = Math.max(1, Math.min(50, Math.round(targetMs / Math.max(once, 0.01))));
    const times: number[] = [];
    for (let r = 0; r < 3; r++) times.push(await submit(dispatches));
    times.sort((x, y) => x - y);
    const msPerDispatch = times[1] / dispatches;
    return { n, dispatches, msPerDispatch, gflops: (2 * n * n * n) / (msPerDispatch * 1e6), checkedMaxError };
  } finally {
    for (const buffer of [bufA, bufB, bufC, uniform]) buffer.destroy();
  }
}
