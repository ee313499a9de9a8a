import {
  type AttentionResult,
  allocating,
  type KVCacheAppendProblem,
  type KVCacheAttentionProblem,
  type KVCacheImplementation,
  type ResolvedKVCacheConfig,
  shapeSymbols,
  visibleKeyRange,
} from '@attnkit/spec';
import { dots1, dots2 } from './attention.js';

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
  /** Per page: does it hold a NaN or infinite value (then the value pass must skip zero weights)? */
  private readonly nonFinitePages: boolean[][];
  private readonly lengths: number[];
  private heldBytes = 0;

  constructor(
    private readonly config: ResolvedKVCacheConfig,
    private readonly onDispose: (cache: CpuKVCache) => void,
  ) {
    const streams = config.batch * config.kvHeads;
    this.keyPages = Array.from({ length: streams }, (): Float32Array[] => []);
    this.valuePages = Array.from({ length: streams }, (): Float32Array[] => []);
    this.nonFinitePages = Array.from({ length: streams }, (): boolean[] => []);
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
      this.nonFinitePages[stream].push(false);
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
          const chunk = v.subarray(from * Dv, (from + run) * Dv);
          this.valuePages[stream][page].set(chunk, offset * Dv);
          // A flag stays set after a truncate: the sparse pass is correct for finite pages too.
          if (!this.nonFinitePages[stream][page] && !allFinite(chunk))
            this.nonFinitePages[stream][page] = true;
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

  /**
   * Per (row b, kv head g, query i): the `G = Hq / Hkv` query heads that read this kv head go
   * together, so each page of keys and values is loaded once per group, not once per head. Dots are
   * register-blocked two rows by four keys (the stateless kernel's `dots2`), values one row by four
   * keys; a page whose values hold a NaN or an infinity (flagged at append) takes a sparse value pass
   * that skips weights of exactly 0, so `0 * Infinity` never happens. Online softmax per row, float64.
   */
  private compute(problem: KVCacheAttentionProblem): AttentionResult {
    const { B, Hq, Hkv, Lq, D, Dv } = shapeSymbols(problem.shape);
    const { q, scale, softcap, alibiSlopes, sinks, causal, slidingWindow } = problem;
    const G = Hq / Hkv;
    const output = allocating(
      'cache.attention',
      'output',
      B * Hq * Lq * Dv * 4,
      () => new Float32Array(B * Hq * Lq * Dv),
    );
    const lse = problem.returnLse ? new Float32Array(B * Hq * Lq) : undefined;
    const scores = new Float64Array(G * PAGE_TOKENS);
    const acc = new Float64Array(G * Dv);
    const rowMax = new Float64Array(G);
    const rowSum = new Float64Array(G);
    for (let b = 0; b < B; b++) {
      const Lk = problem.lengths[b];
      for (let g = 0; g < Hkv; g++) {
        const stream = b * Hkv + g;
        const keyPages = this.keyPages[stream];
        const valuePages = this.valuePages[stream];
        const nonFinite = this.nonFinitePages[stream];
        for (let i = 0; i < Lq; i++) {
          const position = Lk - Lq + i;
          const { start, end } = visibleKeyRange(position, Lk, causal, slidingWindow);
          /** Offset in q (times D) and in the output (times Dv) of head r of the group. */
          const rowOf = (r: number) => (b * Hq + g * G + r) * Lq + i;
          rowMax.fill(NEG_INF);
          rowSum.fill(0);
          acc.fill(0);
          for (let page = Math.floor(start / PAGE_TOKENS); page * PAGE_TOKENS < end; page++) {
            const first = page * PAGE_TOKENS;
            const js = Math.max(start, first) - first;
            const je = Math.min(end, first + PAGE_TOKENS) - first;
            const keys = keyPages[page];
            const values = valuePages[page];
            let r = 0;
            for (; r + 1 < G; r += 2) {
              dots2(
                q,
                rowOf(r) * D,
                rowOf(r + 1) * D,
                keys,
                0,
                D,
                js,
                je,
                scores,
                r * PAGE_TOKENS,
                (r + 1) * PAGE_TOKENS,
              );
            }
            if (r < G) dots1(q, rowOf(r) * D, keys, 0, D, js, je, scores, r * PAGE_TOKENS);
            for (let r = 0; r < G; r++) {
              const h = g * G + r;
              const base = r * PAGE_TOKENS;
              const slope = alibiSlopes === null ? 0 : alibiSlopes[h];
              let blockMax = NEG_INF;
              for (let j = js; j < je; j++) {
                let x = scale * scores[base + j];
                if (softcap !== null) x = softcap * Math.tanh(x / softcap);
                if (alibiSlopes !== null) x += -slope * (position - (first + j));
                scores[base + j] = x;
                blockMax = Math.max(blockMax, x); // Math.max lets NaN through, as the reference does
              }
              if (blockMax === NEG_INF) {
                scores.fill(0, base + js, base + je); // weighs nothing in the value pass below
                continue;
              }
              const m = rowMax[r];
              const next = Math.max(m, blockMax);
              const alpha = m === NEG_INF ? 0 : Math.exp(m - next);
              const ao = r * Dv;
              if (alpha !== 1) {
                rowSum[r] *= alpha;
                for (let d = 0; d < Dv; d++) acc[ao + d] *= alpha;
              }
              rowMax[r] = next;
              let sum = 0;
              for (let j = js; j < je; j++) {
                const e = Math.exp(scores[base + j] - next);
                scores[base + j] = e;
                sum += e;
              }
              rowSum[r] += sum;
            }
            // the value pass: four heads at a time share each value load on a finite page
            if (nonFinite[page]) {
              for (let r = 0; r < G; r++)
                accumulateSparse(acc, r * Dv, scores, r * PAGE_TOKENS, values, Dv, js, je);
            } else {
              let r = 0;
              for (; r + 3 < G; r += 4)
                accumulateDense4(acc, r * Dv, scores, r * PAGE_TOKENS, values, Dv, js, je);
              for (; r < G; r++) accumulateDense(acc, r * Dv, scores, r * PAGE_TOKENS, values, Dv, js, je);
            }
          }
          for (let r = 0; r < G; r++) {
            const h = g * G + r;
            const row = rowOf(r);
            let m = rowMax[r];
            let l = rowSum[r];
            const ao = r * Dv;
            if (sinks !== null && sinks[h] !== NEG_INF) {
              // the sink is one more logit in the denominator, with no value
              const sink = sinks[h];
              const next = Math.max(m, sink);
              const alpha = m === NEG_INF ? 0 : Math.exp(m - next);
              l = l * alpha + Math.exp(sink - next);
              for (let d = 0; d < Dv; d++) acc[ao + d] *= alpha;
              m = next;
            }
            if (m === NEG_INF) {
              if (lse) lse[row] = NEG_INF;
              continue; // no visible key: the output row stays zero
            }
            const oo = row * Dv;
            for (let d = 0; d < Dv; d++) output[oo + d] = acc[ao + d] / l;
            if (lse) lse[row] = m + Math.log(l);
          }
        }
      }
    }
    return { output, ...(lse && { lse }) };
  }

  dispose(): void {
    for (const pages of this.keyPages) pages.length = 0;
    for (const pages of this.valuePages) pages.length = 0;
    for (const flags of this.nonFinitePages) flags.length = 0;
    this.heldBytes = 0;
    this.onDispose(this);
  }
}

