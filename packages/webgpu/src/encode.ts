import type { MatmulShape } from '@attnkit/spec';
import { shapeSymbols } from '@attnkit/spec';
import { type Binding, type BindingBuffers, bindGroupEntries } from './bindings.js';
import { packedWords } from './f16.js';
import { MATMUL_PARAM_FIELDS, MATMUL_PARAMS_BYTES } from './kernels/matmul.js';
import {
  ATTENTION_BINDINGS,
  ATTENTION_PARAM_FIELDS,
  ATTENTION_PARAMS_BYTES,
  type AttentionParamField,
  Flags,
  isFloatParam,
  MATMUL_BIAS_BINDINGS,
  MATMUL_BINDINGS,
  paramsBytes,
  WEIGHTS_BINDINGS,
} from './kernels/shared.js';
import type { Pipelines } from './pipelines.js';
import {
  type AttentionOptionsPart,
  type AttentionPlan,
  dispatchSize,
  forwardRows,
  matmulTile,
  stridesFor,
} from './planning.js';
import { STORAGE_USAGE } from './pool.js';
import type { DeviceState } from './state.js';
import { uploadBytes, uploadFloats, uploadUniform } from './transfer.js';

/** A quiet NaN's bits, for the shaders' `nanBits` word (see FLOAT_HELPERS in kernels/shared.ts). */
export const NAN_BITS = 0x7fc00000;

/**
 * Records one dispatch of `pipeline` in `pass`: its bind group from the kernel's binding `table`
 * (the uniform block and the named buffers, see bindings.ts), then `groups` workgroups. Every
 * storage buffer is bound up to the device's binding limit: a pooled buffer can be a size class
 * above it (on an adapter whose limit is not a power of two), while what a kernel reads never is.
 */
export function bindAndDispatch<T extends readonly Binding[]>(
  s: DeviceState,
  pass: GPUComputePassEncoder,
  pipeline: GPUComputePipeline,
  table: T,
  uniform: { buffer: GPUBuffer; bytes: number },
  buffers: BindingBuffers<T>,
  groups: [number, number],
): void {
  const entries = bindGroupEntries(table, uniform, buffers, Math.floor(s.limits.storageBinding / 4) * 4);
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, s.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries }));
  pass.dispatchWorkgroups(groups[0], groups[1]);
}

/** A uniform block's words from its field list (the one its WGSL struct is generated from). */
export function packParams<F extends string>(fields: readonly F[], values: Record<F, number>): ArrayBuffer {
  const buffer = new ArrayBuffer(paramsBytes(fields));
  const u32 = new Uint32Array(buffer);
  const f32 = new Float32Array(buffer);
  fields.forEach((field, n) => {
    if (isFloatParam(field)) f32[n] = values[field];
    else u32[n] = values[field];
  });
  return buffer;
}

/**
 * The buffers of a call's option bindings (kernels/shared.ts `OPTION_BINDINGS`): each option's tensor, or
 * the small read-only stand-in where it is absent (the flags word keeps the shader off it).
 */
export function optionBindingBuffers(
  buffers: OptionBuffers,
  dummy: GPUBuffer,
): Record<'BIAS' | 'MASK' | 'HEAD', GPUBuffer> {
  return { BIAS: buffers.bias ?? dummy, MASK: buffers.mask ?? dummy, HEAD: buffers.head ?? dummy };
}

/** The option tensors of one attention on the device; `null` where the option is absent. */
export interface OptionBuffers {
  bias: GPUBuffer | null;
  mask: GPUBuffer | null;
  /** ALiBi slopes then sinks, `2 * Hq` floats. */
  head: GPUBuffer | null;
}

/**
 * Uploads the option tensors (host arrays) now: called in the caller's tick, so writes into them
 * after the call returns do not change the result. Never awaits.
 */
export function uploadAttentionOptions(
  s: DeviceState,
  o: AttentionOptionsPart,
  queryHeads: number,
): OptionBuffers {
  const bias = o.bias === null ? null : uploadFloats(s, o.bias.data);
  const mask = o.keyMask === null ? null : uploadBytes(s, o.keyMask);
  let head: GPUBuffer | null = null;
  if (o.alibiSlopes !== null || o.sinks !== null) {
    const values = new Float32Array(2 * queryHeads);
    if (o.alibiSlopes !== null) values.set(o.alibiSlopes, 0);
    if (o.sinks !== null) values.set(o.sinks, queryHeads);
    head = uploadFloats(s, values);
  }
  return { bias, mask, head };
}

