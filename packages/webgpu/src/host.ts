import {
  type AttentionOptions,
  type AttentionProblem,
  type AttentionResult,
  type LayerInputs,
  type MatmulProblem,
  type ResolvedShape,
  resolveOptions,
  validateLayer,
} from '@attnkit/spec';
import { encodeAttention, encodeMatmul } from './encode.js';
import { guarded } from './errors.js';
import { attentionPipelines, matmulPipeline } from './pipelines.js';
import { checkElements, checkMatmul, planAttention } from './planning.js';
import type { Runtime } from './state.js';
import { copyToStaging, readStaging, uploadFloats } from './transfer.js';

// The host-array path: inputs uploaded from Float32Arrays, results read back in one submission.

/** Attention on host arrays: upload, the fused kernel, one readback. */
export async function attention(rt: Runtime, problem: AttentionProblem): Promise<AttentionResult> {
  await rt.live();
  const context = 'attention';
  const plan = planAttention(rt.ready(), rt.workgroupSize, problem.shape, problem, 'bhld', context);
  const pipelines = await attentionPipelines(rt.ready(), plan.variant, problem.returnWeights);
  const s = rt.ready();
  const { device, pool } = s;
  const { batch: B, queryHeads: Hq, queryLength: Lq, keyLength: Lk, valueDim: Dv } = problem.shape;
  const staging = await guarded(s, context, () => {
    const encoder = device.createCommandEncoder();
    const q = uploadFloats(s, problem.q);
    const k = uploadFloats(s, problem.k);
    const v = uploadFloats(s, problem.v);
    const out = encodeAttention(s, encoder, plan, pipelines, { q, k, v }, context);
    const reads = [copyToStaging(s, encoder, out.output, B * Hq * Lq * Dv * 4)];
    if (problem.returnLse && out.rows !== null)
      reads.push(copyToStaging(s, encoder, out.rows, B * Hq * Lq * 4));
    if (out.weights !== null) reads.push(copyToStaging(s, encoder, out.weights, B * Hq * Lq * Lk * 4));
    device.queue.submit([encoder.finish()]);
    // The queue orders later writes after this submission, so these can be reused at once.
    for (const buffer of [q, k, v, out.output, ...out.temps]) pool.release(buffer);
    if (out.rows !== null) pool.release(out.rows);
    if (out.weights !== null) pool.release(out.weights);
    return reads;
  });
  const [output, ...rest] = await readStaging(rt.ready(), context, staging);
  const result: AttentionResult = { output };
  if (problem.returnLse) result.lse = rest.shift();
  if (problem.returnWeights) result.weights = rest.shift();
  return result;
}

/** `a @ b (+ bias)` on host arrays. */
export async function matmul(rt: Runtime, problem: MatmulProblem): Promise<Float32Array> {
  await rt.live();
  const context = 'matmul';
  checkMatmul(rt.ready(), context, problem.shape);
  const pipeline = await matmulPipeline(rt.ready(), problem.bias !== null);
  const s = rt.ready();
  const { device, pool } = s;
  const staging = await guarded(s, context, () => {
    const encoder = device.createCommandEncoder();
    const a = uploadFloats(s, problem.a);
    const b = uploadFloats(s, problem.b);
    const bias = problem.bias === null ? null : uploadFloats(s, problem.bias);
    const out = encodeMatmul(s, encoder, pipeline, a, b, bias, problem.shape, context);
    const read = copyToStaging(s, encoder, out.output, problem.shape.m * problem.shape.n * 4);
    device.queue.submit([encoder.finish()]);
    for (const buffer of [a, b, out.output, ...out.temps]) pool.release(buffer);
    if (bias !== null) pool.release(bias);
    return [read];
  });
  const [output] = await readStaging(rt.ready(), context, staging);
  return output;
}

