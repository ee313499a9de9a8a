import type { MatmulShape, ResolvedOptions, ResolvedShape, StoragePrecision } from '@attnkit/spec';
import { shapeSymbols } from '@attnkit/spec';
import { unsupported } from './errors.js';
import type { BackwardTiles, BackwardVariant } from './kernels/backward-common.js';
import {
  type TiledVariant,
  tiledPrivateFloats,
  tiledRows,
  tiledWorkgroupSizes,
} from './kernels/flash-attention.js';
import { type AttentionVariant, type LogitTerms, logitTermsOf } from './kernels/shared.js';
import type { DeviceState } from './state.js';
import type { TensorLayout } from './types.js';

export interface Strides {
  b: number;
  h: number;
  l: number;
}

export type AttentionOptionsPart = ResolvedOptions;

/** Everything the encoder needs for one attention, whatever its source. */
export interface AttentionPlan {
  shape: ResolvedShape;
  options: AttentionOptionsPart;
  layout: TensorLayout;
  variant: ForwardVariant;
}

/**
 * The forward's kernel choice: the register-tiled kernel (kernels/flash-attention.ts) wherever its
 * tiles fit the device, else (`tiled: null`) the scalar kernel of kernels/attention.ts, which fits down to
 * 1 x 1 tiles and so serves the largest head sizes. The scalar sizes are kept either way: the
 * weights pass uses its workgroup size.
 */
export interface ForwardVariant extends AttentionVariant {
  tiled: TiledVariant | null;
  /** How q, k and v are stored: with `'f16-storage'` as packed binary16 pairs (row strides in words). */
  precision: StoragePrecision;
}

/** Query rows per workgroup of the kernel a forward variant runs. */
export function forwardRows(v: ForwardVariant): number {
  return v.tiled === null ? v.bq : tiledRows(v.tiled);
}

export function stridesFor(layout: TensorLayout, heads: number, length: number, dim: number): Strides {
  return layout === 'bhld'
    ? { b: heads * length * dim, h: length * dim, l: dim }
    : { b: length * heads * dim, h: dim, l: heads * dim };
}

export function checkElements(s: DeviceState, context: string, argument: string, elements: number): void {
  const limit = s.limits.tensorElements;
  if (elements > limit) throw unsupported(argument, `at most ${limit} elements`, elements, context);
}

/** Checks the operand and output sizes of a matmul against the binding limit. */
export function checkMatmul(s: DeviceState, context: string, shape: MatmulShape): void {
  checkElements(s, context, 'a', shape.m * shape.k);
  checkElements(s, context, 'b', shape.k * shape.n);
  checkElements(s, context, 'output', shape.m * shape.n);
}

/** Folds a workgroup count into two dimensions when it passes the per-dimension limit. */
export function dispatchSize(s: DeviceState, groups: number, context: string): [number, number] {
  const max = s.limits.workgroupsPerDim;
  const x = Math.min(groups, max);
  const y = Math.ceil(groups / x);
  if (y > max) throw unsupported('workgroups', `at most ${max * max}`, groups, context);
  return [x, y];
}

export function matmulTile(s: DeviceState): number {
  return s.limits.invocations >= 256 ? 16 : 8;
}

/**
 * Floats of workgroup storage that variables of these sizes take: WebGPU counts each variable
 * rounded up to 16 bytes (a one-float row array takes four), and rejects the pipeline past the limit.
 */
export function workgroupFloats(sizes: readonly number[]): number {
  return sizes.reduce((n, size) => n + Math.ceil(size / 4) * 4, 0);
}

/**
 * The largest head size (`D = Dv`, both at most this) whose 1 x 1 tile fits `floats` of workgroup
 * storage in the forward: q, k, v, output rows rounded to four floats, and six one-float arrays.
 */
export function headDimLimit(floats: number): number {
  return Math.floor((floats - 6 * 4) / 16) * 4;
}

/**
 * Candidate tiles of a kernel that walks key tiles for a tile of query rows (the scalar forward, the
 * dQ kernel): `[query rows, keys]`, largest first; the first that fits is taken.
 */
const QUERY_TILES: readonly (readonly [number, number])[] = [
  [16, 32],
  [16, 16],
  [8, 16],
  [8, 8],
  [4, 8],
  [4, 4],
  [2, 4],
  [1, 4],
  [1, 2],
  [1, 1],
];

