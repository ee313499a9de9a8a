import {
  ALL_FEATURES,
  type AttentionBackwardProblem,
  type AttentionFeature,
  type AttentionGradients,
  type AttentionProblem,
  type AttentionResult,
  AttnkitError,
  type BackendCapabilities,
  type BackendImplementation,
  type BackendMemory,
  type DeviceImplementation,
  type FactoryOptionSchema,
  type KVCacheImplementation,
  type LayerProblem,
  type MatmulProblem,
  openDeviceGate,
  type ResolvedKVCacheConfig,
  type ResolvedShape,
  resolveShape,
  STORAGE_PRECISIONS,
  type StoragePrecision,
  validateFactoryOptions,
} from '@attnkit/spec';
import * as backward from './backward.js';
import { WebGpuKVCache } from './cache.js';
import { acquireDevice } from './device.js';
import { deviceError, NAME } from './errors.js';
import * as host from './host.js';
import { LOGIT_TERMS, type LogitTerms } from './kernels/shared.js';
import {
  attentionPipelines,
  backwardPipelines,
  cachePipelines,
  f16RowsPipeline,
  matmulPipeline,
} from './pipelines.js';
import { backwardVariant, cacheVariant, forwardVariant, headDimLimit } from './planning.js';
import * as resident from './resident.js';
import { createDeviceState, type DeviceState, type Runtime } from './state.js';
import { KERNEL_TIERS, type KernelTier } from './tier.js';
import { checkGpuTensor } from './transfer.js';
import type {
  GpuTensor,
  TransferCounters,
  WebGpuBackend,
  WebGpuBackendOptions,
  WebGpuWorkload,
} from './types.js';

export type {
  GpuAttentionInputs,
  GpuAttentionResult,
  GpuMatmulInputs,
  GpuTensor,
  TensorLayout,
  TransferCounters,
  WebGpuBackend,
  WebGpuBackendOptions,
  WebGpuWorkload,
} from './types.js';

interface CheckedWorkload {
  shape: ResolvedShape;
  returnWeights: boolean;
  matmul: boolean;
  backward: boolean;
  kvCache: boolean;
  precision: StoragePrecision;
  /** The tiled forward's variants to compile: the workload's `logitTerms`, or both. */
  logitTerms: readonly LogitTerms[];
}

const WORKLOAD_KEYS = new Set([
  'shape',
  'returnWeights',
  'matmul',
  'backward',
  'kvCache',
  'precision',
  'logitTerms',
]);
const WORKLOAD_FORM =
  'an object { shape, returnWeights?, matmul?, backward?, kvCache?, precision?, logitTerms? }';

/** Validates every workload before anything is acquired, as the other calls do. */
function checkWorkloads(workloads: unknown): CheckedWorkload[] {
  const context = 'prepare';
  if (!Array.isArray(workloads)) {
    throw new AttnkitError(
      'invalid-argument',
      `${context}: workloads must be an array, got ${typeof workloads}`,
      {
        argument: 'workloads',
        expected: `an array of ${WORKLOAD_FORM.slice('an object '.length)}`,
        actual: typeof workloads,
      },
    );
  }
  return workloads.map((w: unknown, i) => {
    const argument = `workloads[${i}]`;
    const bad = (what: string, expected: string, actual: unknown): never => {
      throw new AttnkitError(
        'invalid-argument',
        `${context}: ${what} must be ${expected}, got ${String(actual)}`,
        {
          argument: what,
          expected,
          actual: String(actual),
        },
      );
    };
    if (typeof w !== 'object' || w === null) return bad(argument, WORKLOAD_FORM, w);
    const record = w as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      if (!WORKLOAD_KEYS.has(key)) bad(`${argument}.${key}`, `one of ${[...WORKLOAD_KEYS].join(', ')}`, key);
    }
    const precision = record.precision ?? 'f32';
    if (!STORAGE_PRECISIONS.includes(precision as StoragePrecision))
      bad(`${argument}.precision`, `one of ${STORAGE_PRECISIONS.map((p) => `'${p}'`).join(', ')}`, precision);
    const terms = record.logitTerms;
    if (terms !== undefined && !LOGIT_TERMS.includes(terms as LogitTerms))
      bad(`${argument}.logitTerms`, `one of ${LOGIT_TERMS.map((t) => `'${t}'`).join(', ')}`, terms);
    for (const flag of ['returnWeights', 'matmul', 'backward', 'kvCache'] as const) {
      const value = record[flag];
      if (value !== undefined && typeof value !== 'boolean') bad(`${argument}.${flag}`, 'a boolean', value);
    }
    return {
      shape: resolveShape((w as WebGpuWorkload).shape, context),
      returnWeights: record.returnWeights === true,
      matmul: record.matmul === true,
      backward: record.backward === true,
      kvCache: record.kvCache === true,
      precision: precision as StoragePrecision,
      logitTerms: terms === undefined ? LOGIT_TERMS : [terms as LogitTerms],
    };
  });
}

