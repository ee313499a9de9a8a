import {
  type AttentionProblem,
  type AttentionResult,
  type LayerProblem,
  type MatmulProblem,
  shapeSymbols,
  snapshotAttentionProblem,
  snapshotLayerProblem,
  snapshotMatmulProblem,
} from '@attnkit/spec';
import { encodeAttention, encodeMatmul, type OptionBuffers, uploadAttentionOptions } from './encode.js';
import { deviceError, guarded, invalidArgument } from './errors.js';
import { packF16Rows } from './f16.js';
import { attentionPipelines, matmulPipeline } from './pipelines.js';
import { planAttention } from './planning.js';
import type { DeviceState, Runtime } from './state.js';
import { copyToStaging, readStaging, type Staged, uploadFloats, uploadWords } from './transfer.js';

// The host-array path: inputs uploaded from Float32Arrays, results read back in one submission.
//
// Inputs are read before the call returns: the spec gate calls an initialised backend in the caller's
// tick, and every operation here uploads the caller's arrays (queue.writeBuffer copies at call time)
// before its first await. When the device cannot be used right now (lost, being replaced, or not yet
// initialised) the arrays are copied instead, then uploaded once it can. Either way a caller who
// writes into (or transfers) an input right after the call, without awaiting, does not change it.

/**
 * Calls `run` now when the device is usable (its synchronous part reads the caller's arrays), else on
 * `copy` of the problem, made now, once `rt.live()` has the device back.
 */