/** The largest tiles (and capacity-bucketed head sizes) that fit the device's workgroup storage. */
export function attentionVariant(
  s: DeviceState,
  workgroupSize: number | undefined,
  shape: ResolvedShape,
): AttentionVariant {
  const floats = s.limits.workgroupFloats;
  // Capacity buckets (powers of two from 8): a new head size rarely means a new shader.
  const bucket = (n: number) => Math.max(8, 2 ** Math.ceil(Math.log2(n)));
  // qs, ks, vs, ps, pl, acc, rowM, rowL, rowA, rowS (kernels/shared.ts, onlineSoftmaxMemory).
  const fits = (D: number, Dv: number, bq: number, bk: number) =>
    workgroupFloats([bq * D, bk * D, bk * Dv, bq * bk, bq * bk, bq * Dv, bq, bq, bq, bq]) <= floats;
  const wg = Math.max(1, Math.min(workgroupSize ?? 64, s.limits.invocations));
  const tiles = QUERY_TILES;
  // Decoding (few query rows) would waste most of a 16-row tile.
  const rowCap = Math.max(1, 2 ** Math.ceil(Math.log2(Math.min(shape.queryLength, 16))));
  for (const [bqWanted, bk] of tiles) {
    const bq = Math.min(bqWanted, rowCap);
    let D = bucket(shape.headDim);
    let Dv = bucket(shape.valueDim);
    if (!fits(D, Dv, bq, bk)) {
      D = shape.headDim;
      Dv = shape.valueDim;
    }
    if (fits(D, Dv, bq, bk)) {
      return {
        headDim: D,
        valueDim: Dv,
        bq,
        bk,
        wg,
      };
    }
  }
  throw unsupported(
    'shape.headDim + shape.valueDim',
    `small enough for ${floats * 4} bytes of workgroup storage (each at most ${headDimLimit(floats)})`,
    shape.headDim + shape.valueDim,
  );
}

/**
 * Register blocks of the tiled kernel, best first: [rows per row group, invocations per row, keys per
 * tile]. Measured on SwiftShader (the former scripts/sanity-timings.mjs); the first that fits the device's
 * workgroup storage and {@link MAX_TILED_PRIVATE_FLOATS} is used.
 */
const TILED_BLOCKS: readonly (readonly [number, number, number])[] = [
  [2, 4, 32],
  [2, 4, 16],
  [1, 4, 16],
  [1, 4, 8],
  [1, 2, 8],
  [1, 1, 4],
];

/**
 * Most floats one invocation of the tiled kernel keeps in registers; past it (large value heads) the
 * tiled kernel would spill on a real GPU, and the scalar kernel runs instead.
 */
const MAX_TILED_PRIVATE_FLOATS = 160;

/**
 * Fewest query rows for the tiled kernel. Its workgroup covers 16-32 rows with 2 rows per row
 * group; a decode (Lq = 1) would leave all but one row group idle and stream every key through 4 of
 * 64 invocations (3M keys: past the conformance suite's 120 s on SwiftShader), where the scalar
 * kernel sizes its tile to the rows (`rowCap`) and scores with every invocation.
 */
export const TILED_MIN_QUERY_ROWS = 16;

/**
 * The tiled kernel's variant for this shape on this device, or `null` where none fits or the
 * query is shorter than {@link TILED_MIN_QUERY_ROWS}.
 */
export function tiledVariant(
  s: DeviceState,
  workgroupSize: number | undefined,
  shape: ResolvedShape,
  logitTerms: LogitTerms = 'all',
): TiledVariant | null {
  if (shape.queryLength < TILED_MIN_QUERY_ROWS) return null;
  const floats = s.limits.workgroupFloats;
  const round4 = (n: number) => Math.ceil(n / 4) * 4;
  const bucket = (n: number) => Math.max(8, 2 ** Math.ceil(Math.log2(n)));
  const wg = Math.max(1, Math.min(workgroupSize ?? 64, s.limits.invocations));
  const sizes = s.subgroupSizes;
  // Shuffles need each row group inside one subgroup: the workgroup must be whole subgroups.
  const subgroups = s.tier === 'subgroups' && sizes !== null && wg % sizes.max === 0;
  for (const [rq, gWanted, bk] of TILED_BLOCKS) {
    const g = wg % gWanted === 0 ? gWanted : 1;
    if (bk % g !== 0) continue;
    for (const [D, Dv] of [
      [bucket(shape.headDim), bucket(shape.valueDim)],
      [round4(shape.headDim), round4(shape.valueDim)],
    ] as const) {
      const v: TiledVariant = {
        headDim: D,
        valueDim: Dv,
        rq,
        g,
        bk,
        wg,
        reduce: subgroups && g > 1 ? 'subgroup' : 'workgroup',
        logitTerms,
      };
      if (
        workgroupFloats(tiledWorkgroupSizes(v)) <= floats &&
        tiledPrivateFloats(v) <= MAX_TILED_PRIVATE_FLOATS
      ) {
        return v;
      }
    }
  }
  return null;
}

