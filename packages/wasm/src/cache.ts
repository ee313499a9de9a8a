/**
 * The wasm KV cache: keys and values resident in a linear memory of the cache's own, in fixed pages,
 * and split-K ("flash-decoding") attention over them on the kernel's worker pool.
 *
 * Each cache has its own `WebAssembly.Memory` (shared when threaded, and then instantiated in every
 * worker too) rather than pages inside the kernel's memory: a wasm memory cannot shrink, so only a
 * memory that is dropped whole gives its bytes back, and `dispose()` drops this one.
 */
import {
  type AttentionResult,
  AttnkitError,
  allocating,
  type KVCacheAppendProblem,
  type KVCacheAttentionProblem,
  type KVCacheImplementation,
  type ResolvedKVCacheConfig,
  shapeSymbols,
} from '@attnkit/spec';
import { type KernelExports, KIND, PARAM_BYTES, problemParams, writeParams } from './abi.js';
import { deviceError, type Kernel, runItemsOn, threading } from './kernel.js';
import {
  Arena,
  align,
  copyPadded,
  copyUnpadded,
  grow,
  MAX_MEMORY_BYTES,
  PAGE,
  round4,
  tooBig,
} from './memory.js';
import { CallQueue } from './queue.js';
import type { WorkerPool } from './threads.js';

/**
 * Tokens per page, per (row, kv head): 256 rows of K (128 KiB at D = 128) is long enough that the
 * per-tile page arithmetic vanishes next to the dot products, short enough that a row wastes little.
 */
export const PAGE_TOKENS = 256;
/**
 * Keys per split-K chunk, at most: long enough that a chunk's partial (one output row per query row)
 * costs little to write and merge next to its 1024 keys of work.
 */
const CHUNK_KEYS = 1024;
/**
 * Work items a call aims for: enough that the threads finish together (the last item is a small part
 * of each thread's share), so shorter caches get shorter chunks, down to one page.
 */
const TARGET_ITEMS = 64;
/** Partials may take this many bytes before chunks grow (a long prefill would otherwise need GBs). */
const PART_BUDGET = 16 * 1024 * 1024;

/**
 * Test hook: bytes the KV caches copied host -> wasm (`bytesIn`: appended K/V, queries, ALiBi slopes
 * and sinks) and wasm -> host (`bytesOut`: outputs and lse), payload only: the control block (the
 * Params words and one length per row) is not counted. Module-wide; a test reads the difference.
 */
export const cacheTransfers = { bytesIn: 0, bytesOut: 0 };

/** What a cache needs from the backend that made it. */
export interface CacheHost {
  live(): Kernel;
  /** Runs `work` when no other call uses the kernel's workers ({@link WasmImplementation.exclusive}). */
  exclusive<P, T>(
    problem: P,
    snapshot: (problem: P) => P,
    work: (kernel: Kernel, problem: P) => Promise<T> | T,
  ): Promise<T>;
  readonly blockQ: number;
  readonly blockK: number;
  readonly parallelMinWork: number;
  /** Stack bytes of each worker's instance. */
  readonly workerStackBytes: number;
  released(cache: WasmKVCache): void;
}

let nextMemoryId = 1;

function snapshotQuery(problem: KVCacheAttentionProblem): KVCacheAttentionProblem {
  return {
    ...problem,
    q: new Float32Array(problem.q),
    alibiSlopes: problem.alibiSlopes === null ? null : new Float32Array(problem.alibiSlopes),
    sinks: problem.sinks === null ? null : new Float32Array(problem.sinks),
  };
}

export class WasmKVCache implements KVCacheImplementation {
  private memory: WebAssembly.Memory | null;
  private readonly exports: KernelExports;
  private readonly id = nextMemoryId++;
  private readonly stackTops: number[] = [];
  private readonly d4: number;
  private readonly dv4: number;
  private readonly pageBytes: number;
  private readonly streams: number;
  private readonly pagesStart: number;
  /** Pages allocated per stream: page row `n` holds page `n` of every stream. */
  private pageRows = 0;
  private readonly lengths: number[];
  /**
   * Calls of this cache not settled yet (attention, deferred writes): while any is, an append must
   * not touch the pages and an attention must wait its turn, so each runs in call order.
   */
  /** Appends deferred behind a queued attention, and the attentions themselves, in order. */
  private readonly calls = new CallQueue();
  /** The pool this cache's memory is attached to, once a call has run on the workers. */
  private attachedTo: WorkerPool | null = null;
  private disposed = false;