/** The multi-head attention layer, every projection and the attention on the device, one readback. */
export async function multiHeadAttention(
  rt: Runtime,
  inputs: LayerInputs,
  options: AttentionOptions = {},
): Promise<AttentionResult> {
  await rt.live();
  const context = 'multiHeadAttention';
  const r = validateLayer(inputs, options);
  const { batch: B, queryLength: Lq, keyLength: Lk, modelDim: M, queryHeads: Hq, kvHeads: Hkv } = r;
  const { headDim: D, valueDim: Dv } = r;
  const shape: ResolvedShape = {
    batch: B,
    queryHeads: Hq,
    kvHeads: Hkv,
    queryLength: Lq,
    keyLength: Lk,
    headDim: D,
    valueDim: Dv,
  };
  const resolved = resolveOptions(options, shape, context);
  const w = inputs.weights;
  const sizes: [string, number][] = [
    ['x', B * Lq * M],
    ['context', B * Lk * M],
    ['q', B * Lq * Hq * D],
    ['k', B * Lk * Hkv * D],
    ['v', B * Lk * Hkv * Dv],
    ['merged', B * Lq * Hq * Dv],
    ['weights.wq', M * Hq * D],
    ['weights.wk', M * Hkv * D],
    ['weights.wv', M * Hkv * Dv],
    ['weights.wo', Hq * Dv * M],
  ];
  for (const [name, n] of sizes) checkElements(rt.ready(), context, name, n);
  const plan = planAttention(rt.ready(), rt.workgroupSize, shape, resolved, 'blhd', context);
  const [pipelines, mmBias, mmPlain] = await Promise.all([
    attentionPipelines(rt.ready(), plan.variant, resolved.returnWeights),
    matmulPipeline(rt.ready(), true),
    matmulPipeline(rt.ready(), false),
  ]);
  const s = rt.ready();
  const { device, pool } = s;
  const staging = await guarded(s, context, () => {
    const encoder = device.createCommandEncoder();
    const held: GPUBuffer[] = [];
    const up = (data: Float32Array | undefined) => {
      if (data === undefined) return null;
      const buffer = uploadFloats(s, data);
      held.push(buffer);
      return buffer;
    };
    const x = up(inputs.x)!;
    const source = inputs.context === undefined ? x : up(inputs.context)!;
    const project = (a: GPUBuffer, rows: number, weight: Float32Array, n: number, bias?: Float32Array) => {
      const biasBuffer = up(bias);
      const out = encodeMatmul(
        s,
        encoder,
        biasBuffer === null ? mmPlain : mmBias,
        a,
        up(weight)!,
        biasBuffer,
        { m: rows, k: M, n },
        context,
      );
      held.push(out.output, ...out.temps);
      return out.output;
    };
    const q = project(x, B * Lq, w.wq, Hq * D, w.bq);
    const k = project(source, B * Lk, w.wk, Hkv * D, w.bk);
    const v = project(source, B * Lk, w.wv, Hkv * Dv, w.bv);
    const att = encodeAttention(s, encoder, plan, pipelines, { q, k, v }, context);
    held.push(att.output, ...att.temps);
    if (att.rows !== null) held.push(att.rows);
    if (att.weights !== null) held.push(att.weights);
    const woBias = up(w.bo);
    const out = encodeMatmul(
      s,
      encoder,
      woBias === null ? mmPlain : mmBias,
      att.output,
      up(w.wo)!,
      woBias,
      { m: B * Lq, k: Hq * Dv, n: M },
      context,
    );
    held.push(out.output, ...out.temps);
    const reads = [copyToStaging(s, encoder, out.output, B * Lq * M * 4)];
    if (resolved.returnLse && att.rows !== null)
      reads.push(copyToStaging(s, encoder, att.rows, B * Hq * Lq * 4));
    if (att.weights !== null) reads.push(copyToStaging(s, encoder, att.weights, B * Hq * Lq * Lk * 4));
    device.queue.submit([encoder.finish()]);
    for (const buffer of held) pool.release(buffer);
    return reads;
  });
  const [output, ...rest] = await readStaging(rt.ready(), context, staging);
  const result: AttentionResult = { output };
  if (resolved.returnLse) result.lse = rest.shift();
  if (resolved.returnWeights) result.weights = rest.shift();
  return result;
}