/**
 * Measured against the float64 reference on SwiftShader and Chromium's WebGPU: f32 accumulation plus
 * WGSL's `exp` (a few ULP, growing with |x|) and `tanh` for softcap.
 */
// fudge: a multiple of the naive float32 error (see @attnkit/conformance); measured worst 1.0.
const TOLERANCE = { atol: 2e-5, rtol: 2e-4, fudge: 2 } as const;

/**
 * Every option of `attention`, `attentionBackward` and the KV cache (kernels in src/kernels/; the
 * cache in src/cache.ts).
 */
const FEATURES: readonly AttentionFeature[] = [
  ...ALL_FEATURES,
  'backward',
  'kvCache',
  'kvCacheF16Storage',
  'deviceF16Storage',
];

class WebGpuImplementation implements BackendImplementation, Runtime {
  readonly name = NAME;
  private state: DeviceState | null = null;

  constructor(private readonly options: WebGpuBackendOptions) {}

  get workgroupSize(): number | undefined {
    return this.options.workgroupSize;
  }

  get device(): GPUDevice {
    return this.ready().device;
  }

  get tier(): KernelTier {
    return this.ready().tier;
  }

  capabilities(): BackendCapabilities {
    const s = this.state;
    const notes = [
      'device-resident path: attentionBuffers, matmulBuffers, multiHeadAttention (whole layer on the device)',
      'KV cache: K/V in GPU buffers (capacity doubling, copied on the GPU), split-K decode merged by log-sum-exp',
      "KV cache precision 'f16-storage': K/V as packed binary16 pairs (core WGSL unpack2x16float, no shader-f16), f32 accumulation",
    ];
    if (s === null) {
      return {
        features: FEATURES,
        limits: {},
        tolerance: TOLERANCE,
        deterministic: true,
        engine: 'WebGPU (WGSL), not initialised',
        threads: 1,
        notes,
      };
    }
    const dimLimit = headDimLimit(s.limits.workgroupFloats);
    return {
      features: FEATURES,
      limits: { headDim: dimLimit, valueDim: dimLimit, tensorElements: s.limits.tensorElements },
      tolerance: TOLERANCE,
      deterministic: true,
      engine: `WebGPU (WGSL) on ${s.acquired.description}, ${s.tier} tier`,
      threads: 1,
      notes: [
        ...notes,
        ...s.acquired.notes,
        `kernel tier: ${s.tier}${s.subgroupSizes === null ? '' : ` (subgroup sizes ${s.subgroupSizes.min}-${s.subgroupSizes.max})`}; forward: register-tiled FlashAttention-2 kernel where its tiles fit, scalar kernel otherwise`,
        `tiles sized from the device: ${s.limits.workgroupFloats * 4} B workgroup storage, ` +
          `${s.limits.invocations} invocations, ${s.limits.storageBinding} B storage binding`,
      ],
    };
  }

  async init(): Promise<void> {
    if (this.state !== null) return;
    const acquired = await acquireDevice(this.options);
    this.state = createDeviceState(acquired);
  }

  private recovering: Promise<void> | null = null;

  /** Replaced by `createWebGpuBackend` with the gate's `init`, which deduplicates concurrent inits. */
  initialize: () => Promise<void> = () => this.init();

