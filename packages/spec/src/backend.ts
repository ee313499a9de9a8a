import {
  type AttentionBackwardInputs,
  type AttentionBackwardProblem,
  type AttentionGradients,
  type AttentionGradientsFor,
  validateAttentionBackward,
} from './backward.js';
import {
  type KVCache,
  type KVCacheAppend,
  type KVCacheAttentionOptions,
  type KVCacheConfig,
  type KVCacheImplementation,
  type KVCacheQuery,
  maxAbsKeyOf,
  type ResolvedKVCacheConfig,
  validateKVCacheAppend,
  validateKVCacheAttention,
  validateKVCacheConfig,
  validateKVCacheTruncate,
} from './cache.js';
import {
  type DeviceAttentionInputs,
  type DeviceBackend,
  type DeviceImplementation,
  type DeviceMatmulInputs,
  type DeviceTensor,
  type UploadOptions,
  validateDeviceAttention,
  validateDeviceMatmul,
  validateDeviceRead,
  validateUpload,
} from './device.js';
import { AttnkitError } from './errors.js';
import { withF16StoredInputs } from './f16.js';
import type { AttentionFeature } from './features.js';
import { composeLayer, type LayerInputs, type LayerProblem, validateLayer } from './layer.js';
import {
  snapshotAttentionBackwardProblem,
  snapshotAttentionProblem,
  snapshotLayerProblem,
  snapshotMatmulProblem,
  snapshotOptions,
} from './snapshot.js';
import { shapeSymbols } from './symbols.js';
import type {
  AttentionInputs,
  AttentionOptions,
  AttentionProblem,
  AttentionResult,
  AttentionResultFor,
  KnownAttentionOptions,
  MatmulInputs,
  MatmulProblem,
  MatmulShape,
  ResolvedShape,
} from './types.js';
import {
  checkLogitRange,
  DEVICE_ATTENTION,
  maxAbsFinite,
  type ResolvedOptions,
  validateAttention,
  validateMatmul,
} from './validate.js';

/** Per-dimension upper bounds. Absent means "as large as memory allows". */
export interface BackendLimits {
  batch?: number;
  queryHeads?: number;
  kvHeads?: number;
  queryLength?: number;
  keyLength?: number;
  headDim?: number;
  valueDim?: number;
  /** Largest element count of any one tensor (input, output or weights). */
  tensorElements?: number;
}

/**
 * `|out - ref| <= atol + rtol * |ref| + fudge * |naive32 - ref|`, the same for every case, where `ref`
 * is the float64 reference and `naive32` the spec composed naively in float32 (every operation
 * rounded): a float32 backend is measured against what float32 arithmetic costs on those inputs.
 * The conformance suite caps what may be declared (see its README).
 */
export interface Tolerance {
  atol: number;
  rtol: number;
  /** Multiple of the naive float32 error allowed on top; absent means 0 (a float64 backend). */
  fudge?: number;
}

/** What a backend can do; the conformance suite reads it to choose cases and tolerances. */
export interface BackendCapabilities {
  /** Supported features. A call that needs another is rejected with `unsupported`. */
  features: readonly AttentionFeature[];
  limits: BackendLimits;
  tolerance: Tolerance;
  /** Same inputs give the same bits, call after call. */
  deterministic: boolean;
  /** What actually runs: "float64 reference", "WebGL2Kernel on ANGLE (SwiftShader)", "wasm simd128, 2 threads". */
  engine: string;
  /** Worker threads used (1 = the calling thread only). */
  threads: number;
  /** Why something is not as the caller may expect: e.g. "single-threaded: SharedArrayBuffer unavailable". */
  notes: readonly string[];
}

/** Memory a backend holds right now, in bytes, by kind. */
export interface BackendMemory {
  /** Bytes held on the JS heap in typed arrays and wasm memories. */
  hostBytes: number;
  /** Bytes of GPU buffers and textures. */
  deviceBytes: number;
}

/**
 * The contract every backend meets (docs/architecture.md, "The gate"). Create one with its package's factory; it acquires
 * nothing until {@link AttentionBackend.init} (or the first call, which initialises lazily) and frees
 * everything on {@link AttentionBackend.dispose}.
 */
