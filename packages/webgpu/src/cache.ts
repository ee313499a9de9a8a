import type {
  AttentionResult,
  KVCacheAppendProblem,
  KVCacheAttentionProblem,
  KVCacheImplementation,
  ResolvedKVCacheConfig,
} from '@attnkit/spec';
import {
  type CacheCallInputs,
  type CacheStorage,
  checkCacheCall,
  encodeCacheAttention,
} from './encode-cache.js';
import { guarded, unsupported } from './errors.js';
import { packedWords, packF16Rows } from './f16.js';
import { holding, stillUsable } from './host.js';
import type { AttentionVariant } from './kernels/shared.js';
import { type CachePipelines, cachePipelines, compiledCachePipelines } from './pipelines.js';
import { cacheVariant } from './planning.js';
import { STORAGE_USAGE } from './pool.js';
import type { DeviceState } from './state.js';
import {
  copyToStaging,
  readStaging,
  type Staged,
  uploadBytes,
  uploadFloats,
  writeFloats,
  writeWords,
} from './transfer.js';

/** The pooled buffers a call's inputs hold (the stand-in for absent options is not one). */
function held(s: DeviceState, inputs: CacheCallInputs): GPUBuffer[] {
  return [inputs.q, inputs.lengths, ...(inputs.head === s.dummy ? [] : [inputs.head])];
}

/** Fewest tokens per stream the first growth reserves (a one-token append does not allocate 1 token). */
const MIN_CAPACITY = 64;

/**
 * The WebGPU KV cache. Keys live in one `[B, Hkv, cap, D]` buffer and values in one
 * `[B, Hkv, cap, Dv]` buffer, on the device; an append writes only the new tokens (one `writeBuffer`
 * per (row, kv head) stream), an attention uploads only `q` and small tables and reads back only the
 * output (and lse).
 *
 * Growth doubles `cap` and copies each stream's held tokens into the new buffers on the GPU
 * (`copyBufferToBuffer`, nothing through the host): every cached token is copied O(1) times
 * amortised. Chosen over pages because a shader binds at most eight storage buffers, so pages would
 * live in one arena buffer that has to grow by copying anyway, and a plain stride keeps the kernel's
 * inner loop free of a page-table lookup.
 *
 * With `precision: 'f16-storage'` each token's D (Dv) values are stored as `ceil(D / 2)` words of
 * packed binary16 pairs, rounded on the host at append (src/f16.ts); the kernel unpacks them into
 * its f32 tiles. Strides below are in 4-byte words per token, so growth and writes serve both.
 *
 * Ordering: the gate calls in call order and an append must copy its data before it returns. GPU work
 * is issued in that order too: an attention whose pipelines are compiled submits in the caller's
 * tick; one that must wait for a compilation is queued, and every later call that touches the cache
 * buffers (appends, growth) queues behind it, with its data copied now, so a truncate followed by an
 * append never overwrites keys an earlier, still-waiting attention reads.
 */
export class WebGpuKVCache implements KVCacheImplementation {
  private storage: CacheStorage | null = null;
  private readonly lengths: number[];
  /** Queued operations not yet issued, and the chain they run on. */
  private queued = 0;
  private tail: Promise<void> = Promise.resolve();
  /** A GPU error of an append, reported by the next attention (append itself returns nothing). */
  private failure: unknown = null;
  private disposed = false;

  constructor(
    private readonly s: DeviceState,
    private readonly workgroupSize: number | undefined,
    private readonly config: ResolvedKVCacheConfig,
  ) {
    this.lengths = new Array<number>(config.batch).fill(0);
    // A head size no kernel tile fits is rejected here (unsupported), not at the first attention.
    cacheVariant(s, workgroupSize, {
      batch: config.batch,
      queryHeads: config.kvHeads,
      kvHeads: config.kvHeads,
      queryLength: 1,
      keyLength: 1,
      headDim: config.headDim,
      valueDim: config.valueDim,
    });
    if (config.capacity > 0) {
      this.checkFits(config.capacity, 'createKVCache');
      this.storage = this.allocate(config.capacity);
    }
  }

  /** 4-byte words one key (value) token occupies: D (Dv) floats, or half as many packed f16 pairs. */
  private get keyWords(): number {
    const { headDim: D, precision } = this.config;
    return precision === 'f16-storage' ? packedWords(D) : D;
  }

  private get valueWords(): number {
    const { valueDim: Dv, precision } = this.config;
    return precision === 'f16-storage' ? packedWords(Dv) : Dv;
  }

