import { hashString, prng } from '@attnkit/conformance';
import { type AttentionShape, attentionFlops } from '@attnkit/spec';

/**
 * Prefill: every position attends (Lq = Lk = N). Decode: one new token against N cached keys (Lq = 1).
 * Backward: a training step's attention, the forward (with its lse) then `attentionBackward` at Lq = Lk = N.
 * Decode-cache: one decoder step against a resident KV cache of N tokens (append the new token's K/V,
 * attend with its query, read the output back); Lq = 1, Lk = N.
 */
export type BenchMode = 'prefill' | 'decode' | 'backward' | 'decode-cache';

/** A head layout: `h1` one head, `h8` eight heads, `gqa` 32 query heads sharing 8 key/value heads. */
export type HeadPreset = 'h1' | 'h8' | 'gqa';

/** Query and key/value heads of each preset. */
export const HEAD_PRESETS: Readonly<Record<HeadPreset, { queryHeads: number; kvHeads: number }>> = {
  h1: { queryHeads: 1, kvHeads: 1 },
  h8: { queryHeads: 8, kvHeads: 8 },
  gqa: { queryHeads: 32, kvHeads: 8 },
};

/** One benchmark configuration: a context size in one series. */
export interface Workload {
  /** Stable id, e.g. `prefill-causal-d64-h1-n1024`. */
  id: string;
  /** The series id (the workload without its size), e.g. `prefill-causal-d64-h1`. */
  series: string;
  mode: BenchMode;
  causal: boolean;
  headDim: number;
  heads: HeadPreset;
  /** Context size: keys per head (and queries per head in prefill). */
  n: number;
}

/** The axes of a grid; every combination is one workload. */
export interface GridSpec {
  sizes: readonly number[];
  headDims: readonly number[];
  heads: readonly HeadPreset[];
  causal: readonly boolean[];
  modes: readonly BenchMode[];
}

/** Context sizes 128 to 16384, doubling: the full grid. */
export const FULL_SIZES: readonly number[] = [128, 256, 512, 1024, 2048, 4096, 8192, 16384];

/** The full grid of the issue: sizes 128..16384, D 64 and 128, H 1, 8 and GQA, causal and not, both modes. */
export const FULL_GRID: GridSpec = {
  sizes: FULL_SIZES,
  headDims: [64, 128],
  heads: ['h1', 'h8', 'gqa'],
  causal: [true, false],
  modes: ['prefill', 'decode'],
};

/** A grid small enough for `--quick`: a few sizes, every other axis at one or two values. */
export const QUICK_GRID: GridSpec = {
  sizes: [128, 256, 512, 1024],
  headDims: [64],
  heads: ['h1', 'gqa'],
  causal: [true],
  modes: ['prefill', 'decode'],
};

/** The headline series (benchmarks/README.md, "Goals"): d = 64, causal, one head, prefill. */
export const HEADLINE_SERIES = 'prefill-causal-d64-h1';

/**
 * The backward mode's grid (issue 13, "Bench"): N 512..8192, D 64, one and eight heads, causal and
 * not. Its own grid, not a slice of the full one: the backward's axes are the issue's, not the forward's.
 */
export const BACKWARD_GRID: GridSpec = {
  sizes: [512, 1024, 2048, 4096, 8192],
  headDims: [64],
  heads: ['h1', 'h8'],
  causal: [true, false],
  modes: ['backward'],
};

/** `--mode backward --quick`: three small sizes, one head, causal and not. */
export const BACKWARD_QUICK_GRID: GridSpec = {
  sizes: [128, 256, 512],
  headDims: [64],
  heads: ['h1'],
  causal: [true, false],
  modes: ['backward'],
};

/** The backward mode's headline series: the one the bars are quoted on (causal, D 64, one head). */
export const BACKWARD_HEADLINE_SERIES = 'backward-causal-d64-h1';

/**
 * The decode-cache mode's grid (issue 12, "Bench"): cache lengths 1k, 4k, 8k, 16k, 32k, GQA 32/8 and
 * MHA 8/8, D 64 and 128, batch 1. Causal only: a decode query sees every cached key either way.
 */
