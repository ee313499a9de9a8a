import {
  type AttentionResult,
  allocating,
  type KVCacheAppendProblem,
  type KVCacheAttentionProblem,
  type KVCacheImplementation,
  kvHeadFor,
  type ResolvedKVCacheConfig,
  visibleKeyRange,
} from '@attnkit/spec';

/**
 * Tokens per page, per (row, kv head). A page of K is `256 * D` float32: big enough that the
 * per-page bookkeeping is negligible next to the dot products, small enough that a short sequence
 * wastes little. Growing adds pages; what is cached is never copied again.
 */
export const PAGE_TOKENS = 256;
const NEG_INF = Number.NEGATIVE_INFINITY;

/**
 * The cpu KV cache: per (row, kv head), a list of fixed-size pages of keys and of values. Decode is
 * a blocked online softmax over the pages (one page a block), float64 accumulation, one rounding to
 * float32 at the end, so no per-step concatenation of the cache.
 */
export class CpuKVCache implements KVCacheImplementation {
  private readonly keyPages: Float32Array[][];
  private readonly valuePages: Float32Array[][];
  private readonly lengths: number[];
  private heldBytes = 0;

  constructor(
    private readonly config: ResolvedKVCacheConfig,
    private readonly onDispose: (cache: CpuKVCache) => void,
  ) {
    const streams = config.batch * config.kvHeads;
    this.keyPages = Array.from({ length: streams }, (): Float32Array[] => []);
    this.valuePages = Array.from({ length: streams }, (): Float32Array[] => []);
    this.lengths = new Array<number>(config.batch).fill(0);
    // capacity is a reservation hint: allocate its pages now so the first appends do not
    const pages = Math.ceil(config.capacity / PAGE_TOKENS);
    for (let stream = 0; stream < streams; stream++) this.ensurePages(stream, pages);
  }

  /** Bytes of every page held (reserved pages included). */
  bytes(): number {
    return this.heldBytes;
  }

  private ensurePages(stream: number, pages: number): void {
    const { headDim: D, valueDim: Dv } = this.config;
    const keys = this.keyPages[stream];
    const values = this.valuePages[stream];
    while (keys.length < pages) {
      const bytes = PAGE_TOKENS * (D + Dv) * 4;
      keys.push(allocating('cache.append', 'KV cache page', bytes, () => new Float32Array(PAGE_TOKENS * D)));
      values.push(
        allocating('cache.append', 'KV cache page', bytes, () => new Float32Array(PAGE_TOKENS * Dv)),
      );
      this.heldBytes += bytes;
    }
  }

  append({ k, v, tokens, kept }: KVCacheAppendProblem): void {
    const { batch: B, kvHeads: Hkv, headDim: D, valueDim: Dv } = this.config;
    // Allocate first: a refused allocation leaves the cache as it was (lengths unchanged).
    for (let b = 0; b < B; b++) {
      const pages = Math.ceil((this.lengths[b] + kept[b]) / PAGE_TOKENS);
      for (let g = 0; g < Hkv; g++) this.ensurePages(b * Hkv + g, pages);
    }
    for (let b = 0; b < B; b++) {
      for (let g = 0; g < Hkv; g++) {
        const stream = b * Hkv + g;
        const source = (b * Hkv + g) * tokens;
        // copy in runs that stay within one page
        for (let t = 0; t < kept[b]; ) {
          const position = this.lengths[b] + t;
          const page = Math.floor(position / PAGE_TOKENS);
          const offset = position - page * PAGE_TOKENS;
          const run = Math.min(kept[b] - t, PAGE_TOKENS - offset);
          const from = source + t;
          this.keyPages[stream][page].set(k.subarray(from * D, (from + run) * D), offset * D);
          this.valuePages[stream][page].set(v.subarray(from * Dv, (from + run) * Dv), offset * Dv);
          t += run;
        }
      }
    }
    for (let b = 0; b < B; b++) this.lengths[b] += kept[b];
  }

  /** Keeps the pages: speculative decoding rolls back and appends again at once. */
  truncate(lengths: readonly number[]): void {
    for (let b = 0; b < lengths.length; b++) this.lengths[b] = lengths[b];
  }

