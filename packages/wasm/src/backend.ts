/**
 * The wasm backend's factory and lifecycle: options validated once, the kernel instantiated (and its
 * workers started) at init, calls serialised on it, caches and memory owned here; each call is
 * marshalled and dispatched by `run.ts` (forward, matmul), `backward.ts` or `cache.ts`.
 */
import {
  ALL_FEATURES,
  type AttentionBackend,
  type AttentionBackwardProblem,
  type AttentionGradients,
  type AttentionProblem,
  type AttentionResult,
  AttnkitError,
  type BackendCapabilities,
  createBackend,
  describeValue,
  type FactoryOptionSchema,
  type KVCacheImplementation,
  type MatmulProblem,
  type ResolvedKVCacheConfig,
  snapshotAttentionBackwardProblem,
  snapshotAttentionProblem,
  snapshotMatmulProblem,
  validateFactoryOptions,
} from '@attnkit/spec';
import type { KernelExports } from './abi.js';
import { runAttentionBackward } from './backward.js';
import { WasmKVCache } from './cache.js';
import type { Kernel } from './kernel.js';
import { align, grow, MAX_MEMORY_BYTES, PAGE } from './memory.js';
import { CallQueue } from './queue.js';
import { runAttention, runMatmul } from './run.js';
import {
  compileKernel,
  defaultKernelUrl,
  hardwareThreads,
  type KernelFlavour,
  sharedMemoryUnavailableReason,
} from './runtime.js';
import { WorkerPool } from './threads.js';
import { WASM_TOLERANCE } from './tolerance.js';

/** Options of {@link createWasmBackend}. */
export interface WasmBackendOptions {
  /**
   * Threads that share the work, the calling thread included: an integer in [1, 64] or `'auto'`
   * (the number of logical processors). Default 1. Above 1 needs shared WebAssembly memory: in a
   * browser, a cross-origin isolated page. Where it is missing the backend runs on one thread and
   * says why in `capabilities.notes`.
   */
  threads?: number | 'auto';
  /** Query rows per tile (a work item). Default 64. Changes speed only. */
  queryBlock?: number;
  /** Keys per tile. Default 64: a 64 x 64 float32 K tile (16 KiB) stays in L1. Changes speed only. */
  keyBlock?: number;
  /**
   * Calls with fewer multiply-adds than this stay on the calling thread, since handing work to the
   * workers costs a message round trip. Default 2^22. 0 sends every call with more than one work item
   * to the workers (the tests do this to exercise them on small cases).
   */
  parallelMinWork?: number;
  /** Where to load the single-thread kernel from. Default: `../wasm/attnkit.wasm` beside this module. */
  wasmUrl?: string | URL;
  /** Where to load the threads kernel from. Default: `../wasm/attnkit-threads.wasm` beside this module. */
  wasmThreadsUrl?: string | URL;
}

const DEFAULT_BLOCK = 64;
const MAX_BLOCK = 1024;
const MAX_THREADS = 64;
/** Below this many multiply-adds a call stays on the calling thread: a worker round trip costs more. */
const PARALLEL_MIN_WORK = 1 << 22;
/** Stack of each worker's instance (the kernel keeps its state in locals and scratch, not the stack). */
const WORKER_STACK_BYTES = 256 * 1024;
const INITIAL_PAGES = 64;

function invalidOption(argument: string, expected: string, value: unknown): never {
  const actual = describeValue(value);
  throw new AttnkitError(
    'invalid-argument',
    `createWasmBackend: ${argument} must be ${expected}, got ${actual}`,
    {
      argument,
      expected,
      actual,
    },
  );
}

const isUrlLike = (value: unknown) => typeof value === 'string' || value instanceof URL;

const OPTION_SCHEMA: FactoryOptionSchema<WasmBackendOptions> = {
  threads: { kind: 'integer', min: 1, max: MAX_THREADS, also: ['auto'] },
  queryBlock: { kind: 'integer', min: 1, max: MAX_BLOCK },
  keyBlock: { kind: 'integer', min: 1, max: MAX_BLOCK },
  parallelMinWork: { kind: 'integer', min: 0, max: Number.MAX_SAFE_INTEGER },
  wasmUrl: { kind: 'custom', description: 'a URL or a string', test: isUrlLike },
  wasmThreadsUrl: { kind: 'custom', description: 'a URL or a string', test: isUrlLike },
};

/** The exports `runAttention`/`runMatmul`/`runAttentionBackward` call: a module without them is not this kernel. */
const REQUIRED_EXPORTS = [
  'attn_scratch_bytes',
  'nonfinite_rows',
  'attn_run',
  'matmul',
  'bwd_scratch_bytes',
  'bwd_prep',
  'bwd_finish',
  'cache_merge',
] as const;

/** Null when `exports` has everything the loader calls, else the first missing export's name. */
function missingExport(exports: WebAssembly.Exports): string | null {
  for (const name of REQUIRED_EXPORTS) if (typeof exports[name] !== 'function') return name;
  const heapBase = exports.__heap_base;
  if (!(heapBase instanceof WebAssembly.Global) || typeof heapBase.value !== 'number') return '__heap_base';
  return null;
}

