import type {
  AttentionBias,
  AttentionInputs,
  AttentionOptions,
  AttentionShape,
  BackendCapabilities,
  LayerInputs,
  LayerShape,
  MatmulInputs,
  ResolvedShape,
} from '@attnkit/spec';
import { checkAttention, checkLayer, checkMatmul } from '../check.js';
import { DataSource, hashString } from '../random.js';
import type { CaseContext, CaseOutcome, ConformanceCase, ResolvedConformanceOptions } from '../types.js';

/** Fills in a shape's defaults (the cases only build valid shapes). */
export function full(shape: AttentionShape): ResolvedShape {
  const kvHeads = shape.kvHeads ?? shape.queryHeads;
  const keyLength = shape.keyLength ?? shape.queryLength;
  const valueDim = shape.valueDim ?? shape.headDim;
  return { ...shape, kvHeads, keyLength, valueDim };
}

/** Multiply-adds of one attention call: scores and the weighted sum. */
export function attentionWork(shape: AttentionShape): number {
  const s = full(shape);
  return s.batch * s.queryHeads * s.queryLength * s.keyLength * (s.headDim + s.valueDim);
}

/** q, k, v uniform in [-1, 1). */
export function uniformInputs(data: DataSource, shape: AttentionShape): AttentionInputs {
  const s = full(shape);
  return {
    q: data.uniform(s.batch * s.queryHeads * s.queryLength * s.headDim),
    k: data.uniform(s.batch * s.kvHeads * s.keyLength * s.headDim),
    v: data.uniform(s.batch * s.kvHeads * s.keyLength * s.valueDim),
    shape,
  };
}

/** A bias of the given broadcast pattern (`true` = full along that axis), values in [-2, 2). */
export function biasOf(
  data: DataSource,
  shape: AttentionShape,
  pattern: readonly [boolean, boolean, boolean, boolean] = [true, true, true, true],
): AttentionBias {
  const s = full(shape);
  const dims = [s.batch, s.queryHeads, s.queryLength, s.keyLength].map((size, axis) =>
    pattern[axis] ? size : 1,
  ) as [number, number, number, number];
  return { data: data.uniform(dims[0] * dims[1] * dims[2] * dims[3], -2, 2), shape: dims };
}

/**
 * Every option at once, with lse and weights (the `options/all` set; `f16-storage/all-options` adds
 * the precision): each mask and score term active, so their order and their interplay are checked.
 */
export function everyOption(data: DataSource, s: ResolvedShape): AttentionOptions {
  return {
    scale: 0.6,
    causal: true,
    slidingWindow: 4,
    keyMask: data.mask(s.batch * s.keyLength, 0.8),
    bias: biasOf(data, s),
    alibiSlopes: data.uniform(s.queryHeads, 0, 0.5),
    softcap: 2,
    sinks: data.uniform(s.queryHeads),
    returnLse: true,
    returnWeights: true,
  };
}

export interface AttentionCaseSpec {
  shape: AttentionShape;
  /** Options, drawn after the inputs from the same stream. */
  options?:
    | AttentionOptions
    | ((data: DataSource, shape: ResolvedShape, inputs: AttentionInputs) => AttentionOptions);
  /** Inputs; default uniform in [-1, 1). May be edited by `options` (e.g. NaN in masked rows). */
  inputs?: (data: DataSource, shape: AttentionShape) => AttentionInputs;
}

function groupOf(id: string): string {
  return id.slice(0, id.indexOf('/'));
}

/** Builds the data of an attention case: deterministic, seeded by the case id. */
export function buildAttention(
  id: string,
  spec: AttentionCaseSpec,
): { inputs: AttentionInputs; options: AttentionOptions } {
  const data = new DataSource(hashString(id));
  const inputs = spec.inputs ? spec.inputs(data, spec.shape) : uniformInputs(data, spec.shape);
  const options =
    typeof spec.options === 'function' ? spec.options(data, full(spec.shape), inputs) : (spec.options ?? {});
  return { inputs, options };
}