/** The scalar variant (always) and the tiled one where it fits: see {@link ForwardVariant}. */
export function forwardVariant(
  s: DeviceState,
  workgroupSize: number | undefined,
  shape: ResolvedShape,
  precision: StoragePrecision = 'f32',
  logitTerms: LogitTerms = 'all',
): ForwardVariant {
  return {
    ...attentionVariant(s, workgroupSize, shape),
    tiled: tiledVariant(s, workgroupSize, shape, logitTerms),
    precision,
  };
}

/** Checks the sizes of what the attention writes and picks its variant. */
export function planAttention(
  s: DeviceState,
  workgroupSize: number | undefined,
  shape: ResolvedShape,
  options: AttentionOptionsPart,
  layout: TensorLayout,
  context: string,
): AttentionPlan {
  const { batch: B, queryHeads: Hq, queryLength: Lq, keyLength: Lk } = shape;
  if (options.bias !== null) checkElements(s, context, 'options.bias.data', options.bias.data.length);
  if (options.returnWeights) checkElements(s, context, 'weights', B * Hq * Lq * Lk);
  checkElements(s, context, 'lse', 3 * B * Hq * Lq);
  // A call without softcap, bias and ALiBi gets the tiled kernel without their code (SwiftShader:
  // about 10% off the causal prefill); prepare compiles both.
  const variant = forwardVariant(s, workgroupSize, shape, options.precision, logitTermsOf(options));
  return { shape, options, layout, variant } satisfies AttentionPlan;
}

/** Everything the backward encoder needs. */
export interface BackwardPlan {
  shape: ResolvedShape;
  options: AttentionOptionsPart;
  variant: BackwardVariant;
  /** Whether the bias has the full `[B, Hq, Lq, Lk]` shape (its gradient is written in place). */
  biasFull: boolean;
}

/** Most private accumulators (hi + lo pairs) per invocation before smaller tiles are preferred. */
const MAX_ACCUMULATORS = 32;

/**
 * Tiles of the backward's two tiled kernels that fit the device's workgroup storage. Their running
 * sums live in registers, so workgroup memory holds only staged tiles: at 1 x 1 tiles the backward
 * needs no more than the forward (four rows and five one-float arrays against four and six), so any
 * head size the forward's limits admit fits.
 */
export function backwardVariant(
  s: DeviceState,
  workgroupSize: number | undefined,
  shape: ResolvedShape,
  context = 'attentionBackward',
): BackwardVariant {
  const floats = s.limits.workgroupFloats;
  const bucket = (n: number) => Math.max(8, 2 ** Math.ceil(Math.log2(n)));
  const wg = Math.max(1, Math.min(workgroupSize ?? 64, s.limits.invocations));
  const rowCap = Math.max(1, 2 ** Math.ceil(Math.log2(Math.min(shape.queryLength, 16))));
  // dK/dV: keys (per workgroup) x rows (per step): ks, vs, qs, dos, ps, dss, rowLse, rowDelta,
  // rowNorm (kernels/dkdv.ts).
  const kvFloats = (D: number, Dv: number, { keys, rows }: BackwardTiles) =>
    workgroupFloats([keys * D, keys * Dv, rows * D, rows * Dv, rows * keys, rows * keys, rows, rows, rows]);
  // dQ: rows (per workgroup) x keys (per step): qs, dos, ks, vs, dss, rowLse, rowDelta, rowNorm,
  // rowLo (kernels/dq.ts).
  const qFloats = (D: number, Dv: number, { keys, rows }: BackwardTiles) =>
    workgroupFloats([rows * D, rows * Dv, keys * D, keys * Dv, rows * keys, rows, rows, rows, rows]);
  const kvTiles: [number, number][] = [
    [32, 16],
    [16, 16],
    [16, 8],
    [8, 8],
    [8, 4],
    [4, 4],
    [4, 2],
    [2, 2],
    [2, 1],
    [1, 1],
  ];
  const qTiles = QUERY_TILES;
  const pick = (
    list: readonly (readonly [number, number])[],
    make: (a: number, b: number) => BackwardTiles,
    size: (D: number, Dv: number, t: BackwardTiles) => number,
    accumulators: (D: number, Dv: number, t: BackwardTiles) => number,
    D: number,
    Dv: number,
  ): BackwardTiles | null => {
    let fallback: BackwardTiles | null = null;
    for (const [a, b] of list) {
      const t = make(a, b);
      if (size(D, Dv, t) > floats) continue;
      if (accumulators(D, Dv, t) <= MAX_ACCUMULATORS) return t;
      // Large heads: the smallest tile that fits (the fewest accumulators) if none meets the cap.
      fallback = t;
    }
    return fallback;
  };
  const plan = (D: number, Dv: number): BackwardVariant | null => {
    const kv = pick(
      kvTiles,
      (keys, rows) => ({ keys, rows: Math.min(rows, rowCap) }),
      kvFloats,
      (d, dv, t) => Math.ceil((t.keys * (d + dv)) / wg),
      D,
      Dv,
    );
    const q = pick(
      qTiles,
      (rows, keys) => ({ rows: Math.min(rows, rowCap), keys }),
      qFloats,
      (d, _dv, t) => Math.ceil((t.rows * d) / wg),
      D,
      Dv,
    );
    return kv === null || q === null ? null : { headDim: D, valueDim: Dv, wg, kv, q };
  };
  // The kernels stage rows as vec4s: capacities are whole vec4s even when not bucketed.
  const round4 = (n: number) => Math.ceil(n / 4) * 4;
  const variant =
    plan(bucket(shape.headDim), bucket(shape.valueDim)) ??
    plan(round4(shape.headDim), round4(shape.valueDim));
  if (variant !== null) return variant;
  throw unsupported(
    'shape.headDim + shape.valueDim',
    `small enough for ${floats * 4} bytes of workgroup storage (each at most ${headDimLimit(floats)})`,
    shape.headDim + shape.valueDim,
    context,
  );
}

