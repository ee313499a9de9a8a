import {
  type AttentionBackend,
  type AttentionOptions,
  type AttentionProblem,
  type BackendCapabilities,
  createReferenceBackend,
  type LayerGradients,
  type LayerInputs,
  type LayerShape,
  mergeHeads,
  multiHeadAttentionBackward,
  multiHeadAttentionForward,
  type ReferenceLayerGradients64,
  referenceMultiHeadAttentionBackward64,
  resolveOptions,
  resolveShape,
  shapeSymbols,
  splitHeads,
  type Tolerance,
  validateAttention,
  validateLayer,
} from '@attnkit/spec';
import { expectRejection, outcomeOf, unsupportedReason } from '../check.js';
import { Comparison, describe, type NaiveValues } from '../compare.js';
import { naiveAttention32, naiveMatmul32, naiveProjections32 } from '../naive.js';
import { naiveBackwardOfForward32 } from '../naive-backward.js';
import { DataSource, hashString } from '../random.js';
import type { CaseOutcome, ConformanceCase } from '../types.js';
import { repeated } from './behaviour.js';
import { customCase, layerWork } from './helpers.js';

/**
 * `backward-layer/*`: the gradients of the multi-head attention layer (`multiHeadAttentionBackward`
 * over the backend's matmul, attention and attentionBackward) against the float64 layer reference
 * `referenceMultiHeadAttentionBackward64`, under the backend's declared tolerance. The naive float32
 * yardstick is `naiveMultiHeadAttentionBackward32` below, composed from the spec text in float32.
 * A backend without `backward` must reject every case `unsupported`.
 */

const f = Math.fround;

type Gradients32 = {
  gradX: Float32Array;
  gradContext?: Float32Array;
  gradWeights: Record<string, Float32Array | undefined>;
  gradBias?: Float32Array;
  gradSinks?: Float32Array;
};

function transpose32(a: ArrayLike<number>, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

/** Column sums in float32, in row order. */
function columnSums32(a: ArrayLike<number>, rows: number, cols: number): Float32Array {
  const out = new Float32Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c] = f(out[c] + a[r * cols + c]);
  return out;
}

/**
 * The layer's gradients composed naively in float32 from the spec: the naive float32 forward
 * (naive.ts's matmul and attention), then each product of the layer's chain rule as its own naive
 * float32 matmul, the three input paths of self-attention added in float32. Never calls a backend.
 */
export function naiveMultiHeadAttentionBackward32(
  inputs: LayerInputs,
  gradOutput: Float32Array,
  options: AttentionOptions = {},
): Gradients32 {
  const r = validateLayer(inputs, options).shape;
  const { B, Lq, Lk, Hq, Hkv, D, Dv } = shapeSymbols(r);
  const M = r.modelDim;
  const { weights: w } = inputs;
  const source = inputs.context ?? inputs.x;
  const { q, k, v, shape } = naiveProjections32(inputs, r);
  const problem = validateAttention(
    { q, k, v, shape },
    { ...options, returnLse: true, returnWeights: false },
  );
  const attended = naiveAttention32(problem);
  const merged = mergeHeads(attended.output, B, Lq, Hq, Dv);
  const gradWo = naiveMatmul32(transpose32(merged, B * Lq, Hq * Dv), gradOutput, Hq * Dv, B * Lq, M);
  const dMerged = naiveMatmul32(gradOutput, transpose32(w.wo, Hq * Dv, M), B * Lq, M, Hq * Dv);
  const grads = naiveBackwardOfForward32(
    problem,
    attended.output,
    attended.lse as Float32Array,
    splitHeads(dMerged, B, Lq, Hq, Dv),
  );
  const dQ = mergeHeads(grads.gradQ, B, Lq, Hq, D);
  const dK = mergeHeads(grads.gradK, B, Lk, Hkv, D);
  const dV = mergeHeads(grads.gradV, B, Lk, Hkv, Dv);
  const dInput = (grad: Float32Array, weight: Float32Array, rows: number, cols: number) =>
    naiveMatmul32(grad, transpose32(weight, M, cols), rows, cols, M);
  const dWeight = (input: Float32Array, grad: Float32Array, rows: number, cols: number) =>
    naiveMatmul32(transpose32(input, rows, M), grad, M, rows, cols);
  const fromQ = dInput(dQ, w.wq, B * Lq, Hq * D);
  const fromK = dInput(dK, w.wk, B * Lk, Hkv * D);
  const fromV = dInput(dV, w.wv, B * Lk, Hkv * Dv);
  const fromKV = fromK.map((value, index) => f(value + fromV[index]));
  return {
    gradX: inputs.context === undefined ? fromQ.map((value, index) => f(value + fromKV[index])) : fromQ,
    ...(inputs.context !== undefined && { gradContext: fromKV }),
    gradWeights: {
      wq: dWeight(inputs.x, dQ, B * Lq, Hq * D),
      wk: dWeight(source, dK, B * Lk, Hkv * D),
      wv: dWeight(source, dV, B * Lk, Hkv * Dv),
      wo: gradWo,
      ...(w.bq && { bq: columnSums32(dQ, B * Lq, Hq * D) }),
      ...(w.bk && { bk: columnSums32(dK, B * Lk, Hkv * D) }),
      ...(w.bv && { bv: columnSums32(dV, B * Lk, Hkv * Dv) }),
      ...(w.bo && { bo: columnSums32(gradOutput, B * Lq, M) }),
    },
    ...(grads.gradBias && { gradBias: grads.gradBias }),
    ...(grads.gradSinks && { gradSinks: grads.gradSinks }),
  };
}

