import { AttnkitError, invalidArgument } from './errors.js';
import { OPTION_KEYS } from './features.js';
import type { AttentionOptions, AttentionResult, ResolvedShape, StoragePrecision } from './types.js';
import {
  checkF16Range,
  checkLogitRange,
  float32Tensor,
  maxAbsFinite,
  type ResolvedOptions,
  readOnce,
  resolveOptions,
  STORAGE_PRECISIONS,
} from './validate.js';

/** Sizes of a KV cache: `batch` rows, each holding `[kvHeads, tokens, headDim]` keys and `[kvHeads, tokens, valueDim]` values. */
export interface KVCacheConfig {
  batch: number;
  kvHeads: number;
  headDim: number;
  /** Defaults to `headDim`. */
  valueDim?: number;
  /**
   * Tokens per row to reserve up front (a hint, not a limit: the cache grows past it). Default 0,
   * which reserves nothing until the first append.
   */
  capacity?: number;
  /**
   * How the cache stores K and V. `'f32'` (default): float32. `'f16-storage'`: binary16, each value
   * rounded to nearest on append, accumulated in float32: half the bytes, an error declared
   * separately ({@link f16StorageErrorBound}, spec README "KV cache"). A backend whose capabilities
   * lack `kvCacheF16Storage` rejects it `unsupported`.
   */
  precision?: KVCachePrecision;
}

/** How a KV cache stores keys and values ({@link KVCacheConfig.precision}): the stateless option's values. */
export type KVCachePrecision = StoragePrecision;

/** Every {@link KVCachePrecision}, in the order the error message lists them. */
export const KV_CACHE_PRECISIONS: readonly KVCachePrecision[] = STORAGE_PRECISIONS;

/** {@link KVCacheConfig} with its defaults applied. */
export interface ResolvedKVCacheConfig {
  batch: number;
  kvHeads: number;
  headDim: number;
  valueDim: number;
  capacity: number;
  precision: KVCachePrecision;
}

/** New keys and values for every row. */
export interface KVCacheAppend {
  /** `[B, Hkv, tokens, D]`. */
  k: Float32Array;
  /** `[B, Hkv, tokens, Dv]`. */
  v: Float32Array;
  tokens: number;
  /**
   * Per row, how many of the `tokens` (the first ones) row `b` keeps: ragged rows in one call.
   * Default: every row keeps all of them.
   */
  lengths?: readonly number[];
}

/** The queries of a cache attention call. */
export interface KVCacheQuery {
  /** `[B, Hq, Lq, D]`; row `b`'s query `i` sits at position `lengths[b] - Lq + i`. */
  q: Float32Array;
  queryHeads: number;
  queryLength: number;
}

/** The options {@link KVCache.attention} accepts: the stateless ones without keyMask, bias and returnWeights. */
export type KVCacheAttentionOptions = Omit<AttentionOptions, 'keyMask' | 'bias' | 'returnWeights'>;

/** A validated append: what a cache implementation receives. */
export interface KVCacheAppendProblem {
  k: Float32Array;
  v: Float32Array;
  tokens: number;
  /** Tokens each row keeps, `0 <= kept[b] <= tokens`. */
  kept: readonly number[];
}

/** A validated cache attention call, every default resolved (keyMask, bias: null; returnWeights: false). */
export interface KVCacheAttentionProblem extends ResolvedOptions {
  q: Float32Array;
  /** `keyLength` is the longest row; each row uses its own `lengths[b]`. */
  shape: ResolvedShape;
  /** Tokens each row holds now, `lengths[b] >= queryLength`. */
  lengths: readonly number[];
}

/**
 * A per-sequence key/value store for decoding: append the new token's K/V, attend with the new
 * query, repeat. Created by {@link AttentionBackend.createKVCache}; see the spec README ("KV cache").
 */
export interface KVCache {
  readonly config: Readonly<ResolvedKVCacheConfig>;
  /** Tokens held per row (a copy). */
  readonly lengths: readonly number[];
  /** Copies `k` and `v` into the cache before it returns. */
  append(chunk: KVCacheAppend): Promise<void>;
  /**
   * Attention of `q` over each row's cached keys, as the stateless definition with `Lk = lengths[b]`
   * per row (bottom-right positions). `keyMask`, `bias` and `returnWeights` are rejected `unsupported`.
   */
  attention<O extends KVCacheAttentionOptions = KVCacheAttentionOptions>(
    query: KVCacheQuery,
    options?: O & { [K in Exclude<keyof O, keyof KVCacheAttentionOptions>]: never },
  ): Promise<AttentionResult & (O extends { returnLse: true } ? { lse: Float32Array } : unknown)>;
  /** Rolls rows back to `lengths` tokens (one number for every row, or one per row). Never grows a row. */
  truncate(lengths: number | readonly number[]): Promise<void>;
  /** Frees the cache; later calls reject `disposed`. Idempotent. */
  dispose(): Promise<void>;
}

