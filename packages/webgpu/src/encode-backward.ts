import { shapeSymbols } from '@attnkit/spec';
import type { Binding, BindingBuffers } from './bindings.js';
import { bindAndDispatch, NAN_BITS, type OptionBuffers, optionBindingBuffers, packParams } from './encode.js';
import {
  BACKWARD_PARAM_FIELDS,
  BACKWARD_PARAMS_BYTES,
  type BackwardParamField,
  BIAS_GRAD_BINDINGS,
  DELTA_BINDINGS,
  DKDV_BINDINGS,
  DQ_BINDINGS,
  SINKS_GRAD_BINDINGS,
} from './kernels/backward-common.js';
import { Flags } from './kernels/shared.js';
import type { BackwardPipelines } from './pipelines.js';
import { type BackwardPlan, dispatchSize } from './planning.js';
import { STORAGE_USAGE } from './pool.js';
import type { DeviceState } from './state.js';
import { uploadUniform } from './transfer.js';

/** The backward's inputs on the device. */
export interface BackwardBuffers {
  /** q `[B, Hq, Lq, D]` then gradOutput `[B, Hq, Lq, Dv]`. */
  qd: GPUBuffer;
  /** k `[B, Hkv, Lk, D]` then v `[B, Hkv, Lk, Dv]`. */
  kv: GPUBuffer;
  /** The forward's output `[B, Hq, Lq, Dv]`. */
  output: GPUBuffer;
  /** The forward's lse `[B, Hq, Lq]`, then room for delta and norm (written by the kernels). */
  rows: GPUBuffer;
  options: OptionBuffers;
}

/** The gradients on the device (the caller reads them back and releases them) and this call's temporaries. */
export interface BackwardOutputs {
  gradQ: GPUBuffer;
  gradK: GPUBuffer;
  gradV: GPUBuffer;
  gradBias: GPUBuffer | null;
  gradSinks: GPUBuffer | null;
  temps: GPUBuffer[];
}

/**
 * Encodes the backward: delta, then dQ (which also writes each row's norm), then dK/dV (which reads
 * it), then the gradBias reduction (a broadcast bias) and gradSinks, in one compute
 * pass (WebGPU orders each dispatch's storage writes before the next's reads). Never awaits.
 */
export function encodeBackward(
  s: DeviceState,
  encoder: GPUCommandEncoder,
  plan: BackwardPlan,
  pipelines: BackwardPipelines,
  inputs: BackwardBuffers,
  context: string,
): BackwardOutputs {
  const { pool } = s;
  const { shape, options: o, variant, biasFull } = plan;
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(shape);
  const temps: GPUBuffer[] = [];
  const rows = B * Hq * Lq;
  const qTiles = Math.ceil(Lq / variant.q.rows);
  const kTiles = Math.ceil(Lk / variant.kv.keys);
  const bias = o.bias;
  const values: Record<BackwardParamField, number> = {
    batch: B,
    hq: Hq,
    hkv: Hkv,
    lq: Lq,
    lk: Lk,
    rows,
    qTiles,
    kTiles,
    total: 0,
    groupsX: 0,
    // Past Lq + Lk every key is inside the window; clamping keeps the value in i32 range.
    window: o.slidingWindow === null ? 0 : Math.min(o.slidingWindow, Lq + Lk + 1),
    doOff: rows * D,
    vOff: B * Hkv * Lk * D,
    bsB: bias?.strides[0] ?? 0,
    bsH: bias?.strides[1] ?? 0,
    bsI: bias?.strides[2] ?? 0,
    bsJ: bias?.strides[3] ?? 0,
    biasB: bias?.shape[0] ?? 1,
    biasH: bias?.shape[1] ?? 1,
    biasI: bias?.shape[2] ?? 1,
    biasJ: bias?.shape[3] ?? 1,
    scale: o.scale,
    softcap: o.softcap ?? 1,
    nanBits: NAN_BITS,
    d: D,
    dv: Dv,
    flags:
      (o.causal ? Flags.causal : 0) |
      (o.slidingWindow !== null ? Flags.window : 0) |
      (bias !== null ? Flags.bias : 0) |
      (bias !== null && biasFull ? Flags.biasFull : 0) |
      (o.keyMask !== null ? Flags.keyMask : 0) |
      (o.alibiSlopes !== null ? Flags.alibi : 0) |
      (o.softcap !== null ? Flags.softcap : 0) |
      (o.sinks !== null ? Flags.sinks : 0),
  };

  const gradQ = pool.acquire(rows * D * 4, STORAGE_USAGE);
  const gradK = pool.acquire(B * Hkv * Lk * D * 4, STORAGE_USAGE);
  const gradV = pool.acquire(B * Hkv * Lk * Dv * 4, STORAGE_USAGE);
  const gradBias = bias === null ? null : pool.acquire(bias.data.length * 4, STORAGE_USAGE);
  const gradSinks = o.sinks === null ? null : pool.acquire(Hq * 4, STORAGE_USAGE);
  // Where the dQ kernel writes each logit's gradient: gradBias itself, a scratch to reduce, or (no
  // bias) a small stand-in that is never written. Written cells only: the rest must read 0.
  let cells: GPUBuffer;
  if (gradBias !== null && biasFull) cells = gradBias;
  else {
    cells = pool.acquire(gradBias === null ? 16 : rows * Lk * 4, STORAGE_USAGE);
    temps.push(cells);
  }
  if (gradBias !== null) encoder.clearBuffer(cells);

  const optional = optionBindingBuffers(inputs.options, s.dummy);
  const pass = encoder.beginComputePass({ label: 'attnkit:attention-backward' });
  const dispatch = <T extends readonly Binding[]>(
    pipeline: GPUComputePipeline,
    groups: number,
    table: T,
    buffers: BindingBuffers<T>,
  ) => {
    const [gx, gy] = dispatchSize(s, groups, context);
    const uniform = uploadUniform(
      s,
      packParams(BACKWARD_PARAM_FIELDS, { ...values, total: groups, groupsX: gx }),
    );
    temps.push(uniform);
    bindAndDispatch(s, pass, pipeline, table, { buffer: uniform, bytes: BACKWARD_PARAMS_BYTES }, buffers, [
      gx,
      gy,
    ]);
  };
  const { qd: QD, kv: KV, output, rows: ROWS } = inputs;
  dispatch(pipelines.delta, Math.ceil(rows / variant.wg), DELTA_BINDINGS, { QD, O: output, ROWS });
  dispatch(pipelines.dq, B * Hq * qTiles, DQ_BINDINGS, { QD, KV, ROWS, GQ: gradQ, GB: cells, ...optional });
  dispatch(pipelines.dkdv, B * Hkv * kTiles, DKDV_BINDINGS, {
    QD,
    KV,
    ROWS,
    GK: gradK,
    GV: gradV,
    ...optional,
  });
  if (bias !== null && gradBias !== null && !biasFull)
    dispatch(pipelines.biasGrad, bias.data.length, BIAS_GRAD_BINDINGS, { SCRATCH: cells, GB: gradBias });
  if (gradSinks !== null && inputs.options.head !== null)
    dispatch(pipelines.sinksGrad, Hq, SINKS_GRAD_BINDINGS, {
      ROWS,
      HEAD: inputs.options.head,
      GS: gradSinks,
    });
  pass.end();
  return { gradQ, gradK, gradV, gradBias, gradSinks, temps };
}
