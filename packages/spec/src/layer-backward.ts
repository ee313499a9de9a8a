import type { AttentionBackend } from './backend.js';
import { referenceAttentionBackwardProblem64 } from './backward.js';
import { invalidArgument } from './errors.js';
import {
  type LayerInputs,
  layerForwardPass,
  mergeHeads,
  type ResolvedLayer,
  referenceProjections64,
  splitHeads,
  validateLayerFor,
} from './layer.js';
import { referenceAttentionProblem64, referenceMatmul64 } from './reference.js';
import { shapeSymbols } from './symbols.js';
import type { AttentionOptions, AttentionResult } from './types.js';
import { float32Tensor, resolveOptions } from './validate.js';

const FORWARD = 'multiHeadAttentionForward';
const BACKWARD = 'multiHeadAttentionBackward';

/**
 * What the layer's backward needs from its forward, kept by {@link multiHeadAttentionForward}.
 * Every tensor is the forward's own float32 result; the backward reads them and never writes them.
 */
export interface LayerActivations {
  /** Projected queries split into heads, `[B, Hq, Lq, D]`. */
  q: Float32Array;
  /** Projected keys, `[B, Hkv, Lk, D]`. */
  k: Float32Array;
  /** Projected values, `[B, Hkv, Lk, Dv]`. */
  v: Float32Array;
  /** The attention call's output `[B, Hq, Lq, Dv]`. */
  attentionOutput: Float32Array;
  /** The attention call's `lse [B, Hq, Lq]`. */
  lse: Float32Array;
  /** `attentionOutput` with heads merged, `[B, Lq, Hq*Dv]`: the input of the out-projection. */
  merged: Float32Array;
}

/** The training forward's result: the layer's output, the attention's `lse`, and the saved activations. */
export interface LayerForward extends AttentionResult {
  /** `[B, Lq, modelDim]`. */
  output: Float32Array;
  /** The attention's `lse [B, Hq, Lq]`. */
  lse: Float32Array;
  /** Pass these to {@link multiHeadAttentionBackward} so it does not run the forward again. */
  saved: LayerActivations;
}

/** Gradients of the layer; `T` is `Float32Array` for a backend's, `Float64Array` for the reference's. */
export interface LayerGradientsOf<T> {
  /** dLoss/dx `[B, Lq, modelDim]`; with self-attention it includes the paths through keys and values. */
  gradX: T;
  /** dLoss/dcontext `[B, Lk, modelDim]`, present exactly when the inputs have a `context`. */
  gradContext?: T;
  /** One gradient per weight, each in its weight's shape; `bq`..`bo` exactly when those biases were given. */
  gradWeights: { wq: T; wk: T; wv: T; wo: T; bq?: T; bk?: T; bv?: T; bo?: T };
  /** Gradient of the attention's `options.bias` (its own, broadcast shape), present when a bias was given. */
  gradBias?: T;
  /** Gradient of `options.sinks` `[Hq]`, present when sinks were given. */
  gradSinks?: T;
}

export type LayerGradients = LayerGradientsOf<Float32Array>;
export type ReferenceLayerGradients64 = LayerGradientsOf<Float64Array>;

type Backend = Pick<AttentionBackend, 'attention' | 'attentionBackward' | 'matmul'>;

/**
 * The layer's forward for training: {@link multiHeadAttention} with `lse` always returned and the
 * activations the backward needs kept (`saved`). Same validation, same calls, same output bits.
 * `returnWeights` still works (the pattern of each head, for pictures); it is not saved.
 */
export async function multiHeadAttentionForward(
  backend: Pick<AttentionBackend, 'attention' | 'matmul'>,
  inputs: LayerInputs,
  options: AttentionOptions = {},
): Promise<LayerForward> {
  const layer = validateLayerFor(FORWARD, inputs, options);
  const pass = await layerForwardPass(
    backend,
    { ...layer, options: { ...layer.options, returnLse: true } },
    { ...options, returnLse: true },
  );
  const lse = pass.attended.lse as Float32Array; // asked for above
  return {
    ...pass.attended,
    output: pass.output,
    lse,
    saved: {
      q: pass.q,
      k: pass.k,
      v: pass.v,
      attentionOutput: pass.attended.output,
      lse,
      merged: pass.merged,
    },
  };
}