/** A case that runs one attention call and compares it with the float64 reference. */
export function attentionCase(id: string, title: string, spec: AttentionCaseSpec): ConformanceCase {
  return {
    id,
    group: groupOf(id),
    title,
    work: () => attentionWork(spec.shape),
    async run(context) {
      const { inputs, options } = buildAttention(id, spec);
      const backend = await context.backend();
      return checkAttention(backend, context.capabilities, context.tolerance, inputs, options);
    },
  };
}

/** A case with its own body. */
export function customCase(
  id: string,
  title: string,
  work: number | ((options: ResolvedConformanceOptions, capabilities: BackendCapabilities | null) => number),
  run: (context: CaseContext) => Promise<CaseOutcome>,
  reduce?: (options: ResolvedConformanceOptions) => string | null,
): ConformanceCase {
  return {
    id,
    group: groupOf(id),
    title,
    work: typeof work === 'number' ? () => work : work,
    run,
    ...(reduce && { reduce }),
  };
}

/** Layer data on a grid of multiples of 1/8: float32 projections are then exact, so only attention rounds. */
export function layerInputs(
  data: DataSource,
  shape: LayerShape,
  cross: boolean,
  biases: boolean,
): LayerInputs {
  const { batch: B, queryLength: Lq, modelDim: M, queryHeads: Hq, headDim: D } = shape;
  const Lk = shape.keyLength ?? Lq;
  const Hkv = shape.kvHeads ?? Hq;
  const Dv = shape.valueDim ?? D;
  const g = (length: number) => data.grid(length, -4, 4, 1 / 8);
  return {
    x: g(B * Lq * M),
    ...(cross && { context: g(B * Lk * M) }),
    weights: {
      wq: g(M * Hq * D),
      wk: g(M * Hkv * D),
      wv: g(M * Hkv * Dv),
      wo: g(Hq * Dv * M),
      ...(biases && { bq: g(Hq * D), bk: g(Hkv * D), bv: g(Hkv * Dv), bo: g(M) }),
    },
    shape,
  };
}

export function layerWork(shape: LayerShape): number {
  const { batch: B, queryLength: Lq, modelDim: M, queryHeads: Hq, headDim: D } = shape;
  const Lk = shape.keyLength ?? Lq;
  const Hkv = shape.kvHeads ?? Hq;
  const Dv = shape.valueDim ?? D;
  return (
    B * Lq * M * Hq * D +
    B * Lk * M * Hkv * (D + Dv) +
    B * Lq * Hq * Dv * M +
    attentionWork({
      batch: B,
      queryHeads: Hq,
      kvHeads: Hkv,
      queryLength: Lq,
      keyLength: Lk,
      headDim: D,
      valueDim: Dv,
    })
  );
}

/** A multi-head attention layer case. */
export function layerCase(
  id: string,
  title: string,
  shape: LayerShape,
  cross: boolean,
  biases: boolean,
  options: AttentionOptions | ((data: DataSource) => AttentionOptions) = {},
): ConformanceCase {
  return customCase(id, title, layerWork(shape), async (context) => {
    const data = new DataSource(hashString(id));
    const inputs = layerInputs(data, shape, cross, biases);
    const resolved = typeof options === 'function' ? options(data) : options;
    return checkLayer(await context.backend(), context.capabilities, context.tolerance, inputs, resolved);
  });
}

/** A matmul case; `edit` may plant values (NaN, Inf) in the inputs. */
export function matmulCase(
  id: string,
  title: string,
  m: number,
  k: number,
  n: number,
  withBias: boolean,
  edit?: (inputs: MatmulInputs) => void,
): ConformanceCase {
  return customCase(id, title, m * k * n, async (context) => {
    const data = new DataSource(hashString(id));
    const inputs: MatmulInputs = {
      a: data.uniform(m * k),
      b: data.uniform(k * n),
      shape: { m, k, n },
      ...(withBias && { bias: data.uniform(n) }),
    };
    edit?.(inputs);
    return checkMatmul(await context.backend(), context.tolerance, inputs);
  });
}

/** Index of element `[b, h, l, d]` of a `[B, H, L, D]` tensor. */
export function at(H: number, L: number, D: number, b: number, h: number, l: number, d: number): number {
  return ((b * H + h) * L + l) * D + d;
}