export const DECODE_CACHE_GRID: GridSpec = {
  sizes: [1024, 4096, 8192, 16384, 32768],
  headDims: [64, 128],
  heads: ['gqa', 'h8'],
  causal: [true],
  modes: ['decode-cache'],
};

/** `--mode decode-cache --quick`: small caches, both head layouts, D 64. */
export const DECODE_CACHE_QUICK_GRID: GridSpec = {
  sizes: [256, 1024, 2048],
  headDims: [64],
  heads: ['gqa', 'h8'],
  causal: [true],
  modes: ['decode-cache'],
};

/** The decode-cache series the bars are quoted on: GQA 32/8, D 128. */
export const DECODE_CACHE_HEADLINE_SERIES = 'decode-cache-causal-d128-gqa';

/** Series that get the headline budget and the `alwaysRunUpTo` floor: the goals tables of both modes. */
export const HEADLINE_SERIES_IDS: readonly string[] = [
  HEADLINE_SERIES,
  BACKWARD_HEADLINE_SERIES,
  DECODE_CACHE_HEADLINE_SERIES,
];

/**
 * Backward FLOPs per forward FLOP. The forward does two matmul-sized products per visible pair
 * (`S = q k^T`, `O = P v`); the backward does five (`S` recomputed from lse, `dP = dO v^T`,
 * `dV += P^T dO`, `dQ += dS k`, `dK += dS^T q`): 5/2, FlashAttention-2's convention.
 */
export const BACKWARD_FLOP_FACTOR = 2.5;

/** Series id of a workload's axes. */
export function seriesId(mode: BenchMode, causal: boolean, headDim: number, heads: HeadPreset): string {
  return `${mode}-${causal ? 'causal' : 'full'}-d${headDim}-${heads}`;
}

/** Builds one workload. */
export function makeWorkload(
  mode: BenchMode,
  causal: boolean,
  headDim: number,
  heads: HeadPreset,
  n: number,
): Workload {
  const series = seriesId(mode, causal, headDim, heads);
  return { id: `${series}-n${n}`, series, mode, causal, headDim, heads, n };
}

/**
 * Every workload of a grid, grouped by series (sizes ascending inside a series) so a runner can stop a
 * series at the size where it gets too slow. The headline series comes first.
 */
export function expandGrid(grid: GridSpec): Workload[][] {
  const series: Workload[][] = [];
  for (const mode of grid.modes)
    for (const causal of grid.causal)
      for (const headDim of grid.headDims)
        for (const heads of grid.heads) {
          const sizes = [...grid.sizes].sort((a, b) => a - b);
          series.push(sizes.map((n) => makeWorkload(mode, causal, headDim, heads, n)));
        }
  const headline = (s: Workload[]) => Number(HEADLINE_SERIES_IDS.includes(s[0].series));
  series.sort((a, b) => headline(b) - headline(a));
  return series;
}

/** The spec shape of a workload (batch 1). */
export function workloadShape(w: Workload): Required<AttentionShape> {
  const { queryHeads, kvHeads } = HEAD_PRESETS[w.heads];
  return {
    batch: 1,
    queryHeads,
    kvHeads,
    queryLength: w.mode === 'decode' || w.mode === 'decode-cache' ? 1 : w.n,
    keyLength: w.n,
    headDim: w.headDim,
    valueDim: w.headDim,
  };
}

/** Dense and useful FLOP counts. */
export interface FlopCount {
  dense: number;
  useful: number;
}

/** The forward's FLOPs from the spec's counter (prefill shape for a backward workload). */
function forwardFlops(w: Workload): FlopCount {
  const { dense, useful } = attentionFlops(workloadShape(w), { causal: w.causal });
  return { dense, useful };
}

/**
 * FLOPs of one timed call: the forward's for prefill and decode; for backward the training step
 * the row times, forward + backward = `(1 + BACKWARD_FLOP_FACTOR)` times the forward's.
 */
