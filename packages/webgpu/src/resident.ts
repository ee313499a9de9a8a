import { type AttentionOptions, isFloat32Array, resolveOptions, resolveShape } from '@attnkit/spec';
import { encodeAttention, encodeMatmul, uploadAttentionOptions } from './encode.js';
import { guarded, invalidArgument } from './errors.js';
import { copyOptions, holding, stillUsable, whenUsable } from './host.js';
import { attentionPipelines, matmulPipeline } from './pipelines.js';
import { checkElements, checkMatmul, planAttention } from './planning.js';
import { STORAGE_USAGE, Usage } from './pool.js';
import type { Runtime } from './state.js';
import { checkBuffer, copyToStaging, readStaging, uploadFloats } from './transfer.js';
import type { GpuAttentionInputs, GpuAttentionResult, GpuMatmulInputs } from './types.js';

// The device-resident path: caller buffers in, backend buffers out (release them to the pool).
//
// Every operation validates its arguments first, synchronously: bad input is `invalid-argument`
// naming the argument, and it acquires no device and allocates nothing. Host arrays (upload's data,
// attention option tensors) are read before the call returns (see host.ts).

/** Attention on buffers already on the device; nothing is read back. */
export function attentionBuffers(
  rt: Runtime,
  inputs: GpuAttentionInputs,
  options: AttentionOptions = {},
): Promise<GpuAttentionResult> {
  const context = 'attentionBuffers';
  try {
    if (typeof inputs !== 'object' || inputs === null)
      throw invalidArgument(context, 'inputs', 'an object { q, k, v, shape }', inputs);
    const shape = resolveShape(inputs.shape, context);
    const resolved = resolveOptions(options, shape, context);
    const layout = inputs.layout ?? 'bhld';
    if (layout !== 'bhld' && layout !== 'blhd')
      throw invalidArgument(context, 'layout', '"bhld" or "blhd"', layout);
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
    return whenUsable(rt, resolved, copyOptions, async (s, o) => {
      for (const [name, n] of [
        ['q', B * Hq * Lq * D],
        ['k', B * Hkv * Lk * D],
        ['v', B * Hkv * Lk * Dv],
        ['output', B * Hq * Lq * Dv],
      ] as const)
        checkElements(s, context, name, n);
      const plan = planAttention(s, rt.workgroupSize, shape, o, layout, context);
      // Before the first await: the option tensors (host arrays) are copied to the device here.
      const optionBuffers = await guarded(s, context, () => uploadAttentionOptions(s, o, Hq));
      const held = [optionBuffers.bias, optionBuffers.mask, optionBuffers.head].filter(
        (b): b is GPUBuffer => b !== null,
      );
      return holding(s, held, async () => {
        const pipelines = await attentionPipelines(s, plan.variant, o.returnWeights);
        stillUsable(s, context);
        const { device, pool } = s;
        return guarded(s, context, () => {
          const encoder = device.createCommandEncoder();
          const out = encodeAttention(s, encoder, plan, pipelines, { q, k, v }, optionBuffers, context);
          let lse: GPUBuffer | undefined;
          if (o.returnLse && out.rows !== null) {
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
      });
    });
  } catch (error) {
    return Promise.reject(error);
  }
}

/** `a @ b (+ bias)` on device buffers; returns a backend buffer. */
export function matmulBuffers(rt: Runtime, inputs: GpuMatmulInputs): Promise<GPUBuffer> {
  const context = 'matmulBuffers';
  try {
    if (typeof inputs !== 'object' || inputs === null)
      throw invalidArgument(context, 'inputs', 'an object { a, b, shape }', inputs);
    const shape = inputs.shape;
    if (typeof shape !== 'object' || shape === null)
      throw invalidArgument(context, 'shape', 'an object { m, k, n }', shape);
    for (const dim of ['m', 'k', 'n'] as const) {
      const value: unknown = shape[dim];
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1)
        throw invalidArgument(context, `shape.${dim}`, 'a positive integer', value);
    }
    const a = checkBuffer(context, 'a', inputs.a, shape.m * shape.k);
    const b = checkBuffer(context, 'b', inputs.b, shape.k * shape.n);
    const bias = inputs.bias === undefined ? null : checkBuffer(context, 'bias', inputs.bias, shape.n);
    // No host arrays: nothing to copy while waiting for the device.
    return whenUsable(
      rt,
      null,
      () => null,
      async (s) => {
        checkMatmul(s, context, shape);
        const pipeline = await matmulPipeline(s, bias !== null);
        stillUsable(s, context);
        const { device, pool } = s;
        return guarded(s, context, () => {
          const encoder = device.createCommandEncoder();
          const out = encodeMatmul(s, encoder, pipeline, a, b, bias, shape, context);
          device.queue.submit([encoder.finish()]);
          for (const buffer of out.temps) pool.release(buffer);
          return out.output;
        });
      },
    );
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Copies a `Float32Array` into a new backend buffer (now, when the device is ready). */
export function upload(rt: Runtime, data: Float32Array): Promise<GPUBuffer> {
  if (!isFloat32Array(data)) return Promise.reject(invalidArgument('upload', 'data', 'a Float32Array', data));
  return whenUsable(
    rt,
    data,
    (d) => d.slice(),
    async (s, d) => {
      checkElements(s, 'upload', 'data', d.length);
      return guarded(s, 'upload', () => uploadFloats(s, d));
    },
  );
}

/** Reads `elements` floats from the start of a buffer. */
export function read(rt: Runtime, buffer: GPUBuffer, elements: number): Promise<Float32Array> {
  const context = 'read';
  try {
    if (typeof elements !== 'number' || !Number.isInteger(elements) || elements < 0)
      throw invalidArgument(context, 'elements', 'an integer >= 0', elements);
    // Read back through a copy: the buffer must be a copy source.
    checkBuffer(context, 'buffer', buffer, elements, Usage.COPY_SRC);
    return whenUsable(
      rt,
      null,
      () => null,
      async (s) => {
        if (elements === 0) return new Float32Array(0);
        const { device } = s;
        const staging = await guarded(s, context, () => {
          const encoder = device.createCommandEncoder();
          const staged = copyToStaging(s, encoder, buffer, elements * 4);
          device.queue.submit([encoder.finish()]);
          return [staged];
        });
        const [out] = await readStaging(s, context, staging);
        return out;
      },
    );
  } catch (error) {
    return Promise.reject(error);
  }
}
