import { invalidArgument } from './errors.js';
import { queryPosition, visibleKeyRange } from './masking.js';
import type { AttentionOptions, AttentionShape } from './types.js';
import { resolveShape } from './validate.js';

/** An attention layer's sizes, as the seeds count them. */
export interface LayerConfig {
  /** Embedding width (GPT-3: 12288). */
  modelDim: number;
  /** Query heads (GPT-3: 96). */
  queryHeads: number;
  /** Key/value heads; default `queryHeads`. */
  kvHeads?: number;
  /** Key/query space per head (GPT-3: 128). */
  headDim: number;
  /** Value-down width per head; default `headDim`. */
  valueDim?: number;
  /** Layers (GPT-3: 96); default 1. */
  layers?: number;
  /** Count the projection biases too; default false (GPT-3's figure has none). */
  bias?: boolean;
}

/** Parameter counts, per layer except `total`. */
export interface ParameterCount {
  /** `Wq`: modelDim x (Hq * D). */
  query: number;
  /** `Wk`: modelDim x (Hkv * D). */
  key: number;
  /** `Wv`, the value-down projections: modelDim x (Hkv * Dv). */
  valueDown: number;
  /** `Wo`, the value-up projections stapled into the output matrix: (Hq * Dv) x modelDim. */
  valueUp: number;
  /** Projection biases (0 unless `bias`). */
  biases: number;
  perLayer: number;
  layers: number;
  /** `perLayer * layers`. */
  total: number;
}

function positiveInteger(argument: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    invalidArgument('countParameters', argument, 'a positive integer', value);
  }
  return value;
}

/**
 * Counts attention parameters. For GPT-3 (modelDim 12288, 96 heads of 128, 96 layers) the total is
 * 57,982,058,496: "just under 58 billion", as the seed says.
 */
export function countParameters(config: LayerConfig): ParameterCount {
  const modelDim = positiveInteger('config.modelDim', config.modelDim);
  const queryHeads = positiveInteger('config.queryHeads', config.queryHeads);
  const kvHeads =
    config.kvHeads === undefined ? queryHeads : positiveInteger('config.kvHeads', config.kvHeads);
  const headDim = positiveInteger('config.headDim', config.headDim);
  const valueDim =
    config.valueDim === undefined ? headDim : positiveInteger('config.valueDim', config.valueDim);
  const layers = config.layers === undefined ? 1 : positiveInteger('config.layers', config.layers);
  if (queryHeads % kvHeads !== 0) {
    invalidArgument(
      'countParameters',
      'config.queryHeads',
      `a multiple of config.kvHeads (${kvHeads})`,
      queryHeads,
    );
  }
  const query = modelDim * queryHeads * headDim;
  const key = modelDim * kvHeads * headDim;
  const valueDown = modelDim * kvHeads * valueDim;
  const valueUp = queryHeads * valueDim * modelDim;
  const biases = config.bias ? queryHeads * headDim + kvHeads * headDim + kvHeads * valueDim + modelDim : 0;
  const perLayer = query + key + valueDown + valueUp + biases;
  return { query, key, valueDown, valueUp, biases, perLayer, layers, total: perLayer * layers };
}

/** Floating-point operations of one attention call (a multiply-add counts 2). */
export interface AttentionFlops {
  /** As if every (query, key) pair were computed: `2 * B * Hq * Lq * Lk * (D + Dv)`. */
  dense: number;
  /** Over visible pairs only: what a kernel that skips masked work must do. */
  useful: number;
  /** (query row, key) pairs visible under causal, window and key mask, over all batches and heads. */
  visiblePairs: number;
}

/**
 * Counts attention FLOPs, dense and useful. Only the masks matter (`causal`, `slidingWindow`,
 * `keyMask`); other options are ignored. For D = Dv the dense count is `4 * B * Hq * Lq * Lk * D`.
 */
export function attentionFlops(
  shape: AttentionShape,
  options: Pick<AttentionOptions, 'causal' | 'slidingWindow' | 'keyMask'> = {},
): AttentionFlops {
  const s = resolveShape(shape, 'attentionFlops');
  const causal = options.causal === true;
  const window = options.slidingWindow ?? null;
  if (window !== null && (!Number.isInteger(window) || window < 1)) {
    invalidArgument('attentionFlops', 'options.slidingWindow', 'an integer >= 1', window);
  }
  const mask = options.keyMask ?? null;
  if (mask !== null && mask.length !== s.batch * s.keyLength) {
    invalidArgument(
      'attentionFlops',
      'options.keyMask.length',
      `${s.batch * s.keyLength} (B*Lk)`,
      mask.length,
    );
  }
  let visiblePairs = 0;
  for (let b = 0; b < s.batch; b++) {
    // prefix[j] = visible keys among the first j, so a row's count is one subtraction
    const prefix = new Float64Array(s.keyLength + 1);
    for (let j = 0; j < s.keyLength; j++)
      prefix[j + 1] = prefix[j] + (mask === null || mask[b * s.keyLength + j] !== 0 ? 1 : 0);
    for (let i = 0; i < s.queryLength; i++) {
      const range = visibleKeyRange(
        queryPosition(i, s.queryLength, s.keyLength),
        s.keyLength,
        causal,
        window,
      );
      visiblePairs += prefix[range.end] - prefix[range.start];
    }
  }
  visiblePairs *= s.queryHeads;
  const perPair = 2 * (s.headDim + s.valueDim);
  return {
    dense: s.batch * s.queryHeads * s.queryLength * s.keyLength * perPair,
    useful: visiblePairs * perPair,
    visiblePairs,
  };
}
