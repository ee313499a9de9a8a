/**
 * The C ABI of `rust/lib.rs`: word offsets of its `Params` block and the exports' signatures.
 * Kept in step with the `#[repr(C)] struct Params` there by test/abi.test.ts, which reads the struct;
 * every call writes its block through {@link writeParams}.
 */

import { round4 } from './memory.js';

/** 32-bit word index of each `Params` field. */
export const PARAM = {
  q: 0,
  k: 1,
  v: 2,
  out: 3,
  lse: 4,
  weights: 5,
  bias: 6,
  biasSb: 7,
  biasSh: 8,
  biasSi: 9,
  biasSj: 10,
  keyMask: 11,
  alibi: 12,
  sinks: 13,
  vBad: 14,
  batch: 15,
  hq: 16,
  hkv: 17,
  lq: 18,
  lk: 19,
  d4: 20,
  dv4: 21,
  scale: 22,
  softcap: 23,
  causal: 24,
  window: 25,
  blockQ: 26,
  blockK: 27,
  nItems: 28,
  counter: 29,
  scratch: 30,
  scratchStride: 31,
  // backward only: a forward call leaves them 0
  kind: 32,
  gradOut: 33,
  delta: 34,
  gradQ: 35,
  gqStride: 36,
  gqComp: 37,
  nChunks: 38,
  gradK: 39,
  gradV: 40,
  gradBias: 41,
  gradSinks: 42,
  mergeB: 43,
  mergeG: 44,
  guard: 45,
  exactDeltaAbove: 46,
  exactRows: 47,
  // KV cache only (kind 2)
  pages: 48,
  pageBytes: 49,
  pageTokens: 50,
  pageV: 51,
  pageFlags: 52,
  streams: 53,
  lengths: 54,
  part: 55,
  chunkKeys: 56,
  tilePositions: 57,
} as const;

/** A `Params` field's name. */
export type ParamField = keyof typeof PARAM;

/** The fields the Rust struct declares `f32`; every other field is a `u32` (a pointer, a size or a flag). */
export const PARAM_FLOAT_FIELDS: ReadonlySet<ParamField> = new Set<ParamField>([
  'scale',
  'softcap',
  'exactDeltaAbove',
]);

/**
 * Writes one `Params` block at byte offset `at`: every word zeroed first (what a call does not set,
 * the kernel reads as 0), then each given field as `f32` or `u32` by its type in the Rust struct.
 * The one place the block's layout is written, so a new field is named, never positioned by hand.
 */
export function writeParams(
  words: Uint32Array,
  floats: Float32Array,
  at: number,
  values: Partial<Record<ParamField, number>>,
): void {
  const base = at >>> 2;
  words.fill(0, base, base + PARAM_BYTES / 4);
  for (const [field, value] of Object.entries(values) as [ParamField, number][]) {
    if (PARAM_FLOAT_FIELDS.has(field)) floats[base + PARAM[field]] = value;
    else words[base + PARAM[field]] = value;
  }
}

/** The bias fields of a `Params` block: its pointer and its four broadcast strides (0 on a broadcast dimension). */
export function biasParams(
  pointer: number,
  [biasSb, biasSh, biasSi, biasSj]: readonly [number, number, number, number],
): Partial<Record<ParamField, number>> {
  return { bias: pointer, biasSb, biasSh, biasSi, biasSj };
}

/** What {@link problemParams} reads of a problem: its shape and the options every kernel applies the same way. */
export interface ParamsProblem {
  shape: {
    batch: number;
    queryHeads: number;
    kvHeads: number;
    queryLength: number;
    keyLength: number;
    headDim: number;
    valueDim: number;
  };
  scale: number;
  softcap: number | null;
  causal: boolean;
  slidingWindow: number | null;
}

/**
 * The shape and option fields of a `Params` block, the same for the forward, the backward and the
 * cache: sizes, head dimensions padded to the kernel's 4-lane layout, scale, softcap (0: none),
 * causal, window (0: none). The cache overrides `lk` with its longest row.
 */
export function problemParams(problem: ParamsProblem): Partial<Record<ParamField, number>> {
  const { batch, queryHeads, kvHeads, queryLength, keyLength, headDim, valueDim } = problem.shape;
  return {
    batch,
    hq: queryHeads,
    hkv: kvHeads,
    lq: queryLength,
    lk: keyLength,
    d4: round4(headDim),
    dv4: round4(valueDim),
    scale: problem.scale,
    softcap: problem.softcap ?? 0,
    causal: problem.causal ? 1 : 0,
    window: problem.slidingWindow ?? 0,
  };
}

/** Bytes of the `Params` block. */
export const PARAM_BYTES = 58 * 4;

/** `PARAM.kind`: which items `attn_run` runs. */
export const KIND = { forward: 0, backward: 1, cache: 2 } as const;

/** What the kernel module exports. Pointers are byte offsets into its memory. */
export interface KernelExports {
  attn_scratch_bytes(blockQ: number, blockK: number, dv4: number): number;
  nonfinite_rows(data: number, rows: number, cols: number, flags: number): number;
  attn_run(params: number, worker: number): void;
  bwd_scratch_bytes(blockQ: number, blockK: number, d4: number, dv4: number): number;
  /** Backward, before the key-tile pass (one thread): D per row, the sinks' gradient. */
  bwd_prep(params: number): void;
  /** Backward, after the key-tile pass (one thread): dQ from the chunks' partials. */
  bwd_finish(params: number): void;
  /** KV cache, after the split-K items (one thread): merges the chunks' partials into out and lse. */
  cache_merge(params: number): void;
  matmul(a: number, b: number, bias: number, c: number, m: number, k: number, n: number): void;
  __heap_base: WebAssembly.Global;
  /** Threads build only: each instance's stack pointer, set per worker. */
  __stack_pointer?: WebAssembly.Global;
}