/**
 * What a backend implements for a cache. The gate validates every call, keeps `lengths`, and calls
 * these in the caller's tick, so `append` must copy `k`/`v` in its synchronous prefix.
 */
export interface KVCacheImplementation {
  append(problem: KVCacheAppendProblem): void;
  attention(problem: KVCacheAttentionProblem): Promise<AttentionResult>;
  /** Every `lengths[b]` is at most the row's current length. */
  truncate(lengths: readonly number[]): void;
  dispose(): void;
}

const CONFIG_KEYS: ReadonlySet<string> = new Set([
  'batch',
  'kvHeads',
  'headDim',
  'valueDim',
  'capacity',
  'precision',
]);
const APPEND_KEYS: ReadonlySet<string> = new Set(['k', 'v', 'tokens', 'lengths']);
const QUERY_KEYS: ReadonlySet<string> = new Set(['q', 'queryHeads', 'queryLength']);
/** Options of the stateless call that a cache cannot take: they are shaped `[.., Lk]` and Lk differs per row. */
const CACHE_UNSUPPORTED = ['keyMask', 'bias', 'returnWeights'] as const;
const MAX_ELEMENTS = 2 ** 31 - 1;

function integerAtLeast(context: string, argument: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    invalidArgument(context, argument, `an integer >= ${min}`, value);
  }
  if (value > MAX_ELEMENTS) invalidArgument(context, argument, `at most ${MAX_ELEMENTS}`, value);
  return value;
}

function product(context: string, argument: string, factors: readonly number[]): number {
  let p = 1;
  for (const f of factors) p *= f;
  if (p > MAX_ELEMENTS) invalidArgument(context, argument, `at most ${MAX_ELEMENTS} elements`, p);
  return p;
}

/** One read of an array's length and of each entry (it may be a Proxy), each an integer in `[min, max[b]]`. */
function perRow(
  context: string,
  argument: string,
  value: unknown,
  batch: number,
  max: (b: number) => number,
  maxText: (b: number) => string,
): number[] {
  if (!Array.isArray(value)) invalidArgument(context, argument, `an array of ${batch} integers`, value);
  const length = (value as unknown[]).length;
  if (length !== batch) invalidArgument(context, `${argument}.length`, `${batch} (batch)`, length);
  const out: number[] = [];
  for (let b = 0; b < batch; b++) {
    const entry: unknown = (value as unknown[])[b];
    const n = integerAtLeast(context, `${argument}[${b}]`, entry, 0);
    if (n > max(b)) invalidArgument(context, `${argument}[${b}]`, maxText(b), n);
    out.push(n);
  }
  return out;
}

/** Validates a {@link KVCacheConfig}. */
export function validateKVCacheConfig(given: unknown): ResolvedKVCacheConfig {
  const context = 'createKVCache';
  const config = readOnce(
    context,
    'config',
    given,
    CONFIG_KEYS,
    'an object { batch, kvHeads, headDim, valueDim?, capacity?, precision? }',
  );
  const batch = integerAtLeast(context, 'config.batch', config.batch, 1);
  const kvHeads = integerAtLeast(context, 'config.kvHeads', config.kvHeads, 1);
  const headDim = integerAtLeast(context, 'config.headDim', config.headDim, 1);
  const valueDim =
    config.valueDim === undefined ? headDim : integerAtLeast(context, 'config.valueDim', config.valueDim, 1);
  const capacity =
    config.capacity === undefined ? 0 : integerAtLeast(context, 'config.capacity', config.capacity, 0);
  product(context, 'config.capacity', [batch, kvHeads, capacity, Math.max(headDim, valueDim)]);
  const precision = config.precision === undefined ? 'f32' : config.precision;
  if (!KV_CACHE_PRECISIONS.includes(precision as KVCachePrecision)) {
    invalidArgument(
      context,
      'config.precision',
      `one of ${KV_CACHE_PRECISIONS.map((p) => `'${p}'`).join(', ')}`,
      precision,
    );
  }
  return { batch, kvHeads, headDim, valueDim, capacity, precision: precision as KVCachePrecision };
}

