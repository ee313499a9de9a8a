import type { AttentionBackend } from './backend.js';
import { invalidArgument } from './errors.js';
import { type ReferenceResult64, referenceAttentionProblem64, referenceMatmul64 } from './reference.js';
import { shapeSymbols } from './symbols.js';
import type { AttentionOptions, AttentionResult, MatmulShape, ResolvedShape } from './types.js';
import { float32Tensor, type ResolvedOptions, resolveOptions, resolveShape } from './validate.js';

/** Sizes of a multi-head attention layer call. */
export interface LayerShape {
  batch: number;
  /** Positions of `x`. */
  queryLength: number;
  /** Positions of `context` (cross-attention); default `queryLength`. */
  keyLength?: number;
  modelDim: number;
  queryHeads: number;
  /** Default `queryHeads`. */
  kvHeads?: number;
  headDim: number;
  /** Default `headDim`. */
  valueDim?: number;
}

/** Projection weights, row-major `[in, out]`, biases `[out]`. */
export interface LayerWeights {
  /** `[modelDim, Hq*D]`. */
  wq: Float32Array;
  /** `[modelDim, Hkv*D]`. */
  wk: Float32Array;
  /** `[modelDim, Hkv*Dv]` (the value-down projections). */
  wv: Float32Array;
  /** `[Hq*Dv, modelDim]` (the value-up projections, stapled into the output matrix). */
  wo: Float32Array;
  bq?: Float32Array;
  bk?: Float32Array;
  bv?: Float32Array;
  bo?: Float32Array;
}

/** A layer call: self-attention over `x`, or cross-attention from `x` to `context`. */
export interface LayerInputs {
  /** `[B, Lq, modelDim]`. */
  x: Float32Array;
  /** `[B, Lk, modelDim]`: keys and values come from here when given. */
  context?: Float32Array;
  weights: LayerWeights;
  shape: LayerShape;
}

/** A validated layer call's sizes, every default applied. */
export interface ResolvedLayer {
  batch: number;
  queryLength: number;
  keyLength: number;
  modelDim: number;
  queryHeads: number;
  kvHeads: number;
  headDim: number;
  valueDim: number;
}

/** {@link LayerWeights} as validated: plain views, absent biases `null`. */
export interface ResolvedLayerWeights {
  wq: Float32Array;
  wk: Float32Array;
  wv: Float32Array;
  wo: Float32Array;
  bq: Float32Array | null;
  bk: Float32Array | null;
  bv: Float32Array | null;
  bo: Float32Array | null;
}

/**
 * A validated layer call with every default resolved: what a backend's `layer` receives, and what
 * the spec's composition over `matmul` + `attention` starts from.
 */
export interface LayerProblem {
  /** `[B, Lq, modelDim]`. */
  x: Float32Array;
  /** `[B, Lk, modelDim]`, or `null` for self-attention (keys and values come from `x`). */
  context: Float32Array | null;
  weights: ResolvedLayerWeights;
  shape: ResolvedLayer;
  /** The shape of the attention call inside the layer (the layer's sizes without `modelDim`). */
  attentionShape: ResolvedShape;
  /** The attention options, resolved against {@link LayerProblem.attentionShape}. */
  options: ResolvedOptions;
}

const LAYER = 'multiHeadAttention';

/** Validates a layer call up front, so nothing is projected before an argument is found wrong. */
export function validateLayer(inputs: LayerInputs, options: AttentionOptions = {}): LayerProblem {
  return validateLayerFor(LAYER, inputs, options);
}

/**
 * {@link validateLayer} with errors named for `context` (the layer's backward validates the same
 * inputs and says `multiHeadAttentionBackward: ...`).
 */