/** Encodes the fused kernel (and the weights pass). Never awaits. */
export function encodeAttention(
  s: DeviceState,
  encoder: GPUCommandEncoder,
  plan: AttentionPlan,
  pipelines: Pipelines,
  inputs: { q: GPUBuffer; k: GPUBuffer; v: GPUBuffer },
  optionBuffers: OptionBuffers,
  context: string,
): { output: GPUBuffer; rows: GPUBuffer | null; weights: GPUBuffer | null; temps: GPUBuffer[] } {
  const { pool } = s;
  const { shape, options: o, layout, variant } = plan;
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(shape);
  const temps: GPUBuffer[] = [];
  const qTiles = Math.ceil(Lq / forwardRows(variant));
  const groups = B * Hq * qTiles;
  const [gx, gy] = dispatchSize(s, groups, context);
  // With f16 storage a row of q/k/v is packed binary16 pairs: its strides count 32-bit words.
  const stored = (dim: number) => (variant.precision === 'f16-storage' ? packedWords(dim) : dim);
  const qs = stridesFor(layout, Hq, Lq, stored(D));
  const ks = stridesFor(layout, Hkv, Lk, stored(D));
  const vs = stridesFor(layout, Hkv, Lk, stored(Dv));
  const os = stridesFor(layout, Hq, Lq, Dv);
  const bs = o.bias?.strides ?? [0, 0, 0, 0];
  // Past Lq + Lk every key is inside the window; clamping keeps the value in i32 range.
  const window = o.slidingWindow === null ? 0 : Math.min(o.slidingWindow, Lq + Lk + 1);
  const values: Record<AttentionParamField, number> = {
    batch: B,
    hq: Hq,
    hkv: Hkv,
    lq: Lq,
    lk: Lk,
    qTiles,
    total: groups,
    groupsX: gx,
    window,
    qsB: qs.b,
    qsH: qs.h,
    qsL: qs.l,
    ksB: ks.b,
    ksH: ks.h,
    ksL: ks.l,
    vsB: vs.b,
    vsH: vs.h,
    vsL: vs.l,
    osB: os.b,
    osH: os.h,
    osL: os.l,
    bsB: bs[0],
    bsH: bs[1],
    bsI: bs[2],
    bsJ: bs[3],
    scale: o.scale,
    softcap: o.softcap ?? 1,
    nanBits: NAN_BITS,
    d: D,
    dv: Dv,
    bk: variant.tiled?.bk ?? variant.bk,
    flags:
      (o.causal ? Flags.causal : 0) |
      (o.slidingWindow !== null ? Flags.window : 0) |
      (o.bias !== null ? Flags.bias : 0) |
      (o.keyMask !== null ? Flags.keyMask : 0) |
      (o.alibiSlopes !== null ? Flags.alibi : 0) |
      (o.softcap !== null ? Flags.softcap : 0) |
      (o.sinks !== null ? Flags.sinks : 0) |
      (o.returnLse || o.returnWeights ? Flags.rows : 0),
  };
  const params = (overrides: Partial<Record<AttentionParamField, number>>) =>
    uploadUniform(s, packParams(ATTENTION_PARAM_FIELDS, { ...values, ...overrides }));
  const uniform = params({});
  temps.push(uniform);
  // Absent options bind a small read-only stand-in; the flags word keeps the shader off it.
  // The option buffers belong to the caller of this function (uploaded earlier, released by it).
  const dummy = s.dummy;
  const optional = optionBindingBuffers(optionBuffers, dummy);
  const rowsCount = B * Hq * Lq;
  const output = pool.acquire(B * Hq * Lq * Dv * 4, STORAGE_USAGE);
  const wantRows = o.returnLse || o.returnWeights;
  // ROWS is written, so it cannot share the read-only stand-in.
  const rowsBuffer = pool.acquire(wantRows ? 3 * rowsCount * 4 : 16, STORAGE_USAGE);
  const rows = wantRows ? rowsBuffer : null;
  if (!wantRows) temps.push(rowsBuffer);
  const pass = encoder.beginComputePass({ label: 'attnkit:attention' });
  bindAndDispatch(
    s,
    pass,
    pipelines.attention,
    ATTENTION_BINDINGS,
    { buffer: uniform, bytes: ATTENTION_PARAMS_BYTES },
    { Q: inputs.q, K: inputs.k, V: inputs.v, O: output, ROWS: rowsBuffer, ...optional },
    [gx, gy],
  );
  let weights: GPUBuffer | null = null;
  if (o.returnWeights && pipelines.weights !== null && rows !== null) {
    const count = rowsCount * Lk;
    const wGroups = Math.ceil(count / variant.wg);
    const [wx, wy] = dispatchSize(s, wGroups, context);
    const wUniform = params({ total: wGroups, groupsX: wx });
    temps.push(wUniform);
    weights = pool.acquire(count * 4, STORAGE_USAGE);
    bindAndDispatch(
      s,
      pass,
      pipelines.weights,
      WEIGHTS_BINDINGS,
      { buffer: wUniform, bytes: ATTENTION_PARAMS_BYTES },
      { Q: inputs.q, K: inputs.k, ROWS: rows, W: weights, ...optional },
      [wx, wy],
    );
  }
  pass.end();
  return { output, rows, weights, temps };
}

export function encodeMatmul(
  s: DeviceState,
  encoder: GPUCommandEncoder,
  pipeline: GPUComputePipeline,
  a: GPUBuffer,
  b: GPUBuffer,
  bias: GPUBuffer | null,
  shape: MatmulShape,
  context: string,
): { output: GPUBuffer; temps: GPUBuffer[] } {
  const { pool } = s;
  const tile = matmulTile(s);
  const tilesN = Math.ceil(shape.n / tile);
  const total = Math.ceil(shape.m / tile) * tilesN;
  const [gx, gy] = dispatchSize(s, total, context);
  const uniform = uploadUniform(
    s,
    packParams(MATMUL_PARAM_FIELDS, { m: shape.m, k: shape.k, n: shape.n, tilesN, total, groupsX: gx }),
  );
  const output = pool.acquire(shape.m * shape.n * 4, STORAGE_USAGE);
  const pass = encoder.beginComputePass({ label: 'attnkit:matmul' });
  const matmul = { buffer: uniform, bytes: MATMUL_PARAMS_BYTES };
  if (bias === null)
    bindAndDispatch(s, pass, pipeline, MATMUL_BINDINGS, matmul, { A: a, B: b, C: output }, [gx, gy]);
  else
    bindAndDispatch(s, pass, pipeline, MATMUL_BIAS_BINDINGS, matmul, { A: a, B: b, C: output, BIAS: bias }, [
      gx,
      gy,
    ]);
  pass.end();
  return { output, temps: [uniform] };
}