/** `acc[ao..] += sum_j w_j v_j` over `[js, je)`, four keys at a time: every value is finite here. */
function accumulateDense(
  acc: Float64Array,
  ao: number,
  weights: Float64Array,
  base: number,
  values: Float32Array,
  Dv: number,
  js: number,
  je: number,
): void {
  let j = js;
  for (; j + 3 < je; j += 4) {
    const p0 = weights[base + j];
    const p1 = weights[base + j + 1];
    const p2 = weights[base + j + 2];
    const p3 = weights[base + j + 3];
    const v0 = j * Dv;
    const v1 = v0 + Dv;
    const v2 = v1 + Dv;
    const v3 = v2 + Dv;
    for (let d = 0; d < Dv; d++) {
      acc[ao + d] += p0 * values[v0 + d] + p1 * values[v1 + d] + p2 * values[v2 + d] + p3 * values[v3 + d];
    }
  }
  for (; j < je; j++) {
    const p0 = weights[base + j];
    const v0 = j * Dv;
    for (let d = 0; d < Dv; d++) acc[ao + d] += p0 * values[v0 + d];
  }
}

/**
 * {@link accumulateDense} for four heads (rows `ao, ao + Dv, ...` of `acc`, weights `base, base +
 * PAGE_TOKENS, ...`): each value element is loaded once for four multiply-adds.
 */
function accumulateDense4(
  acc: Float64Array,
  ao: number,
  weights: Float64Array,
  base: number,
  values: Float32Array,
  Dv: number,
  js: number,
  je: number,
): void {
  const a0 = ao;
  const a1 = a0 + Dv;
  const a2 = a1 + Dv;
  const a3 = a2 + Dv;
  const w0 = base;
  const w1 = w0 + PAGE_TOKENS;
  const w2 = w1 + PAGE_TOKENS;
  const w3 = w2 + PAGE_TOKENS;
  let j = js;
  for (; j + 1 < je; j += 2) {
    const p00 = weights[w0 + j];
    const p01 = weights[w0 + j + 1];
    const p10 = weights[w1 + j];
    const p11 = weights[w1 + j + 1];
    const p20 = weights[w2 + j];
    const p21 = weights[w2 + j + 1];
    const p30 = weights[w3 + j];
    const p31 = weights[w3 + j + 1];
    const v0 = j * Dv;
    const v1 = v0 + Dv;
    for (let d = 0; d < Dv; d++) {
      const x0 = values[v0 + d];
      const x1 = values[v1 + d];
      acc[a0 + d] += p00 * x0 + p01 * x1;
      acc[a1 + d] += p10 * x0 + p11 * x1;
      acc[a2 + d] += p20 * x0 + p21 * x1;
      acc[a3 + d] += p30 * x0 + p31 * x1;
    }
  }
  for (; j < je; j++) {
    const p0 = weights[w0 + j];
    const p1 = weights[w1 + j];
    const p2 = weights[w2 + j];
    const p3 = weights[w3 + j];
    const v0 = j * Dv;
    for (let d = 0; d < Dv; d++) {
      const x = values[v0 + d];
      acc[a0 + d] += p0 * x;
      acc[a1 + d] += p1 * x;
      acc[a2 + d] += p2 * x;
      acc[a3 + d] += p3 * x;
    }
  }
}

/** {@link accumulateDense} that skips weights of exactly 0: the page holds a NaN or an infinite value. */
function accumulateSparse(
  acc: Float64Array,
  ao: number,
  weights: Float64Array,
  base: number,
  values: Float32Array,
  Dv: number,
  js: number,
  je: number,
): void {
  for (let j = js; j < je; j++) {
    const p0 = weights[base + j];
    if (p0 === 0) continue;
    const v0 = j * Dv;
    for (let d = 0; d < Dv; d++) acc[ao + d] += p0 * values[v0 + d];
  }
}

function allFinite(values: Float32Array): boolean {
  for (let index = 0; index < values.length; index++) {
    const x = values[index];
    if (x - x !== 0) return false;
  }
  return true;
}
