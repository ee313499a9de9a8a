import type { AttentionOptions } from './types.js';

/**
 * The features of a backend: options and shape classes it may or may not support, each mapped to a
 * rule of the semantics (spec README), and its methods beyond `attention`. One table lists every
 * option of `attention` with the feature a call using it needs, so the option keys validation
 * accepts and the option features cannot drift apart.
 */

/**
 * Every option of `attention` ({@link AttentionOptions}) and the feature a call that uses it needs;
 * `null` for one every backend must support. A new option that is left out is a type error here.
 */
export const OPTION_FEATURES = {
  scale: null,
  causal: 'causal',
  slidingWindow: 'slidingWindow',
  keyMask: 'keyMask',
  bias: 'bias',
  alibiSlopes: 'alibiSlopes',
  softcap: 'softcap',
  sinks: 'sinks',
  returnLse: 'returnLse',
  returnWeights: 'returnWeights',
  /** `precision: 'f16-storage'`: q, k, v stored as binary16 (spec README, "f16 storage"). */
  precision: 'f16Storage',
} as const satisfies Record<keyof Required<AttentionOptions>, string | null>;

/** Shape classes a backend may or may not support: Hkv < Hq, Lk != Lq, Dv != D. */
const SHAPE_FEATURE_NAMES = ['groupedQuery', 'crossAttention', 'valueDim'] as const;

/**
 * Features that are methods of a backend rather than options of `attention`: `createKVCache`
 * ("KV cache"), its `precision: 'f16-storage'` config (needs `kvCache`), `attentionBackward`
 * ("Backward") and float16 device tensors (`upload(data, { dtype: 'float16' })`, `attentionBuffers`
 * with `precision: 'f16-storage'`; needs device-resident calls and `f16Storage`). Not in
 * {@link ALL_FEATURES}.
 */
const METHOD_FEATURE_NAMES = ['kvCache', 'kvCacheF16Storage', 'backward', 'deviceF16Storage'] as const;

type OptionFeature = Exclude<(typeof OPTION_FEATURES)[keyof typeof OPTION_FEATURES], null>;

/** Options and shape classes a backend may or may not support, and its methods beyond `attention`. */
export type AttentionFeature =
  | OptionFeature
  | (typeof SHAPE_FEATURE_NAMES)[number]
  | (typeof METHOD_FEATURE_NAMES)[number];

/** The shape classes, as features. */
export const SHAPE_FEATURES: readonly AttentionFeature[] = SHAPE_FEATURE_NAMES;

/** The method features (above). */
export const METHOD_FEATURES: readonly AttentionFeature[] = METHOD_FEATURE_NAMES;

/**
 * Every feature of the stateless `attention` call (its options', in {@link OPTION_FEATURES} order,
 * then the shape classes), for backends that support them all. A capabilities list holds these and
 * {@link METHOD_FEATURES} members, nothing else.
 */
export const ALL_FEATURES: readonly AttentionFeature[] = [
  ...Object.values(OPTION_FEATURES).filter((f): f is OptionFeature => f !== null),
  ...SHAPE_FEATURES,
];

/** Every key of {@link AttentionOptions}; the cache's options are read against the same list. */
export const OPTION_KEYS: ReadonlySet<string> = new Set(Object.keys(OPTION_FEATURES));