  private streamWords(cap: number): number {
    const { batch: B, kvHeads: Hkv } = this.config;
    return B * Hkv * cap * Math.max(this.keyWords, this.valueWords);
  }

  /** `cap` tokens per stream must fit one storage binding (the kernel binds K and V whole). */
  private checkFits(cap: number, context: string): void {
    const limit = this.s.limits.tensorElements;
    const words = this.streamWords(cap);
    if (words > limit) {
      throw unsupported(
        'KV cache size (batch * kvHeads * tokens * max(headDim, valueDim), halved for f16 storage)',
        `at most ${limit} 4-byte words (one storage binding)`,
        words,
        context,
      );
    }
  }

  private allocate(cap: number): CacheStorage {
    const { batch: B, kvHeads: Hkv } = this.config;
    const { pool } = this.s;
    const k = pool.allocate(B * Hkv * cap * this.keyWords * 4, STORAGE_USAGE);
    const v = pool.allocate(B * Hkv * cap * this.valueWords * 4, STORAGE_USAGE);
    return { k, v, cap, precision: this.config.precision };
  }

  append(problem: KVCacheAppendProblem): void {
    const { batch: B } = this.config;
    let needed = 0;
    for (let b = 0; b < B; b++) needed = Math.max(needed, this.lengths[b] + problem.kept[b]);
    // Before any state changes: a cache that cannot hold the tokens rejects the append unchanged.
    this.checkFits(needed, 'cache.append');
    const starts = [...this.lengths];
    for (let b = 0; b < B; b++) this.lengths[b] += problem.kept[b];
    const record = (error: unknown) => {
      this.failure ??= error;
    };
    if (this.queued === 0) {
      guarded(this.s, 'cache.append', () => this.write(problem, starts, needed)).catch(record);
      return;
    }
    const copy = { ...problem, k: problem.k.slice(), v: problem.v.slice() };
    this.enqueue(() => guarded(this.s, 'cache.append', () => this.write(copy, starts, needed))).catch(record);
  }

  /** Grows if needed, then writes each stream's kept tokens at its row's length. Never awaits. */
  private write(
    { k, v, tokens, kept }: KVCacheAppendProblem,
    starts: readonly number[],
    needed: number,
  ): void {
    if (this.disposed) return;
    const { batch: B, kvHeads: Hkv, headDim: D, valueDim: Dv, precision } = this.config;
    const storage = this.grow(needed, starts);
    const { cap } = storage;
    const [kw, vw] = [this.keyWords, this.valueWords];
    for (let b = 0; b < B; b++) {
      if (kept[b] === 0) continue;
      for (let g = 0; g < Hkv; g++) {
        const stream = b * Hkv + g;
        const from = stream * tokens;
        const at = stream * cap + starts[b];
        const keys = k.subarray(from * D, (from + kept[b]) * D);
        const values = v.subarray(from * Dv, (from + kept[b]) * Dv);
        if (precision === 'f16-storage') {
          writeWords(this.s, storage.k, at * kw * 4, packF16Rows(keys, kept[b], D));
          writeWords(this.s, storage.v, at * vw * 4, packF16Rows(values, kept[b], Dv));
        } else {
          writeFloats(this.s, storage.k, at * kw * 4, keys);
          writeFloats(this.s, storage.v, at * vw * 4, values);
        }
      }
    }
  }

  /**
   * Storage with room for `needed` tokens per stream: the current one, or buffers of at least twice
   * the capacity into which each stream's `held[b]` tokens are copied on the GPU.
   */
  private grow(needed: number, held: readonly number[]): CacheStorage {
    const old = this.storage;
    if (old !== null && old.cap >= needed) return old;
    let cap = Math.max(MIN_CAPACITY, 2 ** Math.ceil(Math.log2(Math.max(needed, 2 * (old?.cap ?? 0)))));
    // Doubling past the binding limit: the exact size still fits (append checked it).
    if (this.streamWords(cap) > this.s.limits.tensorElements) cap = needed;
    const next = this.allocate(cap);
    if (old !== null) {
      const { batch: B, kvHeads: Hkv } = this.config;
      const [D, Dv] = [this.keyWords, this.valueWords];
      const encoder = this.s.device.createCommandEncoder({ label: 'attnkit:cache-grow' });
      for (let b = 0; b < B; b++) {
        if (held[b] === 0) continue;
        for (let g = 0; g < Hkv; g++) {
          const stream = b * Hkv + g;
          for (const [from, to, words] of [
            [old.k, next.k, D],
            [old.v, next.v, Dv],
          ] as const) {
            encoder.copyBufferToBuffer(
              from,
              stream * old.cap * words * 4,
              to,
              stream * cap * words * 4,
              held[b] * words * 4,
            );
          }
        }
      }
      this.s.device.queue.submit([encoder.finish()]);
      // Destroying a buffer that submitted work still reads is allowed: it is freed after that work.
      this.s.pool.destroyResident(old.k);
      this.s.pool.destroyResident(old.v);
    }
    this.storage = next;
    return next;
  }