export function workloadFlops(w: Workload): FlopCount {
  if (w.mode !== 'backward') return forwardFlops(w);
  return backwardFlops(w).total;
}

/**
 * A backward workload's FLOPs by phase: `forward` as the spec counts it (`4 * Hq * Lq * Lk * D`
 * dense at D = Dv), `backward` = 2.5 times that, `total` the sum (what forward + backward does).
 */
export function backwardFlops(w: Workload): { forward: FlopCount; backward: FlopCount; total: FlopCount } {
  const forward = forwardFlops(w);
  const scale = (f: FlopCount, x: number) => ({ dense: f.dense * x, useful: f.useful * x });
  return {
    forward,
    backward: scale(forward, BACKWARD_FLOP_FACTOR),
    total: scale(forward, 1 + BACKWARD_FLOP_FACTOR),
  };
}

/** Multiply-adds of the float64 reference; the correctness check runs only below a threshold of these. */
export function referenceCost(w: Workload): number {
  const s = workloadShape(w);
  const forward = s.queryHeads * s.queryLength * s.keyLength * (s.headDim + s.valueDim);
  // the reference backward recomputes the forward, then does the backward's 2.5 forwards of work
  return w.mode === 'backward' ? forward * (1 + BACKWARD_FLOP_FACTOR) : forward;
}

/** Inputs of one workload: q, k, v in the spec's `[B, H, L, D]` layout. */
export interface WorkloadInputs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  shape: Required<AttentionShape>;
  /** Backward workloads: dLoss/dOutput `[B, Hq, Lq, Dv]`, uniform in [-1, 1) like the rest. */
  gradOutput?: Float32Array;
}

/** Deterministic inputs, uniform in [-1, 1), seeded by the workload id and `seed`. */
export function makeInputs(w: Workload, seed = 1): WorkloadInputs {
  const shape = workloadShape(w);
  const random = prng(hashString(w.id) ^ seed);
  const fill = (length: number) => {
    const a = new Float32Array(length);
    for (let i = 0; i < length; i++) a[i] = random() * 2 - 1;
    return a;
  };
  const { batch: B, queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, keyLength: Lk, headDim: D } = shape;
  const inputs: WorkloadInputs = {
    q: fill(B * Hq * Lq * D),
    k: fill(B * Hkv * Lk * D),
    v: fill(B * Hkv * Lk * shape.valueDim),
    shape,
  };
  // drawn after q, k, v so those are the same bytes with or without it
  if (w.mode === 'backward') inputs.gradOutput = fill(B * Hq * Lq * shape.valueDim);
  return inputs;
}

/** Copies k or v `[Hkv, L, D]` to `[Hq, L, D]`, what peers without grouped-query support need. */
export function repeatKvHeads(x: Float32Array, kvHeads: number, queryHeads: number): Float32Array {
  if (kvHeads === queryHeads) return x;
  const group = queryHeads / kvHeads;
  const per = x.length / kvHeads;
  const out = new Float32Array(per * queryHeads);
  for (let h = 0; h < queryHeads; h++) {
    const g = Math.floor(h / group);
    out.set(x.subarray(g * per, (g + 1) * per), h * per);
  }
  return out;
}

/** `[H, L, D]` to `[L, H, D]` (and back with the arguments swapped): the layout of 3-d ONNX inputs. */
export function transposeHeads(x: Float32Array, heads: number, length: number, dim: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let h = 0; h < heads; h++)
    for (let l = 0; l < length; l++)
      out.set(x.subarray((h * length + l) * dim, (h * length + l + 1) * dim), (l * heads + h) * dim);
  return out;
}

/** The additive bottom-right causal mask `[Lq, Lk]`: 0 where visible, a large negative number elsewhere. */
export function causalMask(queryLength: number, keyLength: number): Float32Array {
  const mask = new Float32Array(queryLength * keyLength);
  const offset = keyLength - queryLength;
  for (let i = 0; i < queryLength; i++)
    for (let j = i + offset + 1; j < keyLength; j++) mask[i * keyLength + j] = -1e30;
  return mask;
}