  constructor(
    private readonly host: CacheHost,
    private readonly config: ResolvedKVCacheConfig,
  ) {
    const kernel = host.live();
    const { batch: B, kvHeads: Hkv, headDim: D, valueDim: Dv } = config;
    this.d4 = round4(D);
    this.dv4 = round4(Dv);
    // K rows, V rows, then one flag byte per V row (NaN/inf there: the guarded value pass)
    this.pageBytes = align(PAGE_TOKENS * (this.d4 + this.dv4) * 4 + PAGE_TOKENS, 64);
    this.streams = B * Hkv;
    this.lengths = new Array<number>(B).fill(0);
    const shared = kernel.pool !== null;
    // the module declares its data and stack, up to __heap_base, as its memory's minimum
    const initial = Math.max(1, Math.ceil((kernel.exports.__heap_base.value as number) / PAGE));
    const memory = shared
      ? new WebAssembly.Memory({ initial, maximum: MAX_MEMORY_BYTES / PAGE, shared: true })
      : new WebAssembly.Memory({ initial });
    let instance: WebAssembly.Instance;
    try {
      instance = new WebAssembly.Instance(kernel.module, { env: { memory } });
    } catch (error) {
      throw deviceError('instantiating the kernel for a KV cache', error);
    }
    this.memory = memory;
    this.exports = instance.exports as unknown as KernelExports;
    let base = align(this.exports.__heap_base.value as number, 64);
    for (let i = 0; i < (kernel.pool?.size ?? 0); i++) {
      base += host.workerStackBytes;
      this.stackTops.push(base);
    }
    this.pagesStart = align(base, 64);
    grow(memory, this.pagesStart, 'KV cache worker stacks');
    this.ensureRows(Math.ceil(config.capacity / PAGE_TOKENS));
  }

  /** Bytes of this cache's memory (0 once disposed). */
  bytes(): number {
    return this.memory?.buffer.byteLength ?? 0;
  }

  private get pagesEnd(): number {
    return this.pagesStart + this.pageRows * this.streams * this.pageBytes;
  }

  private pageAt(page: number, stream: number): number {
    return this.pagesStart + (page * this.streams + stream) * this.pageBytes;
  }

  /** Grows the memory to `rows` page rows. A refused grow leaves the cache as it was. */
  private ensureRows(rows: number): void {
    if (rows <= this.pageRows || this.memory === null) return;
    const end = this.pagesStart + rows * this.streams * this.pageBytes;
    if (end > MAX_MEMORY_BYTES) tooBig('this KV cache', end);
    grow(this.memory, end, 'KV cache pages');
    this.pageRows = rows;
  }

  append(problem: KVCacheAppendProblem): void {
    const { batch: B } = this.config;
    let longest = 0;
    for (let b = 0; b < B; b++) longest = Math.max(longest, this.lengths[b] + problem.kept[b]);
    // allocate first: a refused allocation throws before anything changes
    this.ensureRows(Math.ceil(longest / PAGE_TOKENS));
    const starts = [...this.lengths];
    for (let b = 0; b < B; b++) this.lengths[b] += problem.kept[b];
    if (this.calls.idle) {
      this.write(problem, starts);
      return;
    }
    // An attention of this cache is queued and reads the pages as they are now (after a truncate
    // this append would overwrite what it reads): keep a copy and write after it.
    const copy: KVCacheAppendProblem = {
      ...problem,
      k: new Float32Array(problem.k),
      v: new Float32Array(problem.v),
    };
    this.calls.track(
      this.calls.tail.then(() => {
        if (!this.disposed) this.write(copy, starts);
      }),
    );
  }