  async attention(problem: KVCacheAttentionProblem): Promise<AttentionResult> {
    return this.compute(problem);
  }

  private compute(problem: KVCacheAttentionProblem): AttentionResult {
    const {
      batch: B,
      queryHeads: Hq,
      kvHeads: Hkv,
      queryLength: Lq,
      headDim: D,
      valueDim: Dv,
    } = problem.shape;
    const { q, scale, softcap, alibiSlopes, sinks, causal, slidingWindow } = problem;
    const output = allocating(
      'cache.attention',
      'output',
      B * Hq * Lq * Dv * 4,
      () => new Float32Array(B * Hq * Lq * Dv),
    );
    const lse = problem.returnLse ? new Float32Array(B * Hq * Lq) : undefined;
    const scores = new Float64Array(PAGE_TOKENS);
    const acc = new Float64Array(Dv);
    for (let b = 0; b < B; b++) {
      const Lk = problem.lengths[b];
      for (let h = 0; h < Hq; h++) {
        const stream = b * Hkv + kvHeadFor(h, Hq, Hkv);
        const keyPages = this.keyPages[stream];
        const valuePages = this.valuePages[stream];
        const slope = alibiSlopes === null ? 0 : alibiSlopes[h];
        for (let i = 0; i < Lq; i++) {
          const row = (b * Hq + h) * Lq + i;
          const qo = row * D;
          const position = Lk - Lq + i;
          const { start, end } = visibleKeyRange(position, Lk, causal, slidingWindow);
          let m = NEG_INF;
          let l = 0;
          acc.fill(0);
          for (let page = Math.floor(start / PAGE_TOKENS); page * PAGE_TOKENS < end; page++) {
            const first = page * PAGE_TOKENS;
            const js = Math.max(start, first) - first;
            const je = Math.min(end, first + PAGE_TOKENS) - first;
            const keys = keyPages[page];
            const values = valuePages[page];
            let blockMax = NEG_INF;
            for (let j = js; j < je; j++) {
              const ko = j * D;
              let dot = 0;
              for (let d = 0; d < D; d++) dot += q[qo + d] * keys[ko + d];
              let s = scale * dot;
              if (softcap !== null) s = softcap * Math.tanh(s / softcap);
              if (alibiSlopes !== null) s += -slope * (position - (first + j));
              scores[j] = s;
              blockMax = Math.max(blockMax, s); // Math.max lets NaN through, as the reference does
            }
            if (blockMax === NEG_INF) continue;
            const next = Math.max(m, blockMax);
            const alpha = m === NEG_INF ? 0 : Math.exp(m - next);
            if (alpha !== 1) {
              l *= alpha;
              for (let d = 0; d < Dv; d++) acc[d] *= alpha;
            }
            m = next;
            for (let j = js; j < je; j++) {
              const e = Math.exp(scores[j] - m);
              l += e;
              if (e === 0) continue; // a weight of 0 must not turn an infinite value into NaN
              const vo = j * Dv;
              for (let d = 0; d < Dv; d++) acc[d] += e * values[vo + d];
            }
          }
          if (sinks !== null && sinks[h] !== NEG_INF) {
            // the sink is one more logit in the denominator, with no value
            const sink = sinks[h];
            const next = Math.max(m, sink);
            const alpha = m === NEG_INF ? 0 : Math.exp(m - next);
            l = l * alpha + Math.exp(sink - next);
            for (let d = 0; d < Dv; d++) acc[d] *= alpha;
            m = next;
          }
          if (m === NEG_INF) {
            if (lse) lse[row] = NEG_INF;
            continue; // no visible key: the output row stays zero
          }
          const oo = row * Dv;
          for (let d = 0; d < Dv; d++) output[oo + d] = acc[d] / l;
          if (lse) lse[row] = m + Math.log(l);
        }
      }
    }
    return { output, ...(lse && { lse }) };
  }

  dispose(): void {
    for (const pages of this.keyPages) pages.length = 0;
    for (const pages of this.valuePages) pages.length = 0;
    this.heldBytes = 0;
    this.onDispose(this);
  }
}