export interface AttentionBackend {
  /** Short id: `cpu`, `wasm`, `webgl`, `webgpu`, `reference`. */
  readonly name: string;
  /** Valid after `init()` resolves (device limits, thread counts are only known then). */
  readonly capabilities: BackendCapabilities;
  /** Acquires devices, compiles, spawns workers. Idempotent. Rejects with `unavailable` and the reason. */
  init(): Promise<void>;
  /**
   * Scaled dot-product attention exactly as the spec README's semantics define it. The result type follows the
   * options: with `returnLse: true` (`returnWeights: true`) `lse` (`weights`) is a `Float32Array`.
   */
  attention<O extends AttentionOptions = AttentionOptions>(
    inputs: AttentionInputs,
    options?: KnownAttentionOptions<O>,
  ): Promise<AttentionResultFor<O>>;
  /**
   * The gradients of {@link AttentionBackend.attention} (spec README, "Backward"): given the
   * forward's inputs, its `output` and `lse` (call the forward with `returnLse: true`) and
   * `gradOutput`, returns `gradQ`, `gradK`, `gradV`, and `gradBias`/`gradSinks` when the options
   * have a bias/sinks. `options` are the forward's. Rejects `unsupported` on a backend whose
   * capabilities lack `backward`.
   */
  attentionBackward<O extends AttentionOptions = AttentionOptions>(
    inputs: AttentionBackwardInputs,
    options?: KnownAttentionOptions<O>,
  ): Promise<AttentionGradientsFor<O>>;
  /** `a [m, k] @ b [k, n] (+ bias [n])`, for the multi-head attention layer's projections. */
  matmul(inputs: MatmulInputs): Promise<Float32Array>;
  /**
   * The multi-head attention layer (spec README, "The layer"): project, attend, project out.
   * Validated here once; runs the backend's fused layer when it has one (webgpu: everything on the
   * device, one readback), else the spec's composition over this backend's `matmul` and `attention`.
   */
  multiHeadAttention<O extends AttentionOptions = AttentionOptions>(
    inputs: LayerInputs,
    options?: KnownAttentionOptions<O>,
  ): Promise<AttentionResultFor<O>>;
  /**
   * A KV cache for incremental decoding (spec README, "KV cache"). Rejects `unsupported` on a backend
   * whose capabilities lack `kvCache`. Its memory counts in {@link AttentionBackend.memory}; the
   * backend's `dispose()` disposes it too.
   */
  createKVCache(config: KVCacheConfig): Promise<KVCache>;
  /** Bytes the backend holds now. */
  memory(): BackendMemory;
  /** Waits for calls in flight, then frees every resource. Later calls reject with `disposed`. */
  dispose(): Promise<void>;
}

/** A function that makes a fresh backend; what the conformance suite and the bench receive. */
export type BackendFactory = () => AttentionBackend | Promise<AttentionBackend>;

/**
 * The small surface a backend author writes; {@link createBackend} wraps it with validation, feature
 * and limit checks, lazy init, in-flight tracking and use-after-dispose errors, so every backend
 * rejects bad input identically and before any work starts.
 */
export interface BackendImplementation {
  readonly name: string;
  /** Read after `init()`; may change during it. */
  capabilities(): BackendCapabilities;
  init(): Promise<void>;
  /**
   * How `attention` implements `precision: 'f16-storage'` (with the `f16Storage` feature):
   * `'native'` (the default) reads the option itself (webgpu stores binary16); `'rounded-on-host'`
   * has the gate hand `attention` the problem with q, k and v rounded by {@link withF16StoredInputs}
   * (the spec's result from a float32 kernel, no memory saved: cpu, wasm, webgl).
   */
  readonly f16Storage?: 'native' | 'rounded-on-host';
  /** Receives a validated problem that fits the capabilities (see {@link f16Storage}). */
  attention(problem: AttentionProblem): Promise<AttentionResult>;
  matmul(problem: MatmulProblem): Promise<Float32Array>;
  /**
   * Optional: the backward pass of a validated problem that fits the capabilities. Without it (or
   * without `backward` in the capabilities) the gate rejects `attentionBackward` with `unsupported`.
   * Returns `gradBias` exactly when `problem.bias` is set and `gradSinks` when `problem.sinks` is.
   */
  attentionBackward?(problem: AttentionBackwardProblem): Promise<AttentionGradients>;
  /**
   * Optional: a KV cache for a validated config, called after `init()`. Without it (or without
   * `kvCache` in the capabilities) the gate rejects `createKVCache` with `unsupported`.
   */
  createKVCache?(config: ResolvedKVCacheConfig): KVCacheImplementation;
  /**
   * Optional: the whole multi-head attention layer of a validated problem that fits the
   * capabilities, fused (e.g. on a device without reading the projections back). Without it the gate
   * composes the layer from `matmul` and `attention`. Returns `lse`/`weights` exactly when
   * `problem.options` asks for them.
   */
  layer?(problem: LayerProblem): Promise<AttentionResult>;
  memory(): BackendMemory;
  dispose(): Promise<void>;
}

