/**
 * The C ABI of `rust/lib.rs`: word offsets of its `Params` block and the exports' signatures.
 * Keep in step with the `#[repr(C)] struct Params` there.
 */

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
} as const;

/** Bytes of the `Params` block. */
export const PARAM_BYTES = 48 * 4;

/** `PARAM.kind`: which items `attn_run` runs. */
export const KIND = { forward: 0, backward: 1 } as const;

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
  matmul(a: number, b: number, bias: number, c: number, m: number, k: number, n: number): void;
  __heap_base: WebAssembly.Global;
  /** Threads build only: each instance's stack pointer, set per worker. */
  __stack_pointer?: WebAssembly.Global;
}