/** Checks saved activations against the layer's sizes (types and lengths: they cannot be recomputed cheaply). */
function checkSaved(saved: unknown, r: ResolvedLayer): LayerActivations {
  const { B, Lq, Lk, Hq, Hkv, D, Dv } = shapeSymbols(r);
  if (typeof saved !== 'object' || saved === null) {
    invalidArgument(BACKWARD, 'saved', 'the saved activations of multiHeadAttentionForward', saved);
  }
  const s = saved as Record<keyof LayerActivations, unknown>;
  const check = (key: keyof LayerActivations, length: number, formula: string) =>
    float32Tensor(BACKWARD, `saved.${key}`, s[key], length, formula);
  return {
    q: check('q', B * Hq * Lq * D, `B*Hq*Lq*D = ${B}*${Hq}*${Lq}*${D}`),
    k: check('k', B * Hkv * Lk * D, `B*Hkv*Lk*D = ${B}*${Hkv}*${Lk}*${D}`),
    v: check('v', B * Hkv * Lk * Dv, `B*Hkv*Lk*Dv = ${B}*${Hkv}*${Lk}*${Dv}`),
    attentionOutput: check('attentionOutput', B * Hq * Lq * Dv, `B*Hq*Lq*Dv = ${B}*${Hq}*${Lq}*${Dv}`),
    lse: check('lse', B * Hq * Lq, `B*Hq*Lq = ${B}*${Hq}*${Lq}`),
    merged: check('merged', B * Lq * Hq * Dv, `B*Lq*Hq*Dv = ${B}*${Lq}*${Hq}*${Dv}`),
  };
}

type Numeric = Float32Array | Float64Array;

/** `[rows, cols]` -> a fresh `[cols, rows]` of the same type. */
function transpose<T extends Numeric>(a: T, rows: number, cols: number): T {
  const out = new (a.constructor as new (n: number) => T)(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

/** Side by side: `[rows, c1] | [rows, c2] | ...` -> `[rows, c1 + c2 + ...]`. */
function concatColumns<T extends Numeric>(parts: readonly { data: T; cols: number }[], rows: number): T {
  const total = parts.reduce((sum, part) => sum + part.cols, 0);
  const out = new (parts[0].data.constructor as new (n: number) => T)(rows * total);
  let offset = 0;
  for (const { data, cols } of parts) {
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < cols; c++) out[r * total + offset + c] = data[r * cols + c];
    offset += cols;
  }
  return out;
}

/** The inverse of {@link concatColumns}. */
function splitColumns<T extends Numeric>(data: T, rows: number, widths: readonly number[]): T[] {
  const total = widths.reduce((sum, cols) => sum + cols, 0);
  let offset = 0;
  return widths.map((cols) => {
    const out = new (data.constructor as new (n: number) => T)(rows * cols);
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < cols; c++) out[r * cols + c] = data[r * total + offset + c];
    offset += cols;
    return out;
  });
}

/** Column sums of `[rows, cols]`, accumulated in float64 (a bias gradient sums B*L rows). */
function columnSums(data: Numeric, rows: number, cols: number): Float64Array {
  const sums = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) sums[c] += data[r * cols + c];
  return sums;
}

/** One input `[rows, modelDim]` feeding one or more projections `y_i = input W_i + b_i`, backpropagated together. */
interface ProjectionGroup {
  input: Float32Array;
  rows: number;
  /** Per projection: its weight `[modelDim, cols]` and the gradient of its output `[rows, cols]`. */
  parts: { weight: Float32Array; grad: Float32Array; cols: number }[];
}

/**
 * The float32 backward of the layer through the backend.
 *
 * **What it computes.** With `Y = merge(attention(split(x Wq + bq), split(c Wk + bk), split(c Wv + bv))) Wo + bo`
 * (`c` is `context`, or `x` for self-attention) and `dY = gradOutput [B, Lq, modelDim]`:
 * `dWo = merged^T dY`, `dbo = colsum(dY)`, `dMerged = dY Wo^T`, then the backend's
 * `attentionBackward` gives `dQ, dK, dV` (split back to `[B*L, H*D]`), and for every projection
 * `dW = input^T dProj`, `db = colsum(dProj)`, `dInput += dProj W^T`. The attention's own `bias` and
 * `sinks` options get their gradients too (`gradBias`, `gradSinks`).
 *
 * **Through which calls.** Every product goes through `backend.matmul`; nothing is added to the
 * backend API. A transposed operand (`merged^T`, `Wo^T`, `x^T`, `W^T`) is transposed on the host into a
 * fresh array first — O(elements), against the O(rows*cols*modelDim) matmul it feeds. Projections
 * that share an input are fused: for self-attention `[dQ | dK | dV]` is one `[B*L, Hq*D + Hkv*(D+Dv)]`
 * matrix, so `dx = [dQ|dK|dV] [Wq|Wk|Wv]^T` is a single matmul (one accumulation, one rounding,
 * rather than three roundings and two float32 adds) and `[dWq|dWk|dWv] = x^T [dQ|dK|dV]` another.
 * Bias gradients are column sums on the host, accumulated in float64 and rounded once.
 *
 * **Saved activations.** Pass the `saved` of {@link multiHeadAttentionForward} (the call that gave the
 * output the loss was computed from) and the backward reads the forward's projections, attention
 * output and `lse` instead of computing them again: 5 matmuls and one attentionBackward. Without
 * `saved` it re-runs the forward first (3 projections and the attention, with `returnLse`), the way
 * activation checkpointing trades compute for memory. The saved tensors must come from the same
 * inputs and options; their lengths are checked (errors name `saved.<key>`), their values cannot be.
 *
 * Validation comes first, before any call: the layer's inputs and options by the layer's rules, and
 * `gradOutput` (a `Float32Array` of `B*Lq*modelDim`; errors name `gradOutput`). A backend without the
 * `backward` feature rejects `unsupported` (from its `attentionBackward`).
 */