/** The attention problem the layer's calls will make, for the capability check (tensors omitted). */
function layerProblem(inputs: LayerInputs, options: AttentionOptions): AttentionProblem {
  const { modelDim: _modelDim, ...attentionShape } = inputs.shape;
  const shape = resolveShape(attentionShape);
  const empty = new Float32Array(0);
  return { q: empty, k: empty, v: empty, shape, ...resolveOptions(options, shape), returnLse: true };
}

/** Why the backend cannot run this layer backward (`unsupported`), or null. */
function backwardUnsupported(
  name: string,
  capabilities: BackendCapabilities,
  inputs: LayerInputs,
  options: AttentionOptions,
): string | null {
  if (!capabilities.features.includes('backward')) return `backend "${name}" does not list backward`;
  return unsupportedReason(name, capabilities, layerProblem(inputs, options));
}

/** Every gradient the reference has, with the row length its naive error is taken over. */
function gradientTensors(
  inputs: LayerInputs,
  reference: ReferenceLayerGradients64,
): { path: string; ref: Float64Array; row: number }[] {
  const r = validateLayer(inputs).shape;
  const { modelDim: M, queryHeads: Hq, kvHeads: Hkv, headDim: D, valueDim: Dv } = r;
  const list: { path: string; ref: Float64Array; row: number }[] = [
    { path: 'gradX', ref: reference.gradX, row: M },
  ];
  if (reference.gradContext) list.push({ path: 'gradContext', ref: reference.gradContext, row: M });
  const cols: Record<string, number> = { wq: Hq * D, wk: Hkv * D, wv: Hkv * Dv, wo: M };
  for (const [key, ref] of Object.entries(reference.gradWeights)) {
    if (ref !== undefined) list.push({ path: `gradWeights.${key}`, ref, row: cols[key] ?? ref.length });
  }
  if (reference.gradBias) list.push({ path: 'gradBias', ref: reference.gradBias, row: r.keyLength });
  if (reference.gradSinks) list.push({ path: 'gradSinks', ref: reference.gradSinks, row: 1 });
  return list;
}

