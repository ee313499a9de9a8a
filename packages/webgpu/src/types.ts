import type {
  AttentionBackend,
  AttentionOptions,
  AttentionResult,
  AttentionShape,
  LayerInputs,
  MatmulShape,
} from '@attnkit/spec';
import type { DeviceOptions } from './device.js';
import type { KernelTier } from './tier.js';

/** Options of {@link createWebGpuBackend}. */
export interface WebGpuBackendOptions extends DeviceOptions {
  /** Invocations per attention workgroup (default 64, capped by the device). */
  workgroupSize?: number;
}

/**
 * Memory layout of q/k/v/output buffers on the device path. `bhld` is the spec's `[B, H, L, D]`;
 * `blhd` is `[B, L, H, D]`, what a projection `[B*L, H*D]` produces, so matmul output feeds
 * attention (and attention output feeds the output projection) without a transpose.
 */
export type TensorLayout = 'bhld' | 'blhd';

/** Device-resident attention inputs: buffers made on this backend's device. */
export interface GpuAttentionInputs {
  q: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  shape: AttentionShape;
  /** Layout of q, k, v and the returned output. Default `bhld`. */
  layout?: TensorLayout;
}

/** Device-resident attention results. The buffers belong to the backend: `release()` them when done. */
export interface GpuAttentionResult {
  output: GPUBuffer;
  lse?: GPUBuffer;
  weights?: GPUBuffer;
}

/** Device-resident matmul inputs. */
export interface GpuMatmulInputs {
  a: GPUBuffer;
  b: GPUBuffer;
  bias?: GPUBuffer;
  shape: MatmulShape;
}

/** One kind of call {@link WebGpuBackend.prepare} compiles the pipelines of. */
export interface WebGpuWorkload {
  /** The shape of the attention calls to come (tensors are not needed). */
  shape: AttentionShape;
  /** Also the second pass that `returnWeights: true` runs. Other options share one pipeline. */
  returnWeights?: boolean;
  /** Also the matmul pipelines (with and without bias) that `matmul` and the layer use. */
  matmul?: boolean;
  /** Also every pipeline of `attentionBackward` for this shape (whatever its options). */
  backward?: boolean;
  /**
   * Also the KV cache's pipelines for `cache.attention` calls of this shape (`queryLength` the call's
   * Lq, 1 for a decode step; `keyLength` is not used), so the first decode step compiles nothing.
   */
  kvCache?: boolean;
}

/** The WebGPU backend: the spec contract plus a device-resident path. */
export interface WebGpuBackend extends AttentionBackend {
  /** The device in use (after `init()`). */
  readonly device: GPUDevice;
  /** The kernel tier in use (after `init()`): the one asked for in the options, else the best available. */
  readonly tier: KernelTier;
  /** Attention on buffers already on the device; nothing is read back. */
  attentionBuffers(inputs: GpuAttentionInputs, options?: AttentionOptions): Promise<GpuAttentionResult>;
  /** `a @ b (+ bias)` on device buffers; returns a backend buffer. */
  matmulBuffers(inputs: GpuMatmulInputs): Promise<GPUBuffer>;
  /** The multi-head attention layer, every projection and the attention on the device, one readback. */
  multiHeadAttention(inputs: LayerInputs, options?: AttentionOptions): Promise<AttentionResult>;
  /** Copies a `Float32Array` into a new backend buffer (release it when done). */
  upload(data: Float32Array): Promise<GPUBuffer>;
  /** Reads `elements` floats from the start of a buffer. */
  read(buffer: GPUBuffer, elements: number): Promise<Float32Array>;
  /** Hands a buffer returned by this backend back to its pool. */
  release(buffer: GPUBuffer): void;
  /**
   * Initialises the backend and compiles, ahead of time, the pipelines that calls of these workloads
   * will use, so the first real call does not pay for shader compilation (seconds on a software
   * GPU). Pipelines depend on the shape's size class (head sizes, tile sizes), not on other options.
   * Rejects with `invalid-argument` for a bad workload, before anything is acquired.
   */
  prepare(workloads: readonly WebGpuWorkload[]): Promise<void>;
  /**
   * Bytes and calls moved between host and device since the device was acquired: every
   * `queue.writeBuffer` (tensors, uniforms, small tables) and every read back. A copy; take one
   * before and one after a call to see what it moved.
   */
  transfers(): TransferCounters;
}

/** What {@link WebGpuBackend.transfers} counts. */
export interface TransferCounters {
  uploadBytes: number;
  uploads: number;
  downloadBytes: number;
  downloads: number;
}