/**
 * What feature and limit checks read of a problem: its shape and resolved options (not the
 * tensors, so a device call's problem and a layer's attention are checked by the same rules).
 */
export type AttentionRequirements = ResolvedOptions & { shape: ResolvedShape };

/** The features a validated problem needs. */
export function requiredFeatures(problem: AttentionRequirements): AttentionFeature[] {
  const needed: AttentionFeature[] = [];
  const { shape } = problem;
  if (problem.causal) needed.push('causal');
  if (problem.slidingWindow !== null) needed.push('slidingWindow');
  if (problem.keyMask !== null) needed.push('keyMask');
  if (problem.bias !== null) needed.push('bias');
  if (problem.alibiSlopes !== null) needed.push('alibiSlopes');
  if (problem.softcap !== null) needed.push('softcap');
  if (problem.sinks !== null) needed.push('sinks');
  if (problem.returnLse) needed.push('returnLse');
  if (problem.returnWeights) needed.push('returnWeights');
  if (shape.kvHeads !== shape.queryHeads) needed.push('groupedQuery');
  if (shape.keyLength !== shape.queryLength) needed.push('crossAttention');
  if (shape.valueDim !== shape.headDim) needed.push('valueDim');
  if (problem.precision === 'f16-storage') needed.push('f16Storage');
  return needed;
}

/** Throws `unsupported` if the problem needs a feature or size the backend does not have. */
export function assertSupported(
  name: string,
  capabilities: BackendCapabilities,
  problem: AttentionRequirements,
  context = 'attention',
): void {
  const supported = new Set(capabilities.features);
  const needed = requiredFeatures(problem);
  if (context === 'attentionBackward') needed.unshift('backward');
  if (context === DEVICE_ATTENTION && problem.precision === 'f16-storage') needed.push('deviceF16Storage');
  for (const feature of needed) {
    if (!supported.has(feature)) {
      throw new AttnkitError('unsupported', `${context}: backend "${name}" does not support ${feature}`, {
        argument: feature,
        expected: `one of the supported features: ${capabilities.features.join(', ')}`,
        actual: feature,
      });
    }
  }
  const { limits } = capabilities;
  const dims: (keyof ResolvedShape & keyof BackendLimits)[] = [
    'batch',
    'queryHeads',
    'kvHeads',
    'queryLength',
    'keyLength',
    'headDim',
    'valueDim',
  ];
  for (const dim of dims) {
    const limit = limits[dim];
    if (limit !== undefined && problem.shape[dim] > limit) {
      throw new AttnkitError(
        'unsupported',
        `${context}: shape.${dim} must be at most ${limit} on backend "${name}", got ${problem.shape[dim]}`,
        { argument: `shape.${dim}`, expected: `at most ${limit}`, actual: String(problem.shape[dim]) },
      );
    }
  }
  if (limits.tensorElements !== undefined) {
    const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(problem.shape);
    const tensors: [string, number][] = [
      ['q', B * Hq * Lq * D],
      ['k', B * Hkv * Lk * D],
      ['v', B * Hkv * Lk * Dv],
      ['output', B * Hq * Lq * Dv],
    ];
    if (problem.returnWeights) tensors.push(['weights', B * Hq * Lq * Lk]);
    assertTensorElements(name, capabilities, tensors, context);
  }
}