/**
 * Checks what the backward binds and writes against one storage binding (q is bound with
 * gradOutput, k with v, lse with delta and norm; a bias that broadcasts adds a `[B, Hq, Lq, Lk]` scratch of
 * its logits' gradients) and picks its variant.
 */
export function planBackward(
  s: DeviceState,
  workgroupSize: number | undefined,
  shape: ResolvedShape,
  options: AttentionOptionsPart,
  context: string,
): BackwardPlan {
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(shape);
  checkElements(s, context, 'q + gradOutput', B * Hq * Lq * (D + Dv));
  checkElements(s, context, 'k + v', B * Hkv * Lk * (D + Dv));
  checkElements(s, context, 'lse + delta + norm', 3 * B * Hq * Lq);
  let biasFull = false;
  if (options.bias !== null) {
    checkElements(s, context, 'options.bias.data', options.bias.data.length);
    biasFull = options.bias.data.length === B * Hq * Lq * Lk;
    if (!biasFull) checkElements(s, context, 'gradBias scratch (B*Hq*Lq*Lk)', B * Hq * Lq * Lk);
  }
  const variant = backwardVariant(s, workgroupSize, shape, context);
  return { shape, options, variant, biasFull };
}

/**
 * The KV cache's partial kernel: the forward's tile search (same workgroup arrays) over the `G * Lq`
 * query rows a kv head serves, so a decode step of a GQA group of G heads fills a G-row tile.
 */
export function cacheVariant(
  s: DeviceState,
  workgroupSize: number | undefined,
  shape: ResolvedShape,
): AttentionVariant {
  const rows = (shape.queryHeads / shape.kvHeads) * shape.queryLength;
  return attentionVariant(s, workgroupSize, { ...shape, queryLength: rows });
}

/** Workgroups a cache call aims for before it stops splitting keys: enough to occupy a large GPU. */
const CACHE_TARGET_GROUPS = 512;
/** Fewest keys per split: below this, merging costs more than the parallelism buys. */
const CACHE_MIN_CHUNK = 256;

/**
 * How a cache call splits each row's keys: `splits` ranges of `chunk` keys (a multiple of the
 * variant's `bk`). Few query rows (decode) split until about {@link CACHE_TARGET_GROUPS} workgroups
 * run; many (prefill) already fill the device and keep one range.
 */
export function cacheSplits(
  shape: ResolvedShape,
  variant: AttentionVariant,
): { rowTiles: number; splits: number; chunk: number } {
  const { batch: B, queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, keyLength: Lk } = shape;
  const rowTiles = Math.ceil(((Hq / Hkv) * Lq) / variant.bq);
  const base = B * Hkv * rowTiles;
  const wanted = Math.max(1, Math.ceil(CACHE_TARGET_GROUPS / base));
  const minChunk = Math.ceil(CACHE_MIN_CHUNK / variant.bk) * variant.bk;
  const raw = Math.max(minChunk, Math.ceil(Lk / wanted));
  const chunk = Math.ceil(raw / variant.bk) * variant.bk;
  return { rowTiles, splits: Math.max(1, Math.ceil(Lk / chunk)), chunk };
}
