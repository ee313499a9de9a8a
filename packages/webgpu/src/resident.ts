import type { DeviceAttentionProblem, DeviceDtype, DeviceMatmulProblem } from '@attnkit/spec';
import { dtypeOf, snapshotOptions } from '@attnkit/spec';
import {
  bindAndDispatch,
  encodeAttention,
  encodeMatmul,
  packParams,
  uploadAttentionOptions,
} from './encode.js';
import { guarded } from './errors.js';
import { packedWords, packF16Rows, unpackF16 } from './f16.js';
import { holding, optionList, stillUsable, whenUsable } from './host.js';
import { F16_ROWS_BINDINGS, F16_ROWS_PARAM_FIELDS, F16_ROWS_PARAMS_BYTES } from './kernels/f16-rows.js';
import { attentionPipelines, F16_ROWS_WG, f16RowsPipeline, matmulPipeline } from './pipelines.js';
import { dispatchSize, planAttention } from './planning.js';
import { STORAGE_USAGE } from './pool.js';
import type { DeviceState, Runtime } from './state.js';
import { copyToStaging, readStaging, tensorBytes, uploadFloats, uploadUniform } from './transfer.js';
import type { GpuAttentionResult, GpuTensor } from './types.js';

// The device-resident path: tensors on the device in, backend tensors out (release them to the pool).
//
// Every call arrives through the spec's device gate (openDeviceGate): validated by the host calls'
// rules (each GpuTensor's element count for a length, its buffer checked by checkGpuTensor),
// capabilities checked, the backend initialised, tracked for dispose. Host arrays (upload's data,
// attention option tensors) are read before the call returns (see host.ts).

/** Attention on tensors already on the device; nothing is read back. */
export function attentionBuffers(
  rt: Runtime,
  problem: DeviceAttentionProblem<GpuTensor>,
): Promise<GpuAttentionResult> {
  const context = 'attentionBuffers';
  return whenUsable(rt, problem, snapshotOptions, async (s, p) => {
    const { batch: B, queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, keyLength: Lk } = p.shape;
    const { headDim: D, valueDim: Dv } = p.shape;
    const plan = planAttention(s, rt.workgroupSize, p.shape, p, p.layout, context);
    // Float16 tensors whose rows do not start on a word (odd head sizes) are first copied into
    // word-aligned rows, the layout the f16-storage kernels read: q and k for an odd D, v for an odd Dv.
    const f16 = p.precision === 'f16-storage';
    const padded = { q: f16 && D % 2 !== 0, k: f16 && D % 2 !== 0, v: f16 && Dv % 2 !== 0 };
    const padding = padded.q || padded.v;
    // Before the first await: the option tensors (host arrays) are copied to the device here.
    const optionBuffers = await guarded(s, context, () => uploadAttentionOptions(s, p, Hq));
    return holding(s, optionList(optionBuffers), async () => {
      const [pipelines, rowsPipeline] = await Promise.all([
        attentionPipelines(s, plan.variant, p.returnWeights),
        padding ? f16RowsPipeline(s) : null,
      ]);
      stillUsable(s, context);
      const { device, pool } = s;
      return guarded(s, context, () => {
        const encoder = device.createCommandEncoder();
        const temps: GPUBuffer[] = [];
        const rowsOf = (tensor: GpuTensor, pad: boolean, rows: number, dim: number): GPUBuffer => {
          if (!pad || rowsPipeline === null) return tensor.buffer;
          const out = encodeF16Rows(s, encoder, rowsPipeline, tensor.buffer, rows, dim, context);
          temps.push(...out.temps, out.rows);
          return out.rows;
        };
        const qkv = {
          q: rowsOf(p.q, padded.q, B * Hq * Lq, D),
          k: rowsOf(p.k, padded.k, B * Hkv * Lk, D),
          v: rowsOf(p.v, padded.v, B * Hkv * Lk, Dv),
        };
        const out = encodeAttention(s, encoder, plan, pipelines, qkv, optionBuffers, context);
        let lse: GPUBuffer | undefined;
        if (p.returnLse && out.rows !== null) {
          lse = pool.acquire(B * Hq * Lq * 4, STORAGE_USAGE);
          encoder.copyBufferToBuffer(out.rows, 0, lse, 0, B * Hq * Lq * 4);
        }
        device.queue.submit([encoder.finish()]);
        for (const buffer of [...out.temps, ...temps]) pool.release(buffer);
        if (out.rows !== null) pool.release(out.rows);
        const result: GpuAttentionResult = { output: { buffer: out.output, elements: B * Hq * Lq * Dv } };
        if (lse !== undefined) result.lse = { buffer: lse, elements: B * Hq * Lq };
        if (out.weights !== null) result.weights = { buffer: out.weights, elements: B * Hq * Lq * Lk };
        return result;
      });
    });
  });
}