/** Throws `unsupported` if a tensor has more elements than `capabilities.limits.tensorElements`. */
export function assertTensorElements(
  name: string,
  capabilities: BackendCapabilities,
  tensors: readonly (readonly [string, number])[],
  context: string,
): void {
  const limit = capabilities.limits.tensorElements;
  if (limit === undefined) return;
  for (const [tensor, elements] of tensors) {
    if (elements > limit) {
      throw new AttnkitError(
        'unsupported',
        `${context}: ${tensor} must have at most ${limit} elements on backend "${name}", got ${elements}`,
        { argument: tensor, expected: `at most ${limit} elements`, actual: String(elements) },
      );
    }
  }
}

/** The matmul's operands and output against `limits.tensorElements`. */
export function assertMatmulSupported(
  name: string,
  capabilities: BackendCapabilities,
  shape: MatmulShape,
  context = 'matmul',
): void {
  const { m, k, n } = shape;
  const tensors: [string, number][] = [
    ['a', m * k],
    ['b', k * n],
    ['output', m * n],
  ];
  assertTensorElements(name, capabilities, tensors, context);
}

/** A layer's attention (features, head sizes) and every tensor it makes against the limits. */
export function assertLayerSupported(
  name: string,
  capabilities: BackendCapabilities,
  problem: LayerProblem,
  context = 'multiHeadAttention',
): void {
  assertSupported(name, capabilities, { ...problem.options, shape: problem.attentionShape }, context);
  const { batch: B, queryLength: Lq, keyLength: Lk, modelDim: M } = problem.shape;
  const { queryHeads: Hq, kvHeads: Hkv, headDim: D, valueDim: Dv } = problem.shape;
  const tensors: [string, number][] = [
    ['x', B * Lq * M],
    ['context', B * Lk * M],
    ['weights.wq', M * Hq * D],
    ['weights.wk', M * Hkv * D],
    ['weights.wv', M * Hkv * Dv],
    ['weights.wo', Hq * Dv * M],
    ['merged', B * Lq * Hq * Dv],
  ];
  assertTensorElements(name, capabilities, tensors, context);
}