  /** Runs `work` after every queued operation, counting it as queued until it has run. */
  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    this.queued++;
    const run = this.tail.then(work);
    this.tail = run.then(
      () => {
        this.queued--;
      },
      () => {
        this.queued--;
      },
    );
    return run;
  }

  truncate(lengths: readonly number[]): void {
    // Only the lengths: the tokens past them are overwritten by the next append, never read.
    for (let b = 0; b < lengths.length; b++) this.lengths[b] = lengths[b];
  }

  attention(problem: KVCacheAttentionProblem): Promise<AttentionResult> {
    const context = 'cache.attention';
    try {
      const s = this.s;
      stillUsable(s, context);
      if (this.failure !== null) throw this.failure;
      const variant = cacheVariant(s, this.workgroupSize, problem.shape);
      checkCacheCall(s, context, problem, variant);
      const { precision } = this.config;
      const compiled = this.queued === 0 ? compiledCachePipelines(s, variant, precision) : null;
      let staging: Promise<Staged[]>;
      if (compiled !== null) {
        // Everything in the caller's tick: an append issued after this call is ordered after it.
        staging = guarded(s, context, () => {
          const inputs = this.upload(problem);
          const reads = this.encode(problem, variant, compiled, inputs, context);
          for (const buffer of held(s, inputs)) s.pool.release(buffer);
          return reads;
        });
      } else {
        // q and the per-call tables go to the device now; the kernels wait for their compilation,
        // and later cache operations wait for this one.
        const uploading = guarded(s, context, () => this.upload(problem));
        staging = this.enqueue(async () => {
          const inputs = await uploading;
          return holding(s, held(s, inputs), async () => {
            const pipelines = await cachePipelines(s, variant, precision);
            stillUsable(s, context);
            if (this.failure !== null) throw this.failure;
            return guarded(s, context, () => this.encode(problem, variant, pipelines, inputs, context));
          });
        });
      }
      return staging.then(async (reads) => {
        const [output, lse] = await readStaging(s, context, reads);
        return problem.returnLse ? { output, lse } : { output };
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Encodes and submits the two kernels and the readback copies. Never awaits. */
  private encode(
    problem: KVCacheAttentionProblem,
    variant: AttentionVariant,
    pipelines: CachePipelines,
    inputs: CacheCallInputs,
    context: string,
  ): Staged[] {
    const s = this.s;
    const { device, pool } = s;
    const storage = this.storage;
    // The gate admits an attention only over appended tokens, and appends are issued before it.
    if (storage === null) throw new Error('attnkit: cache attention before any append');
    const encoder = device.createCommandEncoder();
    const out = encodeCacheAttention(s, encoder, problem, variant, pipelines, storage, inputs, context);
    const { batch: B, queryHeads: Hq, queryLength: Lq, valueDim: Dv } = problem.shape;
    const reads = [copyToStaging(s, encoder, out.output, B * Hq * Lq * Dv * 4)];
    if (problem.returnLse) reads.push(copyToStaging(s, encoder, out.lse, B * Hq * Lq * 4));
    device.queue.submit([encoder.finish()]);
    // The queue orders later writes after this submission, so the scratch can be reused at once.
    for (const buffer of [out.output, out.lse, ...out.temps]) pool.release(buffer);
    return reads;
  }

  private upload(problem: KVCacheAttentionProblem): CacheCallInputs {
    const s = this.s;
    const Hq = problem.shape.queryHeads;
    const q = uploadFloats(s, problem.q);
    const lengths = uploadBytes(s, new Uint8Array(Uint32Array.from(problem.lengths).buffer));
    let head = s.dummy;
    if (problem.alibiSlopes !== null || problem.sinks !== null) {
      const values = new Float32Array(2 * Hq);
      if (problem.alibiSlopes !== null) values.set(problem.alibiSlopes, 0);
      if (problem.sinks !== null) values.set(problem.sinks, Hq);
      head = uploadFloats(s, values);
    }
    return { q, lengths, head };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.storage !== null) {
      this.s.pool.destroyResident(this.storage.k);
      this.s.pool.destroyResident(this.storage.v);
      this.storage = null;
    }
  }
}