function pick(gradients: object, path: string): unknown {
  let value: unknown = gradients;
  for (const key of path.split('.')) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/** The largest finite `|values - ref|` in each row of `rowLength`, 0 where values are missing. */
function rowErrors(values: ArrayLike<number> | undefined, ref: ArrayLike<number>, rowLength: number) {
  const errors = new Float64Array(Math.ceil(ref.length / rowLength));
  if (values === undefined || values.length !== ref.length) return errors;
  for (let index = 0; index < ref.length; index++) {
    const error = Math.abs(values[index] - ref[index]);
    const row = Math.floor(index / rowLength);
    if (Number.isFinite(error) && error > errors[row]) errors[row] = error;
  }
  return errors;
}

/**
 * One gradient against the float64 layer reference. The layer hands float32 tensors from call to
 * call (projections, attention output, its gradient, dQ/dK/dV), so even a backend exact in every
 * call is off the float64 layer by those roundings, amplified by the cancellation in the sums that
 * follow (dWo = merged^T dY over B*Lq rows, dx = [dQ|dK|dV] W^T): measured on the reference backend
 * (atol 1e-7, rtol 1e-6) up to 1.4 times its declared bound. That error is the layer API's, not the
 * backend's, so it is allowed on top, per row: `|got - ref| <= atol + rtol*|ref| + fudge*err32 +
 * errHandoff`, where `errHandoff` is the row's worst `|exact - ref|` for the layer over the reference
 * backend (`Comparison.tensor`'s allowance).
 */
function compareGradient(
  comparison: Comparison,
  name: string,
  got: unknown,
  ref: Float64Array,
  naiveValues: NaiveValues,
  handoff: Float32Array,
  rowLength: number,
): void {
  comparison.tensor(
    name,
    got,
    ref,
    naiveValues,
    rowLength,
    rowErrors(handoff, ref, rowLength),
    'float32 hand-off error',
  );
}

/** Layer gradients of the backend against the float64 layer reference, or the `unsupported` rejection. */
export async function checkLayerBackward(
  backend: AttentionBackend,
  capabilities: BackendCapabilities,
  tolerance: Tolerance,
  inputs: LayerInputs,
  gradOutput: Float32Array,
  options: AttentionOptions = {},
  useSaved = false,
): Promise<CaseOutcome> {
  const reason = backwardUnsupported(backend.name, capabilities, inputs, options);
  if (reason !== null) {
    const outcome = await expectRejection(
      () => multiHeadAttentionBackward(backend, inputs, gradOutput, options),
      'unsupported',
    );
    return {
      ...outcome,
      message: outcome.ok
        ? `rejected as expected: ${outcome.message}`
        : `${outcome.message} (capabilities say: ${reason})`,
    };
  }
  const reference = referenceMultiHeadAttentionBackward64(inputs, gradOutput, options);
  let got: LayerGradients;
  try {
    const saved = useSaved ? (await multiHeadAttentionForward(backend, inputs, options)).saved : undefined;
    got = await multiHeadAttentionBackward(backend, inputs, gradOutput, options, saved);
  } catch (error) {
    return {
      ok: false,
      expectation: 'match-reference',
      message: `multiHeadAttentionBackward rejected: ${describe(error)}`,
    };
  }
  // The float32 hand-off yardstick: the same layer over the reference backend (each call the float64
  // reference rounded once), i.e. what a backend exact in every call returns.
  const exact = createReferenceBackend();
  let handoff: LayerGradients;
  try {
    handoff = await multiHeadAttentionBackward(exact, inputs, gradOutput, options);
  } finally {
    await exact.dispose();
  }
  const comparison = new Comparison(tolerance);
  let naive: Gradients32 | null = null;
  const lazy = () => {
    naive ??= naiveMultiHeadAttentionBackward32(inputs, gradOutput, options);
    return naive;
  };
  for (const { path, ref, row } of gradientTensors(inputs, reference)) {
    compareGradient(
      comparison,
      path,
      pick(got, path),
      ref,
      () => pick(lazy(), path) as Float32Array | undefined,
      pick(handoff, path) as Float32Array,
      row,
    );
  }
  for (const extra of ['gradContext', 'gradBias', 'gradSinks'] as const) {
    if (got[extra] !== undefined && reference[extra] === undefined)
      comparison.fail(`${extra}: returned, but the call has no ${extra.slice(4).toLowerCase()}`);
  }
  return outcomeOf(comparison);
}

/** Layer data of moderate size: uniform inputs, weights scaled by 1/sqrt(fan-in), so softmax is not saturated. */
function inputsOf(data: DataSource, shape: LayerShape, cross: boolean, biases: boolean): LayerInputs {
  const { batch: B, queryLength: Lq, modelDim: M, queryHeads: Hq, headDim: D } = shape;
  const Lk = shape.keyLength ?? Lq;
  const Hkv = shape.kvHeads ?? Hq;
  const Dv = shape.valueDim ?? D;
  const weight = (fanIn: number, length: number) => {
    const a = Math.sqrt(3 / fanIn) * 1.5;
    return data.uniform(length, -a, a);
  };
  return {
    x: data.uniform(B * Lq * M),
    ...(cross && { context: data.uniform(B * Lk * M) }),
    weights: {
      wq: weight(M, M * Hq * D),
      wk: weight(M, M * Hkv * D),
      wv: weight(M, M * Hkv * Dv),
      wo: weight(Hq * Dv, Hq * Dv * M),
      ...(biases && {
        bq: data.uniform(Hq * D, -0.5, 0.5),
        bk: data.uniform(Hkv * D, -0.5, 0.5),
        bv: data.uniform(Hkv * Dv, -0.5, 0.5),
        bo: data.uniform(M, -0.5, 0.5),
      }),
    },
    shape,
  };
}

interface LayerBackwardSpec {
  shape: LayerShape;
  cross: boolean;
  biases: boolean;
  options?: (data: DataSource, shape: LayerShape) => AttentionOptions;
  /** Pass the saved activations of multiHeadAttentionForward instead of recomputing. */
  saved?: boolean;
}

function layerBackwardCase(id: string, title: string, spec: LayerBackwardSpec): ConformanceCase {
  // forward (or its recomputation) + backward: about 3.5 times the forward's work
  return customCase(id, title, Math.ceil(layerWork(spec.shape) * 3.5), async (context) => {
    const data = new DataSource(hashString(id));
    const inputs = inputsOf(data, spec.shape, spec.cross, spec.biases);
    const options = spec.options?.(data, spec.shape) ?? {};
    const { batch: B, queryLength: Lq, modelDim: M } = spec.shape;
    const gradOutput = data.uniform(B * Lq * M);
    return checkLayerBackward(
      await context.backend(),
      context.capabilities,
      context.tolerance,
      inputs,
      gradOutput,
      options,
      spec.saved ?? false,
    );
  });
}

export function backwardLayerCases(): ConformanceCase[] {
  const self = { batch: 2, queryLength: 5, modelDim: 8, queryHeads: 2, headDim: 4 };
  const gqa = { batch: 2, queryLength: 6, modelDim: 12, queryHeads: 4, kvHeads: 2, headDim: 3, valueDim: 5 };
  return [
    layerBackwardCase('backward-layer/self', 'layer gradients, self-attention', {
      shape: self,
      cross: false,
      biases: false,
    }),
    layerBackwardCase('backward-layer/self-biases-causal', 'layer gradients with projection biases, causal', {
      shape: self,
      cross: false,
      biases: true,
      options: () => ({ causal: true }),
    }),
    layerBackwardCase('backward-layer/self-saved', 'layer gradients from the saved forward activations', {
      shape: self,
      cross: false,
      biases: true,
      options: () => ({ causal: true, slidingWindow: 2 }),
      saved: true,
    }),
    layerBackwardCase('backward-layer/cross-keyMask', 'cross-attention layer gradients with a padding mask', {
      shape: { ...self, keyLength: 7 },
      cross: true,
      biases: true,
      // batch 1 sees no key at all: its attention gradients are zero
      options: () => ({ keyMask: new Uint8Array([1, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]) }),
    }),
    layerBackwardCase('backward-layer/gqa-causal-dv', 'GQA 4:2 layer gradients, causal, Dv != D', {
      shape: gqa,
      cross: false,
      biases: true,
      options: () => ({ causal: true }),
    }),
    layerBackwardCase(
      'backward-layer/mqa-cross-options',
      'MQA cross layer gradients: ALiBi, sinks, softcap, bias',
      {
        shape: { batch: 2, queryLength: 3, keyLength: 6, modelDim: 6, queryHeads: 3, kvHeads: 1, headDim: 2 },
        cross: true,
        biases: true,
        options: (data) => ({
          alibiSlopes: new Float32Array([0.25, 0.5, 1]),
          sinks: new Float32Array([0, 1, -1]),
          softcap: 2,
          // per head and key, broadcast over batch and query rows: its gradient sums them
          bias: { data: data.uniform(3 * 6), shape: [1, 3, 1, 6] },
        }),
      },
    ),
    layerBackwardCase('backward-layer/odd-sizes', 'layer gradients at odd sizes: Lq 13, Lk 17, modelDim 7', {
      shape: {
        batch: 1,
        queryLength: 13,
        keyLength: 17,
        modelDim: 7,
        queryHeads: 3,
        headDim: 5,
        valueDim: 3,
      },
      cross: true,
      biases: false,
      options: () => ({ causal: true }),
    }),
    customCase(
      'backward-layer/determinism',
      'the layer backward twice on the same input: the same bits (when capabilities.deterministic)',
      Math.ceil(layerWork(gqa) * 7),
      async (context) => {
        const id = 'backward-layer/determinism';
        const data = new DataSource(hashString(id));
        const inputs = inputsOf(data, gqa, false, true);
        const gradOutput = data.uniform(gqa.batch * gqa.queryLength * gqa.modelDim);
        const options = { causal: true };
        const backend = await context.backend();
        const first = await checkLayerBackward(
          backend,
          context.capabilities,
          context.tolerance,
          inputs,
          gradOutput,
          options,
        );
        if (!first.ok || first.expectation !== 'match-reference') return first;
        if (!context.capabilities.deterministic) {
          return {
            ...first,
            expectation: 'behaviour',
            message: 'capabilities.deterministic is false: checked against the reference only',
          };
        }
        const [a, b] = [
          await multiHeadAttentionBackward(backend, inputs, gradOutput, options),
          await multiHeadAttentionBackward(backend, inputs, gradOutput, options),
        ];
        const comparison = new Comparison(context.tolerance);
        comparison.identical('gradX', a.gradX, b.gradX);
        for (const key of ['wq', 'wk', 'wv', 'wo', 'bq', 'bk', 'bv', 'bo'] as const)
          comparison.identical(`gradWeights.${key}`, a.gradWeights[key], b.gradWeights[key]);
        return { ...first, ok: comparison.ok, expectation: 'behaviour', message: comparison.summary() };
      },
    ),
    customCase(
      'backward-layer/memory',
      '100 layer backward calls (forward saved): backend.memory() stays flat',
      Math.ceil(layerWork(self) * 3.5 * 100),
      async (context) => {
        const id = 'backward-layer/memory';
        const data = new DataSource(hashString(id));
        const inputs = inputsOf(data, self, false, true);
        const gradOutput = data.uniform(self.batch * self.queryLength * self.modelDim);
        const options = { causal: true };
        if (backwardUnsupported('backend', context.capabilities, inputs, options) !== null) {
          const backend = await context.backend();
          return checkLayerBackward(
            backend,
            context.capabilities,
            context.tolerance,
            inputs,
            gradOutput,
            options,
          );
        }
        // one call's tensors: the projections, the attention output and its gradients, in float32
        const { batch: B, queryLength: L, modelDim: M, queryHeads: H, headDim: D } = self;
        const perCall = 4 * B * L * (8 * H * D + 4 * M);
        return repeated(context, 100, perCall, async (backend, index) => {
          if (index % 25 === 0)
            return checkLayerBackward(
              backend,
              context.capabilities,
              context.tolerance,
              inputs,
              gradOutput,
              options,
              true,
            );
          const { saved } = await multiHeadAttentionForward(backend, inputs, options);
          await multiHeadAttentionBackward(backend, inputs, gradOutput, options, saved);
          return null;
        });
      },
    ),
    customCase(
      'backward-layer/gradOutput-length',
      'a gradOutput of the wrong length is rejected invalid-argument, naming gradOutput',
      0,
      async (context) => {
        const data = new DataSource(hashString('backward-layer/gradOutput-length'));
        const inputs = inputsOf(data, self, false, false);
        const backend = await context.backend();
        return expectRejection(
          () => multiHeadAttentionBackward(backend, inputs, new Float32Array(2 * 5 * 8 + 1)),
          'invalid-argument',
          'gradOutput',
        );
      },
    ),
  ];
}