export function whenUsable<P, R>(
  rt: Runtime,
  problem: P,
  copy: (problem: P) => P,
  run: (s: DeviceState, problem: P) => Promise<R>,
): Promise<R> {
  try {
    const s = rt.usable();
    if (s !== null) return run(s, problem);
    const copied = copy(problem);
    return rt.live().then(() => run(rt.ready(), copied));
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Rejects with `device` when the device this call started on was lost while it waited. */
export function stillUsable(s: DeviceState, context: string): void {
  if (s.lost !== null)
    throw deviceError(`${context}: the GPU device was lost (${s.lost.reason}): ${s.lost.message}`);
}

/**
 * Runs the rest of a call that holds `held` (its uploaded inputs) and gives them back to the pool
 * when it ends, whether it succeeded or failed: released once, here, never also inside an encode, so
 * a buffer that another call has meanwhile taken from the pool is never released twice.
 */
export async function holding<T>(s: DeviceState, held: GPUBuffer[], work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } finally {
    for (const buffer of held) s.pool.release(buffer);
  }
}

/**
 * Rejects an input whose length changed after validation (its buffer transferred or resized by the
 * caller before the call read it): uploading it would leave stale pool contents in its place.
 */
export function intact(
  context: string,
  argument: string,
  array: ArrayBufferView | null,
  length: number,
): void {
  if (array !== null && (array as Float32Array).length !== length)
    throw invalidArgument(
      context,
      `${argument}.length`,
      `${length}, as validated (the array was transferred or resized before the call read it)`,
      (array as Float32Array).length,
    );
}

export function optionList(o: OptionBuffers): GPUBuffer[] {
  return [o.bias, o.mask, o.head].filter((b): b is GPUBuffer => b !== null);
}

/** Rejects option arrays (keyMask, ALiBi slopes, sinks, bias) whose length changed after validation. */
export function intactOptions(
  context: string,
  o: Pick<AttentionProblem, 'keyMask' | 'alibiSlopes' | 'sinks' | 'bias'>,
  batch: number,
  keyLength: number,
  queryHeads: number,
): void {
  intact(context, 'options.keyMask', o.keyMask, batch * keyLength);
  intact(context, 'options.alibiSlopes', o.alibiSlopes, queryHeads);
  intact(context, 'options.sinks', o.sinks, queryHeads);
  if (o.bias !== null) {
    const [b0, b1, b2, b3] = o.bias.shape;
    intact(context, 'options.bias.data', o.bias.data, b0 * b1 * b2 * b3);
  }
}

/** The forward's optional outputs (row statistics, weights) that it took from the pool. */
function attentionExtras(out: { rows: GPUBuffer | null; weights: GPUBuffer | null }): GPUBuffer[] {
  return [out.rows, out.weights].filter((b): b is GPUBuffer => b !== null);
}

/** What a host-array call's encode step leaves: staging copies to read back, buffers to give back. */
export interface Encoded {
  reads: Staged[];
  /** Buffers the encode took from the pool (outputs, temporaries), released once it is submitted. */
  made: GPUBuffer[];
}

/**
 * The rest of a host-array call once its inputs are uploaded, the same for every operation: holds
 * `held` (see {@link holding}) while the call's `pipelines` compile, checks the device survived the
 * wait, records `encode` into one command encoder and submits it inside one {@link guarded} scope,
 * gives back what the encode made, then reads the staging copies back.
 */
export async function encodeAndRead<T>(
  s: DeviceState,
  context: string,
  held: GPUBuffer[],
  pipelines: () => Promise<T>,
  encode: (encoder: GPUCommandEncoder, pipelines: T) => Encoded,
): Promise<Float32Array[]> {
  const staging = await holding(s, held, async () => {
    const ready = await pipelines();
    stillUsable(s, context);
    return guarded(s, context, () => {
      const encoder = s.device.createCommandEncoder();
      const { reads, made } = encode(encoder, ready);
      s.device.queue.submit([encoder.finish()]);
      // The queue orders later writes after this submission, so these can be reused at once (the
      // inputs too, by `holding`, once this call's scopes are popped).
      for (const buffer of made) s.pool.release(buffer);
      return reads;
    });
  });
  return readStaging(s, context, staging);
}

/** Attention on host arrays: upload, the fused kernel, one readback. */
export function attention(rt: Runtime, problem: AttentionProblem): Promise<AttentionResult> {
  return whenUsable(rt, problem, snapshotAttentionProblem, (s, p) => attentionOn(rt, s, p));
}

async function attentionOn(rt: Runtime, s: DeviceState, problem: AttentionProblem): Promise<AttentionResult> {
  const context = 'attention';
  const plan = planAttention(s, rt.workgroupSize, problem.shape, problem, 'bhld', context);
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(problem.shape);
  intact(context, 'q', problem.q, B * Hq * Lq * D);
  intact(context, 'k', problem.k, B * Hkv * Lk * D);
  intact(context, 'v', problem.v, B * Hkv * Lk * Dv);
  intactOptions(context, problem, B, Lk, Hq);
  // f16 storage: rounded to binary16 pairs on the host (src/f16.ts), half the bytes up and on the device.
  const upload = (data: Float32Array, rows: number, dim: number) =>
    problem.precision === 'f16-storage'
      ? uploadWords(s, packF16Rows(data, rows, dim))
      : uploadFloats(s, data);
  // Before the first await: the caller's arrays are copied to the device here.
  const uploading = guarded(s, context, () => ({
    q: upload(problem.q, B * Hq * Lq, D),
    k: upload(problem.k, B * Hkv * Lk, D),
    v: upload(problem.v, B * Hkv * Lk, Dv),
    options: uploadAttentionOptions(s, problem, problem.shape.queryHeads),
  }));
  const inputs = await uploading;
  const held = [inputs.q, inputs.k, inputs.v, ...optionList(inputs.options)];
  const [output, ...rest] = await encodeAndRead(
    s,
    context,
    held,
    () => attentionPipelines(s, plan.variant, problem.returnWeights),
    (encoder, pipelines) => {
      const out = encodeAttention(s, encoder, plan, pipelines, inputs, inputs.options, context);
      const reads = [copyToStaging(s, encoder, out.output, B * Hq * Lq * Dv * 4)];
      if (problem.returnLse && out.rows !== null)
        reads.push(copyToStaging(s, encoder, out.rows, B * Hq * Lq * 4));
      if (out.weights !== null) reads.push(copyToStaging(s, encoder, out.weights, B * Hq * Lq * Lk * 4));
      return { reads, made: [out.output, ...out.temps, ...attentionExtras(out)] };
    },
  );
  const result: AttentionResult = { output };
  if (problem.returnLse) result.lse = rest.shift();
  if (problem.returnWeights) result.weights = rest.shift();
  return result;
}

/** `a @ b (+ bias)` on host arrays. */
export function matmul(rt: Runtime, problem: MatmulProblem): Promise<Float32Array> {
  return whenUsable(rt, problem, snapshotMatmulProblem, (s, p) => matmulOn(s, p));
}

async function matmulOn(s: DeviceState, problem: MatmulProblem): Promise<Float32Array> {
  const context = 'matmul';
  const { m, k, n } = problem.shape;
  intact(context, 'a', problem.a, m * k);
  intact(context, 'b', problem.b, k * n);
  intact(context, 'bias', problem.bias, n);
  const inputs = await guarded(s, context, () => ({
    a: uploadFloats(s, problem.a),
    b: uploadFloats(s, problem.b),
    bias: problem.bias === null ? null : uploadFloats(s, problem.bias),
  }));
  const held = [inputs.a, inputs.b, ...(inputs.bias === null ? [] : [inputs.bias])];
  const [output] = await encodeAndRead(
    s,
    context,
    held,
    () => matmulPipeline(s, inputs.bias !== null),
    (encoder, pipeline) => {
      const out = encodeMatmul(s, encoder, pipeline, inputs.a, inputs.b, inputs.bias, problem.shape, context);
      const read = copyToStaging(s, encoder, out.output, problem.shape.m * problem.shape.n * 4);
      return { reads: [read], made: [out.output, ...out.temps] };
    },
  );
  return output;
}

/**
 * The multi-head attention layer (the gate's `layer`, on a validated problem that fits the
 * capabilities): every projection and the attention on the device, q/k/v and the attention output
 * kept in `blhd`, the layout a projection writes, so nothing is transposed; one readback.
 */
export function layer(rt: Runtime, problem: LayerProblem): Promise<AttentionResult> {
  return whenUsable(rt, problem, snapshotLayerProblem, (s, p) => layerOn(rt, s, p));
}

async function layerOn(rt: Runtime, s: DeviceState, problem: LayerProblem): Promise<AttentionResult> {
  const context = 'multiHeadAttention';
  const { options: resolved, attentionShape: shape } = problem;
  const { B, Lq, Lk, Hq, Hkv, D, Dv } = shapeSymbols(problem.shape);
  const M = problem.shape.modelDim;
  const plan = planAttention(s, rt.workgroupSize, shape, resolved, 'blhd', context);
  const w = problem.weights;
  // Before the first await: every host array of the layer is copied to the device here.
  const up = await guarded(s, context, () => {
    const one = (data: Float32Array | null) => (data === null ? null : uploadFloats(s, data));
    const x = uploadFloats(s, problem.x);
    return {
      x,
      source: problem.context === null ? x : uploadFloats(s, problem.context),
      wq: uploadFloats(s, w.wq),
      wk: uploadFloats(s, w.wk),
      wv: uploadFloats(s, w.wv),
      wo: uploadFloats(s, w.wo),
      bq: one(w.bq),
      bk: one(w.bk),
      bv: one(w.bv),
      bo: one(w.bo),
      options: uploadAttentionOptions(s, resolved, Hq),
    };
  });
  const held = [
    ...new Set(
      [
        up.x,
        up.source,
        up.wq,
        up.wk,
        up.wv,
        up.wo,
        up.bq,
        up.bk,
        up.bv,
        up.bo,
        ...optionList(up.options),
      ].filter((b): b is GPUBuffer => b !== null),
    ),
  ];
  const [output, ...rest] = await encodeAndRead(
    s,
    context,
    held,
    () =>
      Promise.all([
        attentionPipelines(s, plan.variant, resolved.returnWeights),
        matmulPipeline(s, true),
        matmulPipeline(s, false),
      ]),
    (encoder, [pipelines, mmBias, mmPlain]) => {
      const made: GPUBuffer[] = [];
      const project = (
        a: GPUBuffer,
        rows: number,
        weight: GPUBuffer,
        n: number,
        k: number,
        bias: GPUBuffer | null,
      ) => {
        const out = encodeMatmul(
          s,
          encoder,
          bias === null ? mmPlain : mmBias,
          a,
          weight,
          bias,
          { m: rows, k, n },
          context,
        );
        made.push(out.output, ...out.temps);
        return out.output;
      };
      const q = project(up.x, B * Lq, up.wq, Hq * D, M, up.bq);
      const k = project(up.source, B * Lk, up.wk, Hkv * D, M, up.bk);
      const v = project(up.source, B * Lk, up.wv, Hkv * Dv, M, up.bv);
      const att = encodeAttention(s, encoder, plan, pipelines, { q, k, v }, up.options, context);
      made.push(att.output, ...att.temps, ...attentionExtras(att));
      const out = project(att.output, B * Lq, up.wo, M, Hq * Dv, up.bo);
      const reads = [copyToStaging(s, encoder, out, B * Lq * M * 4)];
      if (resolved.returnLse && att.rows !== null)
        reads.push(copyToStaging(s, encoder, att.rows, B * Hq * Lq * 4));
      if (att.weights !== null) reads.push(copyToStaging(s, encoder, att.weights, B * Hq * Lq * Lk * 4));
      return { reads, made };
    },
  );
  const result: AttentionResult = { output };
  if (resolved.returnLse) result.lse = rest.shift();
  if (resolved.returnWeights) result.weights = rest.shift();
  return result;
}