/** Validates an append against the cache's config and current lengths. */
export function validateKVCacheAppend(
  config: ResolvedKVCacheConfig,
  lengths: readonly number[],
  given: unknown,
): KVCacheAppendProblem {
  const context = 'cache.append';
  const { batch: B, kvHeads: Hkv, headDim: D, valueDim: Dv } = config;
  const chunk = readOnce(context, 'chunk', given, APPEND_KEYS, 'an object { k, v, tokens, lengths? }');
  const tokens = integerAtLeast(context, 'chunk.tokens', chunk.tokens, 1);
  const k = float32Tensor(
    context,
    'chunk.k',
    chunk.k,
    product(context, 'chunk.k', [B, Hkv, tokens, D]),
    `B*Hkv*tokens*D = ${B}*${Hkv}*${tokens}*${D}`,
  );
  const v = float32Tensor(
    context,
    'chunk.v',
    chunk.v,
    product(context, 'chunk.v', [B, Hkv, tokens, Dv]),
    `B*Hkv*tokens*Dv = ${B}*${Hkv}*${tokens}*${Dv}`,
  );
  // A finite value binary16 cannot hold would be stored as infinity: rejected, as float32 overflow is.
  if (config.precision === 'f16-storage')
    checkF16Range(context, [
      ['chunk.k', k],
      ['chunk.v', v],
    ]);
  const kept =
    chunk.lengths === undefined
      ? new Array<number>(B).fill(tokens)
      : perRow(
          context,
          'chunk.lengths',
          chunk.lengths,
          B,
          () => tokens,
          () => `at most chunk.tokens (${tokens})`,
        );
  for (let b = 0; b < B; b++) {
    if (lengths[b] + kept[b] > MAX_ELEMENTS) {
      invalidArgument(
        context,
        `chunk.lengths[${b}]`,
        `a row length at most ${MAX_ELEMENTS}`,
        lengths[b] + kept[b],
      );
    }
  }
  return { k, v, tokens, kept };
}

/** Validates a cache attention call against the cache's config and current lengths. */
export function validateKVCacheAttention(
  config: ResolvedKVCacheConfig,
  lengths: readonly number[],
  maxAbsKey: number,
  given: unknown,
  givenOptions: unknown,
): KVCacheAttentionProblem {
  const context = 'cache.attention';
  const { batch: B, kvHeads: Hkv, headDim: D, valueDim: Dv } = config;
  const query = readOnce(context, 'query', given, QUERY_KEYS, 'an object { q, queryHeads, queryLength }');
  const queryHeads = integerAtLeast(context, 'query.queryHeads', query.queryHeads, 1);
  if (queryHeads % Hkv !== 0) {
    invalidArgument(context, 'query.queryHeads', `a multiple of kvHeads (${Hkv})`, queryHeads);
  }
  const queryLength = integerAtLeast(context, 'query.queryLength', query.queryLength, 1);
  const q = float32Tensor(
    context,
    'query.q',
    query.q,
    product(context, 'query.q', [B, queryHeads, queryLength, D]),
    `B*Hq*Lq*D = ${B}*${queryHeads}*${queryLength}*${D}`,
  );
  product(context, 'output', [B, queryHeads, queryLength, Dv]);
  // A query row must sit at a position >= 0: a row shorter than the query has no defined positions.
  for (let b = 0; b < B; b++) {
    if (lengths[b] < queryLength) {
      invalidArgument(
        context,
        `cache.lengths[${b}]`,
        `at least query.queryLength (${queryLength}): append the query's own tokens first`,
        lengths[b],
      );
    }
  }
  // One read of every option key into a plain copy; resolveOptions then reads the copy, not the caller's object.
  const options = readOnce(context, 'options', givenOptions ?? {}, OPTION_KEYS, 'an object');
  for (const key of CACHE_UNSUPPORTED) {
    if (options[key] !== undefined) {
      throw new AttnkitError(
        'unsupported',
        `${context}: options.${key} is not supported on a KV cache (its Lk differs per row)`,
        { argument: `options.${key}`, expected: 'absent', actual: key },
      );
    }
  }
  let keyLength = queryLength;
  for (const n of lengths) keyLength = Math.max(keyLength, n);
  const shape: ResolvedShape = {
    batch: B,
    queryHeads,
    kvHeads: Hkv,
    queryLength,
    keyLength,
    headDim: D,
    valueDim: Dv,
  };
  const resolved = resolveOptions(options as AttentionOptions, shape, context);
  checkLogitRange(context, q, maxAbsKey, D, resolved.scale);
  return { q, shape, lengths: [...lengths], ...resolved };
}

/** Validates the argument of `truncate`: one number for every row or one per row, each at most the row's length. */
export function validateKVCacheTruncate(lengths: readonly number[], given: unknown): number[] {
  const context = 'cache.truncate';
  const B = lengths.length;
  if (typeof given === 'number') {
    const n = integerAtLeast(context, 'lengths', given, 0);
    for (let b = 0; b < B; b++) {
      if (n > lengths[b]) {
        invalidArgument(context, 'lengths', `at most every row's length (row ${b} holds ${lengths[b]})`, n);
      }
    }
    return new Array<number>(B).fill(n);
  }
  return perRow(
    context,
    'lengths',
    given,
    B,
    (b) => lengths[b],
    (b) => `at most the row's current length (${lengths[b]})`,
  );
}

/** Largest finite |x| of a chunk of keys: the cache keeps a running bound for the float32 overflow rule. */
export function maxAbsKeyOf(k: Float32Array): number {
  return maxAbsFinite(k);
}