function urlOption(name: string, value: unknown, flavour: KernelFlavour): URL {
  if (value === undefined) return defaultKernelUrl(flavour);
  if (value instanceof URL) return value;
  if (typeof value === 'string') {
    try {
      return new URL(value, (globalThis as { location?: { href: string } }).location?.href);
    } catch {
      invalidOption(`options.${name}`, 'an absolute URL (or a URL relative to the page)', value);
    }
  }
  invalidOption(`options.${name}`, 'a URL or a string', value);
}

class WasmImplementation {
  readonly name = 'wasm';
  readonly workerStackBytes = WORKER_STACK_BYTES;
  private kernel: Kernel | null = null;
  private readonly calls = new CallQueue();
  private caps: BackendCapabilities;
  /** Open KV caches: each holds a memory of its own, counted in memory(). */
  private readonly caches = new Set<WasmKVCache>();

  constructor(
    private readonly requestedThreads: number | 'auto',
    readonly blockQ: number,
    readonly blockK: number,
    private readonly urls: Record<KernelFlavour, URL>,
    readonly parallelMinWork: number,
  ) {
    this.caps = this.describe(1, 'not initialised', []);
  }

  private describe(threads: number, engine: string, notes: string[]): BackendCapabilities {
    return {
      features: [...ALL_FEATURES, 'kvCache', 'backward'],
      // one call's tensors share one wasm32 memory of at most 4 GiB; the call checks the sum
      limits: { tensorElements: 2 ** 29 },
      tolerance: WASM_TOLERANCE,
      deterministic: true,
      engine,
      threads,
      notes: [
        ...notes,
        "precision 'f16-storage': q, k and v rounded to binary16 on the host by the gate (withF16StoredInputs), then the float32 kernel: the spec's result, no memory saved",
      ],
    };
  }

  capabilities(): BackendCapabilities {
    return this.caps;
  }

  async init(): Promise<void> {
    if (this.kernel !== null) return;
    const requested = this.requestedThreads === 'auto' ? await hardwareThreads() : this.requestedThreads;
    const notes: string[] = [];
    let threads = Math.max(1, Math.min(MAX_THREADS, requested));
    if (threads > 1) {
      const reason = sharedMemoryUnavailableReason();
      if (reason !== null) {
        notes.push(`single-threaded (${threads} threads were asked for): ${reason}`);
        threads = 1;
      }
    }
    const flavour: KernelFlavour = threads > 1 ? 'threads' : 'single';
    const url = this.urls[flavour];
    let module: WebAssembly.Module;
    try {
      module = await compileKernel(url);
    } catch (error) {
      throw new AttnkitError(
        'unavailable',
        `wasm: cannot load the kernel from ${url.href}: ${String(error)}` +
          ' (a source checkout builds it with `pnpm --filter @attnkit/wasm build`)',
        { cause: error },
      );
    }
    const memory =
      flavour === 'threads'
        ? new WebAssembly.Memory({ initial: INITIAL_PAGES, maximum: MAX_MEMORY_BYTES / PAGE, shared: true })
        : new WebAssembly.Memory({ initial: INITIAL_PAGES });
    let instance: WebAssembly.Instance;
    try {
      instance = await WebAssembly.instantiate(module, { env: { memory } });
    } catch (error) {
      throw new AttnkitError(
        'unavailable',
        `wasm: the module at ${url.href} cannot be instantiated as the attnkit kernel: ${String(error)}`,
        { argument: 'wasmUrl', expected: 'the attnkit kernel', actual: String(error), cause: error },
      );
    }
    const missing = missingExport(instance.exports);
    if (missing !== null) {
      throw new AttnkitError(
        'unavailable',
        `wasm: the module at ${url.href} is not the attnkit kernel: it has no export "${missing}" ` +
          `(needs ${[...REQUIRED_EXPORTS, '__heap_base'].join(', ')})`,
        {
          argument: flavour === 'threads' ? 'wasmThreadsUrl' : 'wasmUrl',
          expected: `a module exporting ${[...REQUIRED_EXPORTS, '__heap_base'].join(', ')}`,
          actual: `no export "${missing}"`,
        },
      );
    }
    const exports = instance.exports as unknown as KernelExports;
    let base = align(exports.__heap_base.value as number, 64);
    let pool: WorkerPool | null = null;
    if (threads > 1) {
      const stackTops: number[] = [];
      for (let i = 0; i < threads - 1; i++) {
        base += WORKER_STACK_BYTES;
        stackTops.push(base);
      }
      grow(memory, base, 'worker stacks');
      try {
        pool = await WorkerPool.start(threads - 1, module, memory, stackTops);
      } catch (error) {
        throw new AttnkitError(
          'unavailable',
          `wasm: cannot start ${threads - 1} worker(s): ${String(error)}`,
          {
            cause: error,
          },
        );
      }
      notes.push(
        `calls under ${this.parallelMinWork} multiply-adds run on the calling thread only (a worker round trip costs more)`,
      );
    }
    this.kernel = { memory, exports, pool, base, module };
    const engine =
      threads > 1
        ? `wasm simd128 (Rust), ${threads} threads on one shared memory`
        : 'wasm simd128 (Rust), single thread';
    this.caps = this.describe(threads, engine, notes);
  }