export async function multiHeadAttentionBackward(
  backend: Backend,
  inputs: LayerInputs,
  gradOutput: Float32Array,
  options: AttentionOptions = {},
  saved?: LayerActivations,
): Promise<LayerGradients> {
  const layer = validateLayerFor(BACKWARD, inputs, options);
  const r = layer.shape;
  const { B, Lq, Lk, Hq, Hkv, D, Dv } = shapeSymbols(r);
  const M = r.modelDim;
  const dY = float32Tensor(BACKWARD, 'gradOutput', gradOutput, B * Lq * M, `B*Lq*modelDim = ${B}*${Lq}*${M}`);
  let act: LayerActivations;
  if (saved !== undefined) act = checkSaved(saved, r);
  else {
    const forward = { ...options, returnLse: true, returnWeights: false };
    const pass = await layerForwardPass(
      backend,
      { ...layer, options: { ...layer.options, returnLse: true, returnWeights: false } },
      forward,
    );
    const { q, k, v, attended, merged } = pass;
    act = { q, k, v, attentionOutput: attended.output, lse: attended.lse as Float32Array, merged };
  }
  const w = inputs.weights;
  const matmul = (a: Float32Array, b: Float32Array, m: number, k: number, n: number) =>
    backend.matmul({ a, b, shape: { m, k, n } });

  // Out-projection: dWo = merged^T dY and dMerged = dY Wo^T, independent of each other.
  const [gradWo, dMerged] = await Promise.all([
    matmul(transpose(act.merged, B * Lq, Hq * Dv), dY, Hq * Dv, B * Lq, M),
    matmul(dY, transpose(w.wo, Hq * Dv, M), B * Lq, M, Hq * Dv),
  ]);

  const { modelDim: _attentionShapeModelDim, ...attentionShape } = r;
  const grads = await backend.attentionBackward(
    {
      q: act.q,
      k: act.k,
      v: act.v,
      shape: attentionShape,
      output: act.attentionOutput,
      lse: act.lse,
      gradOutput: splitHeads(dMerged, B, Lq, Hq, Dv),
    },
    options,
  );
  const dQ = mergeHeads(grads.gradQ, B, Lq, Hq, D);
  const dK = mergeHeads(grads.gradK, B, Lk, Hkv, D);
  const dV = mergeHeads(grads.gradV, B, Lk, Hkv, Dv);

  const groups: ProjectionGroup[] =
    inputs.context === undefined
      ? [
          {
            input: inputs.x,
            rows: B * Lq,
            parts: [
              { weight: w.wq, grad: dQ, cols: Hq * D },
              { weight: w.wk, grad: dK, cols: Hkv * D },
              { weight: w.wv, grad: dV, cols: Hkv * Dv },
            ],
          },
        ]
      : [
          { input: inputs.x, rows: B * Lq, parts: [{ weight: w.wq, grad: dQ, cols: Hq * D }] },
          {
            input: inputs.context,
            rows: B * Lk,
            parts: [
              { weight: w.wk, grad: dK, cols: Hkv * D },
              { weight: w.wv, grad: dV, cols: Hkv * Dv },
            ],
          },
        ];
  const results = await Promise.all(
    groups.map(async ({ input, rows, parts }) => {
      const widths = parts.map((part) => part.cols);
      const total = widths.reduce((sum, cols) => sum + cols, 0);
      const dProj =
        parts.length === 1
          ? parts[0].grad
          : concatColumns(
              parts.map(({ grad, cols }) => ({ data: grad, cols })),
              rows,
            );
      // [W1 | W2 | ...] is [modelDim, total]; its transpose [total, modelDim] is what dInput needs.
      const weights = concatColumns(
        parts.map(({ weight, cols }) => ({ data: weight, cols })),
        M,
      );
      const [dWeights, dInput] = await Promise.all([
        matmul(transpose(input, rows, M), dProj, M, rows, total),
        matmul(dProj, transpose(weights, M, total), rows, total, M),
      ]);
      return { dWeights: parts.length === 1 ? [dWeights] : splitColumns(dWeights, M, widths), dInput };
    }),
  );
  const bias = (grad: Float32Array, rows: number, cols: number) =>
    Float32Array.from(columnSums(grad, rows, cols));
  const [dWq, dWk, dWv] = results.flatMap((result) => result.dWeights);
  return {
    gradX: results[0].dInput,
    ...(inputs.context !== undefined && { gradContext: results[1].dInput }),
    gradWeights: {
      wq: dWq,
      wk: dWk,
      wv: dWv,
      wo: gradWo,
      ...(w.bq !== undefined && { bq: bias(dQ, B * Lq, Hq * D) }),
      ...(w.bk !== undefined && { bk: bias(dK, B * Lk, Hkv * D) }),
      ...(w.bv !== undefined && { bv: bias(dV, B * Lk, Hkv * Dv) }),
      ...(w.bo !== undefined && { bo: bias(dY, B * Lq, M) }),
    },
    ...(grads.gradBias && { gradBias: grads.gradBias }),
    ...(grads.gradSinks && { gradSinks: grads.gradSinks }),
  };
}

