import type { KVCacheAttentionProblem, KVCachePrecision } from '@attnkit/spec';
import { bindAndDispatch, NAN_BITS, packParams } from './encode.js';
import {
  CACHE_MERGE_BINDINGS,
  CACHE_PARAM_FIELDS,
  CACHE_PARAMS_BYTES,
  type CacheParamField,
  cachePartialBindings,
} from './kernels/cache-attention.js';
import type { AttentionVariant } from './kernels/shared.js';
import { Flags } from './kernels/shared.js';
import type { CachePipelines } from './pipelines.js';
import { cacheSplits, checkElements, dispatchSize } from './planning.js';
import { STORAGE_USAGE } from './pool.js';
import type { DeviceState } from './state.js';
import { uploadUniform } from './transfer.js';

/** The cache's device storage as one call sees it: `[B, Hkv, cap, D]` keys, `[B, Hkv, cap, Dv]` values. */
export interface CacheStorage {
  k: GPUBuffer;
  v: GPUBuffer;
  cap: number;
  /** How K and V are stored: float32, or packed binary16 pairs (the partial kernel's K/V types). */
  precision: KVCachePrecision;
}

/** What a cache call uploaded in the caller's tick (its query and small per-call tables). */
export interface CacheCallInputs {
  q: GPUBuffer;
  /** Per row, the tokens it holds (u32). */
  lengths: GPUBuffer;
  /** ALiBi slopes then sinks (`2 * Hq`), or the stand-in. */
  head: GPUBuffer;
}

/** Checks what a cache call binds and writes against one storage binding. */
export function checkCacheCall(
  s: DeviceState,
  context: string,
  problem: KVCacheAttentionProblem,
  variant: AttentionVariant,
): void {
  const { batch: B, queryHeads: Hq, queryLength: Lq, headDim: D, valueDim: Dv } = problem.shape;
  const { splits } = cacheSplits(problem.shape, variant);
  checkElements(s, context, 'q', B * Hq * Lq * D);
  checkElements(s, context, 'output', B * Hq * Lq * Dv);
  checkElements(s, context, 'split partials', B * Hq * Lq * splits * Math.max(Dv, 2));
}

/**
 * Encodes the partial kernel and the merge over the cache. Never awaits. The partials are scratch
 * (in `temps`); `output` is `[B, Hq, Lq, Dv]`, `lse` `[B, Hq, Lq]` (a stand-in unless asked).
 */
export function encodeCacheAttention(
  s: DeviceState,
  encoder: GPUCommandEncoder,
  problem: KVCacheAttentionProblem,
  variant: AttentionVariant,
  pipelines: CachePipelines,
  storage: CacheStorage,
  inputs: CacheCallInputs,
  context: string,
): { output: GPUBuffer; lse: GPUBuffer; temps: GPUBuffer[] } {
  const { pool } = s;
  const { batch: B, queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, headDim: D, valueDim: Dv } = problem.shape;
  const { rowTiles, splits, chunk } = cacheSplits(problem.shape, variant);
  const groups = B * Hkv * rowTiles * splits;
  const [gx, gy] = dispatchSize(s, groups, context);
  const rows = B * Hq * Lq;
  // Past the longest row plus Lq every key is inside the window; clamping keeps it in i32 range.
  const window =
    problem.slidingWindow === null ? 0 : Math.min(problem.slidingWindow, Lq + problem.shape.keyLength + 1);
  const values: Record<CacheParamField, number> = {
    batch: B,
    hq: Hq,
    hkv: Hkv,
    lq: Lq,
    cap: storage.cap,
    rowTiles,
    splits,
    chunk,
    total: groups,
    groupsX: gx,
    window,
    bsB: 0,
    bsH: 0,
    bsI: 0,
    bsJ: 0,
    scale: problem.scale,
    softcap: problem.softcap ?? 1,
    nanBits: NAN_BITS,
    d: D,
    dv: Dv,
    bk: variant.bk,
    flags:
      (problem.causal ? Flags.causal : 0) |
      (problem.slidingWindow !== null ? Flags.window : 0) |
      (problem.alibiSlopes !== null ? Flags.alibi : 0) |
      (problem.softcap !== null ? Flags.softcap : 0) |
      (problem.sinks !== null ? Flags.sinks : 0) |
      (problem.returnLse ? Flags.rows : 0),
  };
  const uniform = uploadUniform(s, packParams(CACHE_PARAM_FIELDS, values));
  const partialO = pool.acquire(rows * splits * Dv * 4, STORAGE_USAGE);
  const partialM = pool.acquire(rows * splits * 2 * 4, STORAGE_USAGE);
  const pass = encoder.beginComputePass({ label: 'attnkit:cache-attention' });
  bindAndDispatch(
    s,
    pass,
    pipelines.partial,
    cachePartialBindings(storage.precision),
    { buffer: uniform, bytes: CACHE_PARAMS_BYTES },
    {
      Q: inputs.q,
      K: storage.k,
      V: storage.v,
      HEAD: inputs.head,
      LEN: inputs.lengths,
      PO: partialO,
      PM: partialM,
    },
    [gx, gy],
  );
  // The merge: one invocation per output element, in groups of the variant's workgroup size.
  const mergeGroups = Math.ceil((rows * Dv) / variant.wg);
  const [mx, my] = dispatchSize(s, mergeGroups, context);
  const mergeUniform = uploadUniform(
    s,
    packParams(CACHE_PARAM_FIELDS, { ...values, total: mergeGroups, groupsX: mx }),
  );
  const output = pool.acquire(rows * Dv * 4, STORAGE_USAGE);
  const lse = pool.acquire(problem.returnLse ? rows * 4 : 16, STORAGE_USAGE);
  bindAndDispatch(
    s,
    pass,
    pipelines.merge,
    CACHE_MERGE_BINDINGS,
    { buffer: mergeUniform, bytes: CACHE_PARAMS_BYTES },
    { PO: partialO, PM: partialM, HEAD: inputs.head, O: output, LSE: lse },
    [mx, my],
  );
  pass.end();
  return { output, lse, temps: [uniform, mergeUniform, partialO, partialM] };
}