  usable(): DeviceState | null {
    const s = this.state;
    return s !== null && s.lost === null ? s : null;
  }

  /**
   * A device this backend acquired and then lost (driver reset, GPU removed) is replaced on the next
   * call: the call that saw the loss rejected with `device`, later ones run on a fresh device. A
   * caller's device is never replaced: calls keep rejecting with `device`.
   */
  async live(): Promise<void> {
    // Calls reach here after the gate's init; a device dropped by a failed replacement is acquired
    // again through the gate's init (once however many calls wait; `disposed` after dispose).
    if (this.state === null) await this.initialize();
    const s = this.state;
    if (s === null || s.lost === null || !s.acquired.owned) return;
    if (this.recovering === null) {
      this.recovering = (async () => {
        s.pool.destroyAll();
        if (this.state === s) this.state = null;
        await this.init();
      })().finally(() => {
        this.recovering = null;
      });
    }
    await this.recovering;
  }

  ready(): DeviceState {
    const s = this.state;
    if (s === null) {
      throw new AttnkitError('unavailable', 'webgpu: backend used before init() or after dispose()', {
        argument: 'backend',
        expected: 'an initialised backend',
        actual: 'not initialised or disposed',
      });
    }
    if (s.lost !== null)
      throw deviceError(`webgpu: the GPU device was lost (${s.lost.reason}): ${s.lost.message}`);
    return s;
  }

  // ---------- operations (host.ts: host arrays; resident.ts: device tensors) ----------
  // Every one is called by the spec's gate, on a validated problem that fits the capabilities.

  attention(problem: AttentionProblem): Promise<AttentionResult> {
    return host.attention(this, problem);
  }

  matmul(problem: MatmulProblem): Promise<Float32Array> {
    return host.matmul(this, problem);
  }

  attentionBackward(problem: AttentionBackwardProblem): Promise<AttentionGradients> {
    return backward.attentionBackward(this, problem);
  }

  /**
   * Called by the gate after init. The cache's buffers are counted by this device's pool; the gate
   * disposes every open cache before the backend's own dispose destroys the pool.
   */
  createKVCache(config: ResolvedKVCacheConfig): KVCacheImplementation {
    return new WebGpuKVCache(this.ready(), this.workgroupSize, config);
  }

  /** Bytes and calls between host and device since the device was acquired (a copy). */
  transfers(): TransferCounters {
    const s = this.state;
    return s === null ? { uploadBytes: 0, uploads: 0, downloadBytes: 0, downloads: 0 } : { ...s.transfers };
  }

  layer(problem: LayerProblem): Promise<AttentionResult> {
    return host.layer(this, problem);
  }

  /** The device-resident half (the gate's `upload`, `read`, `attentionBuffers`, `matmulBuffers`, `release`). */
  readonly resident: DeviceImplementation<GpuTensor> = {
    checkTensor: checkGpuTensor,
    upload: (data, dtype) => resident.upload(this, data, dtype),
    read: (tensor) => resident.read(this, tensor),
    attention: (problem) => resident.attentionBuffers(this, problem),
    matmul: (problem) => resident.matmulBuffers(this, problem),
    release: (tensor) => this.state?.pool.release(tensor.buffer),
  };

  /** Compiles the pipelines of validated workloads (called by the gate after init). */
  async prepare(checked: readonly CheckedWorkload[]): Promise<void> {
    await this.live();
    const s = this.ready();
    // The same cache the calls read (per device and variant), so a prepared variant is never
    // compiled again and a call racing prepare waits for the same compilation.
    await Promise.all(
      checked.flatMap((w) => [
        // The logit-term variants the workload names (both unless it says which a call will use).
        ...w.logitTerms.map((terms) =>
          attentionPipelines(
            s,
            forwardVariant(s, this.workgroupSize, w.shape, w.precision, terms),
            w.returnWeights,
          ),
        ),
        ...(w.matmul ? [matmulPipeline(s, false), matmulPipeline(s, true)] : []),
        ...(w.backward
          ? w.logitTerms.map((terms) =>
              backwardPipelines(s, backwardVariant(s, this.workgroupSize, w.shape, 'prepare'), terms),
            )
          : []),
        ...(w.kvCache ? [cachePipelines(s, cacheVariant(s, this.workgroupSize, w.shape), w.precision)] : []),
        // float16 device tensors of an odd head size are padded to word-aligned rows first
        ...(w.precision === 'f16-storage' && (w.shape.headDim % 2 !== 0 || w.shape.valueDim % 2 !== 0)
          ? [f16RowsPipeline(s)]
          : []),
      ]),
    );
  }

