import {
  type AttentionOptions,
  AttnkitError,
  describeValue,
  resolveOptions,
  resolveShape,
} from '@attnkit/spec';
import { encodeAttention, encodeMatmul } from './encode.js';
import { guarded } from './errors.js';
import { attentionPipelines, matmulPipeline } from './pipelines.js';
import { checkElements, checkMatmul, planAttention } from './planning.js';
import { STORAGE_USAGE } from './pool.js';
import type { Runtime } from './state.js';
import { checkBuffer, copyToStaging, readStaging, uploadFloats } from './transfer.js';
import type { GpuAttentionInputs, GpuAttentionResult, GpuMatmulInputs } from './types.js';

// The device-resident path: caller buffers in, backend buffers out (release them to the pool).

/** Attention on buffers already on the device; nothing is read back. */
export async function attentionBuffers(
  rt: Runtime,
  inputs: GpuAttentionInputs,
  options: AttentionOptions = {},
): Promise<GpuAttentionResult> {
  await rt.live();
  const context = 'attentionBuffers';
  if (typeof inputs !== 'object' || inputs === null) {
    throw new AttnkitError(
      'invalid-argument',
      `${context}: inputs must be an object, got ${describeValue(inputs)}`,
      {
        argument: 'inputs',
        expected: 'an object { q, k, v, shape }',
        actual: describeValue(inputs),
      },
    );
  }
  const shape = resolveShape(inputs.shape, context);
  const resolved = resolveOptions(options, shape, context);
  const layout = inputs.layout ?? 'bhld';
  if (layout !== 'bhld' && layout !== 'blhd') {
    throw new AttnkitError(
      'invalid-argument',
      `${context}: layout must be "bhld" or "blhd", got ${describeValue(layout)}`,
      { argument: 'layout', expected: '"bhld" or "blhd"', actual: describeValue(layout) },
    );
  }
  const {
    batch: B,
    queryHeads: Hq,
    kvHeads: Hkv,
    queryLength: Lq,
    keyLength: Lk,
    headDim: D,
    valueDim: Dv,
  } = shape;
  const q = checkBuffer(context, 'q', inputs.q, B * Hq * Lq * D);
  const k = checkBuffer(context, 'k', inputs.k, B * Hkv * Lk * D);
  const v = checkBuffer(context, 'v', inputs.v, B * Hkv * Lk * Dv);
  for (const [name, n] of [
    ['q', B * Hq * Lq * D],
    ['k', B * Hkv * Lk * D],
    ['v', B * Hkv * Lk * Dv],
    ['output', B * Hq * Lq * Dv],
  ] as const)
    checkElements(rt.ready(), context, name, n);
  const plan = planAttention(rt.ready(), rt.workgroupSize, shape, resolved, layout, context);
  const pipelines = await attentionPipelines(rt.ready(), plan.variant, resolved.returnWeights);
  const s = rt.ready();
  const { device, pool } = s;
  return guarded(s, context, () => {
    const encoder = device.createCommandEncoder();
    const out = encodeAttention(s, encoder, plan, pipelines, { q, k, v }, context);
    let lse: GPUBuffer | undefined;
    if (resolved.returnLse && out.rows !== null) {
      lse = pool.acquire(B * Hq * Lq * 4, STORAGE_USAGE);
      encoder.copyBufferToBuffer(out.rows, 0, lse, 0, B * Hq * Lq * 4);
    }
    device.queue.submit([encoder.finish()]);
    for (const buffer of out.temps) pool.release(buffer);
    if (out.rows !== null) pool.release(out.rows);
    const result: GpuAttentionResult = { output: out.output };
    if (lse !== undefined) result.lse = lse;
    if (out.weights !== null) result.weights = out.weights;
    return result;
  });
}

/** `a @ b (+ bias)` on device buffers; returns a backend buffer. */
export async function matmulBuffers(rt: Runtime, inputs: GpuMatmulInputs): Promise<GPUBuffer> {
  await rt.live();
  const context = 'matmulBuffers';
  const shape = inputs?.shape;
  for (const dim of ['m', 'k', 'n'] as const) {
    const value: unknown = shape?.[dim];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
      throw new AttnkitError(
        'invalid-argument',
        `${context}: shape.${dim} must be a positive integer, got ${describeValue(value)}`,
        { argument: `shape.${dim}`, expected: 'a positive integer', actual: describeValue(value) },
      );
    }
  }
  const a = checkBuffer(context, 'a', inputs.a, shape.m * shape.k);
  const b = checkBuffer(context, 'b', inputs.b, shape.k * shape.n);
  const bias = inputs.bias === undefined ? null : checkBuffer(context, 'bias', inputs.bias, shape.n);
  checkMatmul(rt.ready(), context, shape);
  const pipeline = await matmulPipeline(rt.ready(), bias !== null);
  const s = rt.ready();
  const { device, pool } = s;
  return guarded(s, context, () => {
    const encoder = device.createCommandEncoder();
    const out = encodeMatmul(s, encoder, pipeline, a, b, bias, shape, context);
    device.queue.submit([encoder.finish()]);
    for (const buffer of out.temps) pool.release(buffer);
    return out.output;
  });
}

/** Copies a `Float32Array` into a new backend buffer. */
export async function upload(rt: Runtime, data: Float32Array): Promise<GPUBuffer> {
  await rt.live();
  if (Object.prototype.toString.call(data) !== '[object Float32Array]') {
    throw new AttnkitError(
      'invalid-argument',
      `upload: data must be a Float32Array, got ${describeValue(data)}`,
      {
        argument: 'data',
        expected: 'a Float32Array',
        actual: describeValue(data),
      },
    );
  }
  checkElements(rt.ready(), 'upload', 'data', data.length);
  const s = rt.ready();
  return guarded(s, 'upload', () => uploadFloats(s, data));
}

/** Reads `elements` floats from the start of a buffer. */
export async function read(rt: Runtime, buffer: GPUBuffer, elements: number): Promise<Float32Array> {
  await rt.live();
  const context = 'read';
  if (!Number.isInteger(elements) || elements < 0) {
    throw new AttnkitError(
      'invalid-argument',
      `${context}: elements must be an integer >= 0, got ${elements}`,
      {
        argument: 'elements',
        expected: 'an integer >= 0',
        actual: describeValue(elements),
      },
    );
  }
  checkBuffer(context, 'buffer', buffer, elements);
  if (elements === 0) return new Float32Array(0);
  const s = rt.ready();
  const { device } = s;
  const staging = await guarded(s, context, () => {
    const encoder = device.createCommandEncoder();
    const read = copyToStaging(s, encoder, buffer, elements * 4);
    device.queue.submit([encoder.finish()]);
    return [read];
  });
  const [out] = await readStaging(rt.ready(), context, staging);
  return out;
}