  /** Copies the kept tokens into their pages, in runs within one page, and flags non-finite V rows. */
  private write({ k, v, tokens, kept }: KVCacheAppendProblem, starts: readonly number[]): void {
    const memory = this.memory;
    if (memory === null) return;
    const { batch: B, kvHeads: Hkv, headDim: D, valueDim: Dv } = this.config;
    const { d4, dv4 } = this;
    const heap = new Float32Array(memory.buffer);
    let bytes = 0;
    for (let b = 0; b < B; b++) {
      for (let g = 0; g < Hkv; g++) {
        const stream = b * Hkv + g;
        const source = stream * tokens;
        for (let t = 0; t < kept[b]; ) {
          const position = starts[b] + t;
          const page = Math.floor(position / PAGE_TOKENS);
          const offset = position - page * PAGE_TOKENS;
          const run = Math.min(kept[b] - t, PAGE_TOKENS - offset);
          const from = source + t;
          const at = this.pageAt(page, stream);
          copyPadded(heap, at + offset * d4 * 4, k.subarray(from * D, (from + run) * D), run, D, d4);
          const vAt = at + PAGE_TOKENS * d4 * 4 + offset * dv4 * 4;
          copyPadded(heap, vAt, v.subarray(from * Dv, (from + run) * Dv), run, Dv, dv4);
          this.exports.nonfinite_rows(vAt, run, dv4, at + PAGE_TOKENS * (d4 + dv4) * 4 + offset);
          bytes += run * (D + Dv) * 4;
          t += run;
        }
      }
    }
    cacheTransfers.bytesIn += bytes;
  }

  /** Lengths only: the pages stay, so a speculative rollback appends again without allocating. */
  truncate(lengths: readonly number[]): void {
    for (let b = 0; b < lengths.length; b++) this.lengths[b] = lengths[b];
  }

  attention(problem: KVCacheAttentionProblem): Promise<AttentionResult> {
    const compute = (kernel: Kernel, p: KVCacheAttentionProblem) => this.compute(kernel, p);
    if (this.calls.idle) return this.calls.track(this.host.exclusive(problem, snapshotQuery, compute));
    const copy = snapshotQuery(problem);
    return this.calls.track(this.calls.tail.then(() => this.host.exclusive(copy, (p) => p, compute)));
  }