  memory(): BackendMemory {
    return { hostBytes: 0, deviceBytes: this.state?.pool.deviceBytes ?? 0 };
  }

  /** Called by the gate once the calls in flight have ended; later calls reject `disposed` there. */
  async dispose(): Promise<void> {
    const s = this.state;
    this.state = null;
    if (s === null) return;
    s.pool.destroyAll();
    if (s.acquired.owned) s.device.destroy();
  }
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null;

/**
 * Duck-typed: `GPUDevice` is not a global in Node (Dawn) until its globals are installed, and a device
 * from another realm fails `instanceof`; these are the members the backend calls first.
 */
function isGpuDevice(value: unknown): boolean {
  return (
    isObject(value) &&
    typeof value.createBuffer === 'function' &&
    typeof value.createComputePipeline === 'function' &&
    isObject(value.queue) &&
    typeof value.queue.writeBuffer === 'function'
  );
}

/** The one factory validator of `@attnkit/spec`, with WebGPU's option rules. */
const OPTION_SCHEMA: FactoryOptionSchema<WebGpuBackendOptions> = {
  device: {
    kind: 'custom',
    description: 'a GPUDevice (createBuffer, createComputePipeline, queue.writeBuffer)',
    test: isGpuDevice,
  },
  gpu: {
    kind: 'custom',
    description: 'a GPU object (with requestAdapter)',
    test: (value) => isObject(value) && typeof value.requestAdapter === 'function',
  },
  adapterOptions: {
    kind: 'custom',
    description: 'a GPURequestAdapterOptions object',
    test: (value) => isObject(value) && !Array.isArray(value),
  },
  nodeWebgpuModule: {
    kind: 'custom',
    description: 'the "webgpu" module (an object with create) or a function that loads it',
    test: (value) => typeof value === 'function' || (isObject(value) && typeof value.create === 'function'),
  },
  dawnFlags: {
    kind: 'custom',
    description: 'an array of strings',
    test: (value) => Array.isArray(value) && value.every((flag) => typeof flag === 'string'),
  },
  workgroupSize: { kind: 'integer', min: 1, max: 1024 },
  tier: { kind: 'enum', values: KERNEL_TIERS },
};

/**
 * Creates the WebGPU backend. It acquires nothing until `init()` (or the first call): then it uses
 * `options.device`, or asks `navigator.gpu` (browsers) or Dawn from the optional `webgpu` package (Node)
 * for an adapter and device, sized to the adapter's limits.
 */
export function createWebGpuBackend(given?: WebGpuBackendOptions): WebGpuBackend {
  const options = validateFactoryOptions('createWebGpuBackend', given, OPTION_SCHEMA);
  const impl = new WebGpuImplementation(options);
  // One gate for every entry point: the spec's calls, the device-resident ones and prepare.
  const gate = openDeviceGate(impl, impl.resident);
  const base = gate.backend;
  impl.initialize = () => base.init();
  // defineProperty, not a getter in Object.assign: assign would read the device before init.
  Object.defineProperty(base, 'device', { get: () => impl.device, enumerable: true });
  Object.defineProperty(base, 'tier', { get: () => impl.tier, enumerable: true });
  return Object.assign(base as typeof base & { readonly device: GPUDevice; readonly tier: KernelTier }, {
    prepare: (workloads: readonly WebGpuWorkload[]) =>
      gate.call(
        'prepare',
        () => checkWorkloads(workloads),
        (checked) => checked,
        (checked) => impl.prepare(checked),
      ),
    transfers: () => impl.transfers(),
  });
}
