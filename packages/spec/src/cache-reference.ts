import type {
  KVCacheAppendProblem,
  KVCacheAttentionProblem,
  KVCacheImplementation,
  ResolvedKVCacheConfig,
} from './cache.js';
import { referenceAttentionProblem64 } from './reference.js';

/** What the reference cache answers: the float64 results, before rounding. */
export interface ReferenceKVCacheResult64 {
  output: Float64Array;
  lse?: Float64Array;
}

/**
 * Row `b` of a `[B, ...rest]` tensor as a `[1, ...rest]` tensor (a copy: the reference reads plain
 * arrays).
 */
function rowOf(tensor: Float32Array, batch: number, b: number): Float32Array {
  const size = tensor.length / batch;
  return tensor.slice(b * size, (b + 1) * size);
}

/**
 * The float64 reference KV cache: it stores what was appended, plainly, and answers `attention` by
 * calling the stateless reference on each row's concatenated K/V with `Lk = lengths[b]`. That makes
 * the cache's semantics the stateless definition's, by construction.
 */
export class ReferenceKVCache {
  /** Per row, per kv head: the cached keys and values, token-major. */
  private readonly keys: number[][][];
  private readonly values: number[][][];

  constructor(readonly config: ResolvedKVCacheConfig) {
    const rows = () =>
      Array.from({ length: config.batch }, () => Array.from({ length: config.kvHeads }, (): number[] => []));
    this.keys = rows();
    this.values = rows();
  }

  /** Tokens row `b` holds. */
  length(b: number): number {
    return this.keys[b][0].length / this.config.headDim;
  }

  append({ k, v, tokens, kept }: KVCacheAppendProblem): void {
    const { batch: B, kvHeads: Hkv, headDim: D, valueDim: Dv } = this.config;
    for (let b = 0; b < B; b++) {
      for (let g = 0; g < Hkv; g++) {
        const base = (b * Hkv + g) * tokens;
        for (let t = 0; t < kept[b]; t++) {
          for (let d = 0; d < D; d++) this.keys[b][g].push(k[(base + t) * D + d]);
          for (let d = 0; d < Dv; d++) this.values[b][g].push(v[(base + t) * Dv + d]);
        }
      }
    }
  }

  truncate(lengths: readonly number[]): void {
    const { headDim: D, valueDim: Dv } = this.config;
    for (let b = 0; b < lengths.length; b++) {
      for (const keys of this.keys[b]) keys.length = lengths[b] * D;
      for (const values of this.values[b]) values.length = lengths[b] * Dv;
    }
  }

  /** Row `b`'s cached keys and values as `[1, Hkv, Lk, D]` and `[1, Hkv, Lk, Dv]`. */
  rowTensors(b: number): { k: Float32Array; v: Float32Array } {
    return { k: Float32Array.from(this.keys[b].flat()), v: Float32Array.from(this.values[b].flat()) };
  }

  attention64(problem: KVCacheAttentionProblem): ReferenceKVCacheResult64 {
    const { batch: B, queryHeads: Hq, queryLength: Lq, valueDim: Dv } = problem.shape;
    const output = new Float64Array(B * Hq * Lq * Dv);
    const lse = problem.returnLse ? new Float64Array(B * Hq * Lq) : undefined;
    for (let b = 0; b < B; b++) {
      const { k, v } = this.rowTensors(b);
      const row = referenceAttentionProblem64({
        ...problem,
        q: rowOf(problem.q, B, b),
        k,
        v,
        shape: { ...problem.shape, batch: 1, keyLength: problem.lengths[b] },
      });
      output.set(row.output, b * Hq * Lq * Dv);
      if (lse && row.lse) lse.set(row.lse, b * Hq * Lq);
    }
    return { output, ...(lse && { lse }) };
  }

  /** As a cache implementation for the gate (results rounded once to float32). */
  implementation(): KVCacheImplementation {
    return {
      append: (problem) => this.append(problem),
      truncate: (lengths) => this.truncate(lengths),
      attention: async (problem) => {
        const result = this.attention64(problem);
        return {
          output: Float32Array.from(result.output),
          ...(result.lse && { lse: Float32Array.from(result.lse) }),
        };
      },
      dispose: () => this.truncate(new Array<number>(this.config.batch).fill(0)),
    };
  }
}

/** A reference cache implementation for a validated config (what the reference backend's `createKVCache` uses). */
export function createReferenceKVCache(config: ResolvedKVCacheConfig): ReferenceKVCache {
  return new ReferenceKVCache(config);
}