  private async compute(kernel: Kernel, problem: KVCacheAttentionProblem): Promise<AttentionResult> {
    const memory = this.memory;
    if (memory === null) throw new AttnkitError('disposed', 'wasm: the KV cache has been disposed');
    const { B, Hq, Hkv, Lq, D, Dv } = shapeSymbols(problem.shape);
    const { d4, dv4, exports } = this;
    const { pool } = kernel;
    const G = Hq / Hkv;
    // a tile's rows are its positions times the group's heads: about blockQ rows, one position at least
    const positions = Math.min(Lq, Math.max(1, Math.floor(this.host.blockQ / G)));
    const rows = positions * G;
    const tiles = Math.ceil(Lq / positions);
    let longest = 0;
    let work = 0;
    for (const n of problem.lengths) {
      longest = Math.max(longest, n);
      work += Hq * Lq * n * (D + Dv);
    }
    const partBytesPerChunk = this.streams * tiles * rows * (dv4 + 2) * 4;
    // a function of the shape and lengths only, never of the threads: the same bits on any pool
    const wanted = Math.ceil(TARGET_ITEMS / (this.streams * tiles));
    let chunkKeys = PAGE_TOKENS;
    while (chunkKeys < CHUNK_KEYS && chunkKeys * wanted < longest) chunkKeys *= 2;
    while (
      Math.ceil(longest / chunkKeys) > 1 &&
      Math.ceil(longest / chunkKeys) * partBytesPerChunk > PART_BUDGET
    )
      chunkKeys *= 2;
    const chunks = Math.max(1, Math.ceil(longest / chunkKeys));
    const items = this.streams * tiles * chunks;
    const { parallel, slots } = threading(pool, items, work, this.host.parallelMinWork);

    // the call's arena sits above the pages: pages grow into it later, it is rebuilt every call
    const arena = new Arena(this.pagesEnd);
    const params = arena.take(PARAM_BYTES);
    const lengths = arena.take(B * 4);
    const alibi = problem.alibiSlopes ? arena.take(Hq * 4) : 0;
    const sinks = problem.sinks ? arena.take(Hq * 4) : 0;
    const scratchStride = align(exports.attn_scratch_bytes(rows, this.host.blockK, dv4), 64);
    const scratch = arena.take(scratchStride * slots);
    const q = arena.take(B * Hq * Lq * d4 * 4);
    const part = arena.take(items * rows * (dv4 + 2) * 4);
    const out = arena.take(B * Hq * Lq * dv4 * 4);
    const lse = problem.returnLse ? arena.take(B * Hq * Lq * 4) : 0;
    if (arena.end > MAX_MEMORY_BYTES) tooBig('this KV cache attention call', arena.end);
    grow(memory, arena.end, "this KV cache attention call's queries and scratch");

    let heap = new Float32Array(memory.buffer);
    const words = new Uint32Array(memory.buffer);
    // q grouped as [B, Hkv, Lq, G, d4]: a tile's rows (positions x the group's heads) are contiguous
    const q0 = q >>> 2;
    if (D !== d4) heap.fill(0, q0, q0 + B * Hq * Lq * d4);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < Hq; h++) {
        const g = Math.floor(h / G);
        const r = h - g * G;
        for (let i = 0; i < Lq; i++) {
          const from = ((b * Hq + h) * Lq + i) * D;
          const to = q0 + (((b * Hkv + g) * Lq + i) * G + r) * d4;
          heap.set(problem.q.subarray(from, from + D), to);
        }
      }
    }
    let bytesIn = problem.q.length * 4;
    if (problem.alibiSlopes) {
      heap.set(problem.alibiSlopes, alibi >>> 2);
      bytesIn += Hq * 4;
    }
    if (problem.sinks) {
      heap.set(problem.sinks, sinks >>> 2);
      bytesIn += Hq * 4;
    }
    cacheTransfers.bytesIn += bytesIn;
    words.set(problem.lengths, lengths >>> 2);

    writeParams(words, heap, params, {
      q,
      out,
      lse,
      alibi,
      sinks,
      ...problemParams(problem),
      lk: longest,
      blockQ: rows,
      blockK: this.host.blockK,
      nItems: items,
      counter: 0,
      scratch,
      scratchStride,
      kind: KIND.cache,
      nChunks: chunks,
      pages: this.pagesStart,
      pageBytes: this.pageBytes,
      pageTokens: PAGE_TOKENS,
      pageV: PAGE_TOKENS * d4 * 4,
      pageFlags: PAGE_TOKENS * (d4 + dv4) * 4,
      streams: this.streams,
      lengths,
      part,
      chunkKeys,
      tilePositions: positions,
    });

    try {
      if (parallel && pool !== null && this.attachedTo !== pool) {
        await pool.replaceDead();
        await pool.attach(this.id, memory, this.stackTops);
        this.attachedTo = pool;
      }
      await runItemsOn(exports, pool, this.id, params, parallel);
      exports.cache_merge(params);
    } catch (error) {
      throw deviceError('KV cache attention', error);
    }

    heap = new Float32Array(memory.buffer);
    const count = B * Hq * Lq;
    const result: AttentionResult = {
      output: allocating('cache.attention', 'output', count * Dv * 4, () =>
        copyUnpadded(heap, out, count, Dv, dv4),
      ),
    };
    let bytesOut = count * Dv * 4;
    if (lse) {
      result.lse = allocating('cache.attention', 'lse', count * 4, () =>
        heap.slice(lse >>> 2, (lse >>> 2) + count),
      );
      bytesOut += count * 4;
    }
    cacheTransfers.bytesOut += bytesOut;
    return result;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    // the gate waits for this cache's calls first; dropping the memory returns its bytes
    this.memory = null;
    this.attachedTo?.detach(this.id);
    this.attachedTo = null;
    this.host.released(this);
  }
}