  /** Calls started and not yet settled. */
  live(): Kernel {
    const kernel = this.kernel;
    if (kernel === null) throw new AttnkitError('disposed', 'wasm: the kernel has been released');
    return kernel;
  }

  /**
   * One call at a time: calls share the kernel's arena and its workers. An idle kernel starts the
   * call now, in the caller's tick, so `runAttention` copies every input into linear memory before
   * `attention()` returns; a busy one cannot touch the arena yet, so the call keeps a copy of its
   * inputs until its turn (the caller may overwrite or transfer its arrays as soon as it returns).
   */
  exclusive<P, T>(
    problem: P,
    snapshot: (problem: P) => P,
    work: (kernel: Kernel, problem: P) => Promise<T> | T,
  ): Promise<T> {
    let result: Promise<T>;
    if (this.calls.idle) {
      try {
        result = Promise.resolve(work(this.live(), problem));
      } catch (error) {
        result = Promise.reject(error);
      }
    } else {
      const copy = snapshot(problem);
      result = this.calls.tail.then(() => work(this.live(), copy));
    }
    return this.calls.track(result);
  }

  attention(problem: AttentionProblem): Promise<AttentionResult> {
    return this.exclusive(problem, snapshotAttentionProblem, (kernel, p) =>
      runAttention(kernel, p, this.blockQ, this.blockK, this.parallelMinWork),
    );
  }

  attentionBackward(problem: AttentionBackwardProblem): Promise<AttentionGradients> {
    return this.exclusive(problem, snapshotAttentionBackwardProblem, (kernel, p) =>
      runAttentionBackward(kernel, p, this.blockQ, this.blockK, this.parallelMinWork),
    );
  }

  matmul(problem: MatmulProblem): Promise<Float32Array> {
    return this.exclusive(problem, snapshotMatmulProblem, runMatmul);
  }

  createKVCache(config: ResolvedKVCacheConfig): KVCacheImplementation {
    const cache = new WasmKVCache(this, config);
    this.caches.add(cache);
    return cache;
  }

  released(cache: WasmKVCache): void {
    this.caches.delete(cache);
  }

  memory() {
    let hostBytes = this.kernel?.memory.buffer.byteLength ?? 0;
    for (const cache of this.caches) hostBytes += cache.bytes();
    return { hostBytes, deviceBytes: 0 };
  }

  async dispose(): Promise<void> {
    const kernel = this.kernel;
    this.kernel = null;
    await this.calls.tail;
    if (kernel?.pool) await kernel.pool.terminate();
  }
}

/**
 * Creates the WebAssembly backend. Nothing is loaded until `init()` or the first call; `dispose()`
 * terminates the workers and drops the wasm memory.
 *
 * @example
 * ```ts
 * const backend = createWasmBackend({ threads: 2 });
 * const { output } = await backend.attention({ q, k, v, shape }, { causal: true });
 * await backend.dispose();
 * ```
 */
export function createWasmBackend(options?: WasmBackendOptions): AttentionBackend {
  const checked = validateFactoryOptions('createWasmBackend', options, OPTION_SCHEMA);
  const implementation = new WasmImplementation(
    checked.threads ?? 1,
    checked.queryBlock ?? DEFAULT_BLOCK,
    checked.keyBlock ?? DEFAULT_BLOCK,
    {
      single: urlOption('wasmUrl', checked.wasmUrl, 'single'),
      threads: urlOption('wasmThreadsUrl', checked.wasmThreadsUrl, 'threads'),
    },
    checked.parallelMinWork ?? PARALLEL_MIN_WORK,
  );
  return createBackend({
    name: implementation.name,
    capabilities: () => implementation.capabilities(),
    init: () => implementation.init(),
    // f16 storage: the kernel runs on the inputs the gate rounded (the spec's definition); no binary16 path of its own.
    f16Storage: 'rounded-on-host',
    attention: (problem) => implementation.attention(problem),
    attentionBackward: (problem) => implementation.attentionBackward(problem),
    matmul: (problem) => implementation.matmul(problem),
    createKVCache: (config) => implementation.createKVCache(config),
    memory: () => implementation.memory(),
    dispose: () => implementation.dispose(),
  });
}

/** Zero-argument factory, the module's default export (what the conformance CLI imports): one thread. */
export default function createDefaultWasmBackend(): AttentionBackend {
  return createWasmBackend();
}

/**
 * Zero-argument factory on every logical processor (`threads: 'auto'`), for the conformance CLI's
 * `--export createAutoThreadedWasmBackend` and the bench. Single-threaded, with the reason in
 * `capabilities.notes`, where shared memory is unavailable.
 */
export function createAutoThreadedWasmBackend(): AttentionBackend {
  return createWasmBackend({ threads: 'auto' });
}