export function validateLayerFor(
  context: string,
  inputs: LayerInputs,
  options: AttentionOptions = {},
): LayerProblem {
  // The same real-type, real-length check as attention's tensors (a subclass's `length` cannot lie).
  const tensor = (argument: string, value: unknown, length: number, formula: string) =>
    float32Tensor(context, argument, value, length, formula);
  if (typeof inputs !== 'object' || inputs === null) invalidArgument(context, 'inputs', 'an object', inputs);
  const shape = inputs.shape;
  if (typeof shape !== 'object' || shape === null) invalidArgument(context, 'shape', 'an object', shape);
  const modelDimValue: unknown = shape.modelDim;
  if (typeof modelDimValue !== 'number' || !Number.isInteger(modelDimValue) || modelDimValue < 1) {
    invalidArgument(context, 'shape.modelDim', 'a positive integer', modelDimValue);
  }
  const { modelDim: _modelDim, ...attentionShape } = shape;
  const s = resolveShape(attentionShape, context);
  const r: ResolvedLayer = { ...s, modelDim: modelDimValue };
  const { B, Lq, Lk, Hq, Hkv, D, Dv } = shapeSymbols(r);
  const M = r.modelDim;
  const x = tensor('x', inputs.x, B * Lq * M, `B*Lq*modelDim = ${B}*${Lq}*${M}`);
  let source: Float32Array | null = null;
  if (inputs.context !== undefined)
    source = tensor('context', inputs.context, B * Lk * M, `B*Lk*modelDim = ${B}*${Lk}*${M}`);
  else if (Lk !== Lq)
    invalidArgument(
      context,
      'context',
      `a [B, Lk, modelDim] tensor since keyLength ${Lk} != queryLength ${Lq}`,
      undefined,
    );
  const w = inputs.weights;
  if (typeof w !== 'object' || w === null)
    invalidArgument(context, 'weights', 'an object { wq, wk, wv, wo }', w);
  const bias = (name: string, value: Float32Array | undefined, length: number, formula: string) =>
    value === undefined ? null : tensor(`weights.${name}`, value, length, formula);
  const weights: ResolvedLayerWeights = {
    wq: tensor('weights.wq', w.wq, M * Hq * D, `modelDim*Hq*D = ${M}*${Hq}*${D}`),
    wk: tensor('weights.wk', w.wk, M * Hkv * D, `modelDim*Hkv*D = ${M}*${Hkv}*${D}`),
    wv: tensor('weights.wv', w.wv, M * Hkv * Dv, `modelDim*Hkv*Dv = ${M}*${Hkv}*${Dv}`),
    wo: tensor('weights.wo', w.wo, Hq * Dv * M, `Hq*Dv*modelDim = ${Hq}*${Dv}*${M}`),
    bq: bias('bq', w.bq, Hq * D, `Hq*D = ${Hq}*${D}`),
    bk: bias('bk', w.bk, Hkv * D, `Hkv*D = ${Hkv}*${D}`),
    bv: bias('bv', w.bv, Hkv * Dv, `Hkv*Dv = ${Hkv}*${Dv}`),
    bo: bias('bo', w.bo, M, `modelDim = ${M}`),
  };
  return {
    x,
    context: source,
    weights,
    shape: r,
    attentionShape: s,
    options: resolveOptions(options, s, context),
  };
}

/** The typed arrays the head moves copy. */
export type NumericArray = Float32Array | Float64Array;

/**
 * Moves the heads between the projection's layout `[B, L, H*D]` (`blhd`) and the attention layout
 * `[B, H, L, D]` (`bhld`): `toHeadsFirst` copies blhd to bhld, otherwise bhld to blhd.
 */
function moveHeads<T extends NumericArray>(
  source: T,
  batch: number,
  length: number,
  heads: number,
  dim: number,
  toHeadsFirst: boolean,
): T {
  const out = new (source.constructor as new (n: number) => T)(source.length);
  for (let b = 0; b < batch; b++)
    for (let l = 0; l < length; l++)
      for (let h = 0; h < heads; h++) {
        const blhd = ((b * length + l) * heads + h) * dim;
        const bhld = ((b * heads + h) * length + l) * dim;
        const from = toHeadsFirst ? blhd : bhld;
        const to = toHeadsFirst ? bhld : blhd;
        out.set(source.subarray(from, from + dim), to);
      }
  return out;
}

/** A copy of `source` with its heads moved: `(source, batch, length, heads, dim) => copy`. */
export type HeadMove = <T extends NumericArray>(
  source: T,
  batch: number,
  length: number,
  heads: number,
  dim: number,
) => T;

/** `[B, L, H*D]` -> `[B, H, L, D]`. */
export const splitHeads: HeadMove = (source, batch, length, heads, dim) =>
  moveHeads(source, batch, length, heads, dim, true);

/** `[B, H, L, D]` -> `[B, L, H*D]`. */
export const mergeHeads: HeadMove = (source, batch, length, heads, dim) =>
  moveHeads(source, batch, length, heads, dim, false);

/** What the layer's forward computed on its way to the output (the backward's saved activations). */
export interface LayerForwardPass {
  /** Projected queries, split into heads: `[B, Hq, Lq, D]`. */
  q: Float32Array;
  /** Projected keys, split: `[B, Hkv, Lk, D]`. */
  k: Float32Array;
  /** Projected values, split: `[B, Hkv, Lk, Dv]`. */
  v: Float32Array;
  /** The attention call's result (`output [B, Hq, Lq, Dv]`, `lse`/`weights` when asked). */
  attended: AttentionResult;
  /** The attention output with heads merged: `[B, Lq, Hq*Dv]`, the input of the out-projection. */
  merged: Float32Array;
  /** `[B, Lq, modelDim]`. */
  output: Float32Array;
}

/**
 * The two operations the layer is composed of, on validated data: the gate passes its
 * implementation's (no second validation), {@link layerForwardPass} a backend's public methods.
 */
export interface LayerOps {
  matmul(
    a: Float32Array,
    b: Float32Array,
    shape: MatmulShape,
    bias: Float32Array | null,
  ): Promise<Float32Array>;
  attention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    shape: ResolvedShape,
  ): Promise<AttentionResult>;
}