/**
 * The layer's gradients in float64 throughout: the float64 layer forward
 * ({@link referenceMultiHeadAttention64}'s projections), {@link referenceAttentionBackwardProblem64}
 * on its float64 projections, and float64 products for every weight and input. What conformance
 * compares {@link multiHeadAttentionBackward} against; checked by finite differences in the spec's tests.
 */
export function referenceMultiHeadAttentionBackward64(
  inputs: LayerInputs,
  gradOutput: Float32Array,
  options: AttentionOptions = {},
): ReferenceLayerGradients64 {
  const r = validateLayerFor(BACKWARD, inputs, options).shape;
  const { B, Lq, Lk, Hq, Hkv, D, Dv } = shapeSymbols(r);
  const M = r.modelDim;
  const dY = float32Tensor(BACKWARD, 'gradOutput', gradOutput, B * Lq * M, `B*Lq*modelDim = ${B}*${Lq}*${M}`);
  const { w, q, k, v, shape } = referenceProjections64(inputs, r);
  const source = inputs.context ?? inputs.x;
  const resolved = resolveOptions(options, shape, BACKWARD);
  // The attention output (merged) feeds dWo; the reference forward is the definition of it.
  const forwardProblem = { q, k, v, shape, ...resolved, returnLse: false, returnWeights: false };
  const merged = mergeHeads(referenceAttentionProblem64(forwardProblem).output, B, Lq, Hq, Dv);
  const dY64 = Float64Array.from(dY);
  const gradWo = referenceMatmul64(transpose(merged, B * Lq, Hq * Dv), dY64, Hq * Dv, B * Lq, M);
  const dMerged = referenceMatmul64(dY64, transpose(Float64Array.from(w.wo), Hq * Dv, M), B * Lq, M, Hq * Dv);
  const grads = referenceAttentionBackwardProblem64({
    ...forwardProblem,
    gradOutput: splitHeads(dMerged, B, Lq, Hq, Dv),
  });
  const dQ = mergeHeads(grads.gradQ, B, Lq, Hq, D);
  const dK = mergeHeads(grads.gradK, B, Lk, Hkv, D);
  const dV = mergeHeads(grads.gradV, B, Lk, Hkv, Dv);
  const backProject = (
    input: Float32Array,
    rows: number,
    grad: Float64Array,
    weight: Float32Array,
    cols: number,
  ) => ({
    dWeight: referenceMatmul64(transpose(Float64Array.from(input), rows, M), grad, M, rows, cols),
    dInput: referenceMatmul64(grad, transpose(Float64Array.from(weight), M, cols), rows, cols, M),
  });
  const pq = backProject(inputs.x, B * Lq, dQ, w.wq, Hq * D);
  const pk = backProject(source, B * Lk, dK, w.wk, Hkv * D);
  const pv = backProject(source, B * Lk, dV, w.wv, Hkv * Dv);
  const gradSource = pk.dInput.map((value, index) => value + pv.dInput[index]);
  const gradX =
    inputs.context === undefined ? pq.dInput.map((value, index) => value + gradSource[index]) : pq.dInput;
  return {
    gradX,
    ...(inputs.context !== undefined && { gradContext: gradSource }),
    gradWeights: {
      wq: pq.dWeight,
      wk: pk.dWeight,
      wv: pv.dWeight,
      wo: gradWo,
      ...(w.bq !== undefined && { bq: columnSums(dQ, B * Lq, Hq * D) }),
      ...(w.bk !== undefined && { bk: columnSums(dK, B * Lk, Hkv * D) }),
      ...(w.bv !== undefined && { bv: columnSums(dV, B * Lk, Hkv * Dv) }),
      ...(w.bo !== undefined && { bo: columnSums(dY, B * Lq, M) }),
    },
    ...(grads.gradBias && { gradBias: grads.gradBias }),
    ...(grads.gradSinks && { gradSinks: grads.gradSinks }),
  };
}
