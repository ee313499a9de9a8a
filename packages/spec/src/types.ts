/**
 * Sizes of one attention call. Tensors are row-major, contiguous `Float32Array`s:
 * `q [batch, queryHeads, queryLength, headDim]`, `k [batch, kvHeads, keyLength, headDim]`,
 * `v [batch, kvHeads, keyLength, valueDim]`, output `[batch, queryHeads, queryLength, valueDim]`.
 */
export interface AttentionShape {
  /** B: independent sequences. */
  batch: number;
  /** Hq: query heads. */
  queryHeads: number;
  /** Hkv: key/value heads; `queryHeads % kvHeads === 0`. Defaults to `queryHeads` (plain multi-head). */
  kvHeads?: number;
  /** Lq: query positions. */
  queryLength: number;
  /** Lk: key/value positions. Defaults to `queryLength` (self-attention). */
  keyLength?: number;
  /** D: query/key head dimension. */
  headDim: number;
  /** Dv: value head dimension. Defaults to `headDim`. */
  valueDim?: number;
}

/** {@link AttentionShape} with every default applied. */
export interface ResolvedShape {
  batch: number;
  queryHeads: number;
  kvHeads: number;
  queryLength: number;
  keyLength: number;
  headDim: number;
  valueDim: number;
}

/** The three tensors and their shape. */
export interface AttentionInputs {
  /** Queries `[B, Hq, Lq, D]`. */
  q: Float32Array;
  /** Keys `[B, Hkv, Lk, D]`. */
  k: Float32Array;
  /** Values `[B, Hkv, Lk, Dv]`. */
  v: Float32Array;
  shape: AttentionShape;
}

/** An additive bias with an explicit 4-d shape that broadcasts to `[B, Hq, Lq, Lk]`. */
export interface AttentionBias {
  /** Row-major values of `shape`. */
  data: Float32Array;
  /** `[B or 1, Hq or 1, Lq or 1, Lk or 1]`. */
  shape: readonly [number, number, number, number];
}

/**
 * Everything that changes what attention computes. Applied in this order (the spec README's semantics):
 * scale -> softcap -> + bias + ALiBi -> masks (causal, window, keyMask) -> softmax (+ sink) -> values.
 * Query `i` sits at position `p_i = (Lk - Lq) + i` (bottom-right alignment); key `j` at `j`.
 */
export interface AttentionOptions {
  /** Multiplies `dot(q_i, k_j)`. Default `1 / sqrt(headDim)`. Any finite number. */
  scale?: number;
  /** Key `j` is visible to query `i` only if `j <= p_i`. */
  causal?: boolean;
  /** Integer `w >= 1`: visible only if `p_i - j < w` (and, without `causal`, `j - p_i < w`). */
  slidingWindow?: number;
  /** `[B, Lk]`, nonzero = visible: a padding mask per batch row. */
  keyMask?: Uint8Array;
  /** Additive bias, broadcast to `[B, Hq, Lq, Lk]`. */
  bias?: AttentionBias;
  /** `[Hq]`: adds `-slope_h * (p_i - j)` to the score. */
  alibiSlopes?: Float32Array;
  /** `c > 0`: the scaled score becomes `c * tanh(s / c)`, before bias and ALiBi. */
  softcap?: number;
  /** `[Hq]`: one extra logit per head that joins the softmax denominator and contributes no value. */
  sinks?: Float32Array;
  /** Also return `lse [B, Hq, Lq]`: natural log of the softmax denominator, sink included. */
  returnLse?: boolean;
  /** Also return `weights [B, Hq, Lq, Lk]`: the attention pattern. Costs `Lq * Lk` memory. */
  returnWeights?: boolean;
  /**
   * How q, k and v are stored. `'f32'` (default): as given. `'f16-storage'`: each value rounded to
   * the nearest binary16 value (ties to even) before anything else, then the float32 kernel: the
   * result is attention on the rounded inputs, with an error bound declared on top of the backend's
   * tolerance (`f16StorageErrorBound`). Needs the `f16Storage` feature. Only `attention` takes
   * it: every other entry point rejects it `invalid-argument` (spec README, "f16 storage").
   */
  precision?: StoragePrecision;
}

/** How a tensor is stored: float32, or binary16 read into float32 arithmetic. */
export type StoragePrecision = 'f32' | 'f16-storage';

/** What an attention call returns. */
export interface AttentionResult {
  /** `[B, Hq, Lq, Dv]`. A row with no visible key is all zeros. */
  output: Float32Array;
  /** `[B, Hq, Lq]`, present when `returnLse` was set. `-Infinity` for a row with no visible key. */
  lse?: Float32Array;
  /** `[B, Hq, Lq, Lk]`, present when `returnWeights` was set. Zeros for masked keys. */
  weights?: Float32Array;
}

/**
 * The result of a call made with options of type `O`: `returnLse: true` makes `lse` a
 * `Float32Array`, `returnWeights: true` makes `weights` one, so a caller who asked for them need not
 * test for `undefined`. Options whose flags are only known at run time (`boolean`, or a variable typed
 * {@link AttentionOptions}) keep them optional. `AttentionResultFor<AttentionOptions>` is
 * `AttentionResult` with nothing added.
 */
export type AttentionResultFor<O extends AttentionOptions | undefined> = AttentionResult &
  (O extends { returnLse: true } ? { lse: Float32Array } : unknown) &
  (O extends { returnWeights: true } ? { weights: Float32Array } : unknown);

/**
 * `O` with no property that {@link AttentionOptions} lacks. A generic `options?: O` would skip
 * TypeScript's excess-property check, so a typo next to a valid option (`{ causal: true, retrunLse:
 * true }`) would compile; this keeps it an error.
 */
export type KnownAttentionOptions<O> = O & { [K in Exclude<keyof O, keyof AttentionOptions>]: never };

/** A bias ready for indexing: strides are 0 along broadcast dimensions. */
export interface ResolvedBias {
  data: Float32Array;
  shape: readonly [number, number, number, number];
  /** Element strides for `[b, h, i, j]`, 0 where the dimension is broadcast. */
  strides: readonly [number, number, number, number];
}

/**
 * A validated attention call with every default resolved: what a backend implementation receives.
 * Absent options are `null`, never `undefined`, so kernels test one thing.
 */
export interface AttentionProblem {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  shape: ResolvedShape;
  scale: number;
  causal: boolean;
  slidingWindow: number | null;
  keyMask: Uint8Array | null;
  bias: ResolvedBias | null;
  alibiSlopes: Float32Array | null;
  softcap: number | null;
  sinks: Float32Array | null;
  returnLse: boolean;
  returnWeights: boolean;
  /** `'f32'` unless the caller asked for `'f16-storage'`; q, k and v are passed as given either way (unrounded). */
  precision: StoragePrecision;
}

/** `c[m, n] = a[m, k] @ b[k, n] (+ bias[n])`, row-major. */
export interface MatmulShape {
  m: number;
  k: number;
  n: number;
}

/** Inputs of a backend matmul (the projections of the multi-head attention layer). */
export interface MatmulInputs {
  /** `[m, k]`. */
  a: Float32Array;
  /** `[k, n]`. */
  b: Float32Array;
  /** Optional `[n]`, added to every row. */
  bias?: Float32Array;
  shape: MatmulShape;
}

/** A validated matmul. */
export interface MatmulProblem {
  a: Float32Array;
  b: Float32Array;
  bias: Float32Array | null;
  shape: MatmulShape;
}