/** Calls `run` now, turning a synchronous throw into a rejection. */
function now<T>(run: () => Promise<T>): Promise<T> {
  try {
    return run();
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Wraps a {@link BackendImplementation} into a full {@link AttentionBackend}: validation first (before
 * init, so bad input never acquires a device), then lazy init, capability checks, in-flight tracking,
 * and a `dispose` that waits for running calls.
 *
 * Inputs are read before a call returns (the README's "When inputs are read"): on an initialised
 * backend the implementation is called in the caller's tick, so its synchronous prefix (computing,
 * copying into wasm memory, `writeBuffer`) reads the caller's arrays before the caller can touch
 * them; while init is pending the inputs are copied first.
 */
export function createBackend(implementation: BackendImplementation): AttentionBackend {
  return openGate(implementation).backend;
}

/**
 * The gate itself: the {@link AttentionBackend} made from `implementation`, and {@link Gate.call},
 * the one validate / init / track / dispose sequence every entry point of it runs, for a backend's
 * own extra entry points (webgpu's `prepare`).
 */
export interface Gate<B extends AttentionBackend = AttentionBackend> {
  readonly backend: B;
  /**
   * One gated call: rejects `disposed` after dispose; runs `validate` now (a throw is the call's
   * rejection, before anything is acquired); then, when the backend is initialised, `run` in the
   * caller's tick on the validated problem, else `run` on `snapshot(problem)` once init resolves.
   * Tracked, so `dispose` waits for it.
   */
  call<P, R>(
    method: string,
    validate: () => P,
    snapshot: (problem: P) => P,
    run: (problem: P) => Promise<R>,
  ): Promise<R>;
}

/** {@link createBackend}, returning the {@link Gate} (its `backend` and `call`). */
export function openGate(implementation: BackendImplementation): Gate {
  let initialized = false;
  let initializing: Promise<void> | null = null;
  let disposing: Promise<void> | null = null;
  const inFlight = new Set<Promise<unknown>>();

  const ensureOpen = (method: string) => {
    if (disposing !== null) {
      throw new AttnkitError('disposed', `${method}: backend "${implementation.name}" has been disposed`, {
        argument: 'backend',
        expected: 'a backend that has not been disposed',
        actual: 'disposed',
      });
    }
  };

  const init = (): Promise<void> => {
    try {
      ensureOpen('init');
    } catch (error) {
      return Promise.reject(error);
    }
    if (initializing === null) {
      initializing = implementation.init().then(
        () => {
          initialized = true;
        },
        (error: unknown) => {
          initializing = null; // a failed init may be retried (a lost device, a page that gains isolation)
          throw error;
        },
      );
    }
    return initializing;
  };

  const track = <T>(work: Promise<T>): Promise<T> => {
    inFlight.add(work);
    const untrack = () => inFlight.delete(work);
    work.then(untrack, untrack);
    return work;
  };

  const call = <P, R>(
    method: string,
    validate: () => P,
    snapshot: (problem: P) => P,
    run: (problem: P) => Promise<R>,
  ): Promise<R> => {
    try {
      ensureOpen(method);
      const problem = validate();
      if (initialized) return track(now(() => run(problem)));
      const copy = snapshot(problem);
      return track(init().then(() => run(copy)));
    } catch (error) {
      return Promise.reject(error);
    }
  };

  const supported = (problem: AttentionRequirements, context: string) =>
    assertSupported(implementation.name, implementation.capabilities(), problem, context);

  /** The layer composed over the implementation's own calls, on validated data (no second validation). */
  const composedLayer = async (problem: LayerProblem): Promise<AttentionResult> => {
    const context = 'multiHeadAttention';
    const { attended, output } = await composeLayer(
      {
        matmul: (a, b, shape, bias) => implementation.matmul({ a, b, bias, shape }),
        attention: (q, k, v, shape) => {
          // The float32 range rule on the projected q and k, as a direct attention call checks it.
          checkLogitRange(context, q, maxAbsFinite(k), shape.headDim, problem.options.scale);
          return implementation.attention({ q, k, v, shape, ...problem.options });
        },
      },
      problem,
    );
    return { ...attended, output };
  };

  /** Open caches: the backend's dispose frees them, so memory() returns to what it was before them. */
  const caches = new Set<() => void>();

  /**
   * The cache gate: validates each call against the config and the lengths it keeps (the
   * implementation never sees a bad call), and calls the implementation in the caller's tick, so an
   * append has copied `k`/`v` before it returns.
   */
  const gateCache = (config: ResolvedKVCacheConfig, cache: KVCacheImplementation): KVCache => {
    const lengths = new Array<number>(config.batch).fill(0);
    // Running bound on max|k| for the float32 overflow rule; a truncate keeps it (conservative).
    let maxAbsKey = 0;
    let closed = false;
    let disposingCache: Promise<void> | null = null;
    const pending = new Set<Promise<unknown>>();
    const free = () => {
      if (closed) return;
      closed = true;
      caches.delete(free);
      cache.dispose();
    };
    caches.add(free);
    const ensureCacheOpen = (method: string) => {
      ensureOpen(method);
      if (disposingCache !== null || closed) {
        throw new AttnkitError('disposed', `${method}: the KV cache has been disposed`, {
          argument: 'cache',
          expected: 'a KV cache that has not been disposed',
          actual: 'disposed',
        });
      }
    };
    const run = <T>(method: string, body: () => T | Promise<T>): Promise<T> => {
      try {
        ensureCacheOpen(method);
        const work = track(now(async () => body()));
        pending.add(work);
        const done = () => pending.delete(work);
        work.then(done, done);
        return work;
      } catch (error) {
        return Promise.reject(error);
      }
    };
    return {
      config: Object.freeze({ ...config }),
      get lengths() {
        return [...lengths];
      },
      append(chunk: KVCacheAppend) {
        return run('cache.append', () => {
          const problem = validateKVCacheAppend(config, lengths, chunk);
          const bound = maxAbsKeyOf(problem.k);
          cache.append(problem);
          maxAbsKey = Math.max(maxAbsKey, bound);
          for (let b = 0; b < config.batch; b++) lengths[b] += problem.kept[b];
        });
      },
      attention<O extends KVCacheAttentionOptions = KVCacheAttentionOptions>(
        query: KVCacheQuery,
        options?: O,
      ) {
        // The implementation returns lse whenever the problem asks for it (conformance checks it).
        return run('cache.attention', () => {
          const problem = validateKVCacheAttention(config, lengths, maxAbsKey, query, options);
          return cache.attention(problem);
        }) as Promise<AttentionResult & (O extends { returnLse: true } ? { lse: Float32Array } : unknown)>;
      },
      truncate(to: number | readonly number[]) {
        return run('cache.truncate', () => {
          const next = validateKVCacheTruncate(lengths, to);
          cache.truncate(next);
          for (let b = 0; b < config.batch; b++) lengths[b] = next[b];
        });
      },
      dispose() {
        if (disposingCache === null) {
          disposingCache = (async () => {
            await Promise.allSettled([...pending]);
            free();
          })();
        }
        return disposingCache;
      },
    };
  };

  const backend: AttentionBackend = {
    name: implementation.name,
    get capabilities() {
      return implementation.capabilities();
    },
    init,
    attention<O extends AttentionOptions = AttentionOptions>(
      inputs: AttentionInputs,
      options?: KnownAttentionOptions<O>,
    ): Promise<AttentionResultFor<O>> {
      return call(
        'attention',
        () => validateAttention(inputs, options),
        snapshotAttentionProblem,
        (problem) => {
          supported(problem, 'attention');
          const kernelProblem =
            problem.precision === 'f16-storage' && implementation.f16Storage === 'rounded-on-host'
              ? withF16StoredInputs(problem)
              : problem;
          // The implementation returns lse/weights whenever the problem asks for them (the
          // conformance suite checks it), which is what AttentionResultFor<O> promises.
          return implementation.attention(kernelProblem) as Promise<AttentionResultFor<O>>;
        },
      );
    },
    attentionBackward<O extends AttentionOptions = AttentionOptions>(
      inputs: AttentionBackwardInputs,
      options?: KnownAttentionOptions<O>,
    ): Promise<AttentionGradientsFor<O>> {
      const context = 'attentionBackward';
      return call(
        context,
        () => validateAttentionBackward(inputs, options),
        snapshotAttentionBackwardProblem,
        (problem) => {
          const capabilities = implementation.capabilities();
          if (implementation.attentionBackward === undefined && capabilities.features.includes('backward')) {
            throw new AttnkitError(
              'unsupported',
              `${context}: backend "${implementation.name}" lists backward but implements no attentionBackward`,
              { argument: 'backward', expected: 'an implemented attentionBackward', actual: 'none' },
            );
          }
          assertSupported(implementation.name, capabilities, problem, context);
          // The implementation returns gradBias/gradSinks whenever the problem has a bias/sinks (the
          // conformance suite checks it), which is what AttentionGradientsFor<O> promises.
          return (implementation.attentionBackward as NonNullable<typeof implementation.attentionBackward>)(
            problem,
          ) as Promise<AttentionGradientsFor<O>>;
        },
      );
    },
    matmul(inputs) {
      return call(
        'matmul',
        () => validateMatmul(inputs),
        snapshotMatmulProblem,
        (problem) => {
          assertMatmulSupported(implementation.name, implementation.capabilities(), problem.shape);
          return implementation.matmul(problem);
        },
      );
    },
    multiHeadAttention<O extends AttentionOptions = AttentionOptions>(
      inputs: LayerInputs,
      options?: KnownAttentionOptions<O>,
    ): Promise<AttentionResultFor<O>> {
      const context = 'multiHeadAttention';
      return call(
        context,
        () => validateLayer(inputs, options),
        snapshotLayerProblem,
        (problem) => {
          assertLayerSupported(implementation.name, implementation.capabilities(), problem, context);
          // Either returns lse/weights whenever the options ask for them (conformance checks it).
          if (implementation.layer !== undefined)
            return implementation.layer(problem) as Promise<AttentionResultFor<O>>;
          // The composition reads the out-projection and the option tensors after its first await:
          // on the caller's arrays only while the call is still in the caller's tick, so copy them.
          const own = initialized ? snapshotLayerProblem(problem) : problem;
          return composedLayer(own) as Promise<AttentionResultFor<O>>;
        },
      );
    },
    createKVCache(config: KVCacheConfig) {
      try {
        ensureOpen('createKVCache');
        const resolved = validateKVCacheConfig(config);
        return track(
          init().then(() => {
            ensureOpen('createKVCache');
            const features = implementation.capabilities().features;
            if (implementation.createKVCache === undefined || !features.includes('kvCache')) {
              throw new AttnkitError(
                'unsupported',
                `createKVCache: backend "${implementation.name}" does not support kvCache`,
                {
                  argument: 'kvCache',
                  expected: `one of the supported features: ${features.join(', ')}`,
                  actual: 'kvCache',
                },
              );
            }
            if (resolved.precision === 'f16-storage' && !features.includes('kvCacheF16Storage')) {
              throw new AttnkitError(
                'unsupported',
                `createKVCache: backend "${implementation.name}" does not support config.precision 'f16-storage'`,
                {
                  argument: 'config.precision',
                  expected: "'f32' (capabilities lack kvCacheF16Storage)",
                  actual: 'f16-storage',
                },
              );
            }
            return gateCache(resolved, implementation.createKVCache(resolved));
          }),
        );
      } catch (error) {
        return Promise.reject(error);
      }
    },
    memory() {
      return implementation.memory();
    },
    dispose() {
      if (disposing === null) {
        disposing = (async () => {
          await Promise.allSettled([...inFlight]);
          if (initializing !== null) await initializing.catch(() => undefined);
          for (const free of [...caches]) free();
          await implementation.dispose();
        })();
      }
      return disposing;
    },
  };
  return { backend, call };
}

/**
 * {@link openGate} for a backend with device-resident tensors: the backend also gets
 * {@link DeviceBackend}'s calls, each through the same {@link Gate.call} (validation by the host
 * calls' rules with the handle's element count for a length, capability checks, lazy init,
 * tracking, `disposed` after dispose).
 */
export function openDeviceGate<T extends DeviceTensor>(
  implementation: BackendImplementation,
  device: DeviceImplementation<T>,
): Gate<AttentionBackend & DeviceBackend<T>> {
  const gate = openGate(implementation);
  const name = implementation.name;
  const check = device.checkTensor.bind(device);
  const methods: DeviceBackend<T> = {
    upload: (data: Float32Array, options?: UploadOptions) =>
      gate.call(
        'upload',
        () => validateUpload(data, options),
        (u) => ({ data: u.data.slice(), dtype: u.dtype }),
        (u) => {
          const capabilities = implementation.capabilities();
          if (u.dtype === 'float16' && !capabilities.features.includes('deviceF16Storage'))
            throw new AttnkitError(
              'unsupported',
              `upload: backend "${name}" does not support float16 tensors (deviceF16Storage)`,
              {
                argument: 'options.dtype',
                expected: "'float32' (capabilities lack deviceF16Storage)",
                actual: 'float16',
              },
            );
          assertTensorElements(name, capabilities, [['data', u.data.length]], 'upload');
          return device.upload(u.data, u.dtype);
        },
      ),
    read: (tensor: T) =>
      gate.call(
        'read',
        () => validateDeviceRead(tensor, check),
        (t) => t,
        (t) => device.read(t),
      ),
    attentionBuffers: (inputs: DeviceAttentionInputs<T>, options?: AttentionOptions) =>
      gate.call(
        'attentionBuffers',
        () => validateDeviceAttention(inputs, options, check),
        snapshotOptions,
        (problem) => {
          assertSupported(name, implementation.capabilities(), problem, 'attentionBuffers');
          return device.attention(problem);
        },
      ),
    matmulBuffers: (inputs: DeviceMatmulInputs<T>) =>
      gate.call(
        'matmulBuffers',
        () => validateDeviceMatmul(inputs, check),
        (problem) => problem,
        (problem) => {
          assertMatmulSupported(name, implementation.capabilities(), problem.shape, 'matmulBuffers');
          return device.matmul(problem);
        },
      ),
    // Synchronous: hands the handle back (nothing to wait for); a value that is not one of this
    // backend's tensors is an error, not silently ignored.
    release: (tensor: T) => device.release(check('release', 'tensor', tensor, 'compute')),
  };
  return { backend: Object.assign(gate.backend, methods), call: gate.call };
}