/**
 * The layer's forward, written once: project (`x Wq + bq`, `ctx Wk + bk`, `ctx Wv + bv`), split
 * heads, attend, merge heads, project out (`Wo + bo`), keeping every intermediate (the backward's
 * saved activations). The backend's `layer` replaces it where a backend has one.
 */
export async function composeLayer(ops: LayerOps, problem: LayerProblem): Promise<LayerForwardPass> {
  const { B, Lq, Lk, Hq, Hkv, D, Dv } = shapeSymbols(problem.shape);
  const M = problem.shape.modelDim;
  const { weights: w } = problem;
  const source = problem.context ?? problem.x;
  const project = (a: Float32Array, rows: number, b: Float32Array, n: number, bias: Float32Array | null) =>
    ops.matmul(a, b, { m: rows, k: M, n }, bias);
  const [qFlat, kFlat, vFlat] = await Promise.all([
    project(problem.x, B * Lq, w.wq, Hq * D, w.bq),
    project(source, B * Lk, w.wk, Hkv * D, w.bk),
    project(source, B * Lk, w.wv, Hkv * Dv, w.bv),
  ]);
  const q = splitHeads(qFlat, B, Lq, Hq, D);
  const k = splitHeads(kFlat, B, Lk, Hkv, D);
  const v = splitHeads(vFlat, B, Lk, Hkv, Dv);
  const attended = await ops.attention(q, k, v, problem.attentionShape);
  const merged = mergeHeads(attended.output, B, Lq, Hq, Dv);
  const output = await ops.matmul(merged, w.wo, { m: B * Lq, k: Hq * Dv, n: M }, w.bo);
  return { q, k, v, attended, merged, output };
}

/**
 * {@link composeLayer} over a backend's public `matmul` and `attention` (each validates its own
 * call; `options` are the layer's, as given): the training forward and the layer on an object that
 * is not a gated backend.
 */
export function layerForwardPass(
  backend: Pick<AttentionBackend, 'attention' | 'matmul'>,
  problem: LayerProblem,
  options: AttentionOptions,
): Promise<LayerForwardPass> {
  return composeLayer(
    {
      matmul: (a, b, shape, bias) => backend.matmul({ a, b, shape, ...(bias !== null && { bias }) }),
      attention: (q, k, v, shape) => backend.attention({ q, k, v, shape }, options),
    },
    problem,
  );
}

/**
 * The multi-head attention layer over any backend: dispatched to the backend's own
 * `multiHeadAttention` (the gate: validation, then the backend's fused `layer` when it has one, else
 * {@link composeLayer} over its `matmul` and `attention`); an object without one gets the
 * composition over its public methods. Returns `output [B, Lq, modelDim]`, plus `lse`/`weights` of
 * the attention if asked.
 */
export async function multiHeadAttention(
  backend: Pick<AttentionBackend, 'attention' | 'matmul'> &
    Partial<Pick<AttentionBackend, 'multiHeadAttention'>>,
  inputs: LayerInputs,
  options: AttentionOptions = {},
): Promise<AttentionResult> {
  if (typeof backend.multiHeadAttention === 'function') return backend.multiHeadAttention(inputs, options);
  const problem = validateLayer(inputs, options);
  const { attended, output } = await layerForwardPass(backend, problem, options);
  return { ...attended, output };
}

/**
 * The float64 projections of a validated layer call, split into heads, and the attention shape:
 * what the float64 layer and its backward both start from.
 */
export function referenceProjections64(inputs: LayerInputs, r: ResolvedLayer) {
  const { B, Lq, Lk, Hq, Hkv, D, Dv } = shapeSymbols(r);
  const M = r.modelDim;
  const { weights: w } = inputs;
  const source = inputs.context ?? inputs.x;
  const q = splitHeads(referenceMatmul64(inputs.x, w.wq, B * Lq, M, Hq * D, w.bq ?? null), B, Lq, Hq, D);
  const k = splitHeads(referenceMatmul64(source, w.wk, B * Lk, M, Hkv * D, w.bk ?? null), B, Lk, Hkv, D);
  const v = splitHeads(referenceMatmul64(source, w.wv, B * Lk, M, Hkv * Dv, w.bv ?? null), B, Lk, Hkv, Dv);
  const { modelDim: _shapeModelDim, ...shape } = r;
  return { w, q, k, v, shape };
}

/** The layer in float64 throughout: what conformance compares a backend's layer against. */
export function referenceMultiHeadAttention64(
  inputs: LayerInputs,
  options: AttentionOptions = {},
): ReferenceResult64 {
  const r = validateLayer(inputs, options).shape;
  const { batch: B, queryLength: Lq, modelDim: M, queryHeads: Hq, valueDim: Dv } = r;
  const { w, q, k, v, shape } = referenceProjections64(inputs, r);
  const attended = referenceAttentionProblem64({ q, k, v, shape, ...resolveOptions(options, shape, LAYER) });
  const merged = mergeHeads(attended.output, B, Lq, Hq, Dv);
  return { ...attended, output: referenceMatmul64(merged, w.wo, B * Lq, Hq * Dv, M, w.bo ?? null) };
}