/** `a @ b (+ bias)` on device tensors; returns a backend tensor. */
export function matmulBuffers(rt: Runtime, problem: DeviceMatmulProblem<GpuTensor>): Promise<GpuTensor> {
  const context = 'matmulBuffers';
  // No host arrays: nothing to copy while waiting for the device.
  return whenUsable(
    rt,
    problem,
    (p) => p,
    async (s, p) => {
      const pipeline = await matmulPipeline(s, p.bias !== null);
      stillUsable(s, context);
      const { device, pool } = s;
      return guarded(s, context, () => {
        const encoder = device.createCommandEncoder();
        const bias = p.bias === null ? null : p.bias.buffer;
        const out = encodeMatmul(s, encoder, pipeline, p.a.buffer, p.b.buffer, bias, p.shape, context);
        device.queue.submit([encoder.finish()]);
        for (const buffer of out.temps) pool.release(buffer);
        return { buffer: out.output, elements: p.shape.m * p.shape.n };
      });
    },
  );
}

/**
 * Copies a validated `Float32Array` into a new backend tensor (now, when the device is ready); as
 * float16, rounded on the host (`packF16Rows`, exact ties-to-even, where WGSL `pack2x16float`'s
 * rounding is the implementation's) into binary16 pairs, the layout the f16-storage kernels read.
 */
export function upload(rt: Runtime, data: Float32Array, dtype: DeviceDtype = 'float32'): Promise<GpuTensor> {
  return whenUsable(
    rt,
    data,
    (d) => d.slice(),
    async (s, d) =>
      guarded(s, 'upload', (): GpuTensor => {
        if (dtype === 'float32') return { buffer: uploadFloats(s, d), elements: d.length };
        // The packed words go up as raw bytes: a Float32Array view of them copies every bit pattern.
        const words = packF16Rows(d, 1, d.length);
        return { buffer: uploadFloats(s, new Float32Array(words.buffer)), elements: d.length, dtype };
      }),
  );
}

/** Reads a validated tensor's `elements` values back (float16 ones widened to float32, exactly). */
export function read(rt: Runtime, tensor: GpuTensor): Promise<Float32Array> {
  const context = 'read';
  return whenUsable(
    rt,
    tensor,
    (t) => t,
    async (s, t) => {
      if (t.elements === 0) return new Float32Array(0);
      const { device } = s;
      const dtype = dtypeOf(t);
      const staging = await guarded(s, context, () => {
        const encoder = device.createCommandEncoder();
        const staged = copyToStaging(s, encoder, t.buffer, tensorBytes(t.elements, dtype));
        device.queue.submit([encoder.finish()]);
        return [staged];
      });
      const [out] = await readStaging(s, context, staging);
      return dtype === 'float16' ? unpackF16(out, t.elements) : out;
    },
  );
}

/**
 * Encodes the padding of `rows` rows of `dim` float16 values (a flat tensor, two a word) into
 * word-aligned rows (kernels/f16-rows.ts), in a compute pass of its own before the attention's.
 * Returns the padded buffer and the uniform block, both for the caller to release after submitting.
 */
function encodeF16Rows(
  s: DeviceState,
  encoder: GPUCommandEncoder,
  pipeline: GPUComputePipeline,
  source: GPUBuffer,
  rows: number,
  dim: number,
  context: string,
): { rows: GPUBuffer; temps: GPUBuffer[] } {
  const words = rows * packedWords(dim);
  const target = s.pool.acquire(words * 4, STORAGE_USAGE);
  const groups = Math.ceil(words / F16_ROWS_WG);
  const [gx, gy] = dispatchSize(s, groups, context);
  const uniform = uploadUniform(
    s,
    packParams(F16_ROWS_PARAM_FIELDS, { rows, dim, total: groups, groupsX: gx }),
  );
  const pass = encoder.beginComputePass({ label: 'attnkit:f16-rows' });
  bindAndDispatch(
    s,
    pass,
    pipeline,
    F16_ROWS_BINDINGS,
    { buffer: uniform, bytes: F16_ROWS_PARAMS_BYTES },
    { SRC: source, DST: target },
    [gx, gy],
  );
  pass.end();
  return { rows: target, temps: [uniform] };
}
