import type {
  AttentionBackend,
  AttentionShape,
  DeviceAttentionInputs,
  DeviceAttentionResult,
  DeviceBackend,
  DeviceDtype,
  DeviceMatmulInputs,
  DeviceTensor,
  StoragePrecision,
} from '@attnkit/spec';
import type { DeviceOptions } from './device.js';
import type { LogitTerms } from './kernels/shared.js';
import type { KernelTier } from './tier.js';

export type { TensorLayout } from '@attnkit/spec';

/** Options of {@link createWebGpuBackend}. */
export interface WebGpuBackendOptions extends DeviceOptions {
  /** Invocations per attention workgroup (default 64, capped by the device). */
  workgroupSize?: number;
}

/**
 * A tensor on this backend's device: a `GPUBuffer` and the values it holds, what the
 * device-resident calls take and return. The buffer may be larger than the values need (the
 * backend's come from a pool of size classes). Wrap a buffer of your own as `{ buffer, elements }`
 * (float32: 4 bytes a value) or `{ buffer, elements, dtype: 'float16' }` (binary16 pairs in 32-bit
 * words, value `2w` in the low half of word `w`, as WGSL `unpack2x16float` reads them: 2 bytes a
 * value, the size rounded up to 4); it needs `STORAGE` usage (and `COPY_SRC` to be read back) and
 * must not be mapped.
 */
export interface GpuTensor extends DeviceTensor {
  readonly buffer: GPUBuffer;
  readonly elements: number;
  /** `'float32'` when absent; `'float16'` for `attentionBuffers` with `precision: 'f16-storage'`. */
  readonly dtype?: DeviceDtype;
}

/**
 * Device-resident attention inputs: tensors on this backend's device; `layout` (default `bhld`)
 * applies to q, k, v and the output.
 */
export type GpuAttentionInputs = DeviceAttentionInputs<GpuTensor>;

/** Device-resident attention results. The tensors belong to the backend: `release()` them when done. */
export type GpuAttentionResult = DeviceAttentionResult<GpuTensor>;

/** Device-resident matmul inputs. */
export type GpuMatmulInputs = DeviceMatmulInputs<GpuTensor>;

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
  /**
   * Storage of q/k/v (`attention(..., { precision })`) and of the cache (`config.precision`) the
   * calls will use: `'f16-storage'` compiles the kernels that unpack binary16 pairs. Default `'f32'`.
   */
  precision?: StoragePrecision;
  /**
   * The logit terms the calls will use, when known: `'dot'` for calls with none of softcap, a bias
   * and ALiBi slopes, `'all'` for calls with some of them. The tiled forward, and with `backward`
   * the dQ and dK/dV kernels, have one pipeline for each (SwiftShader pays for the terms' code even
   * where a flag switches it off), so saying which saves one compilation (three with `backward`);
   * omitted, both are compiled and any call compiles nothing. Short rows (the scalar forward) share
   * one pipeline either way.
   */
  logitTerms?: LogitTerms;
}

/**
 * The WebGPU backend: the spec contract (its `multiHeadAttention` runs the whole layer on the
 * device, one readback) plus the spec's device-resident calls on {@link GpuTensor}s (`upload`,
 * `read`, `attentionBuffers`, `matmulBuffers`, `release`), all through the spec's one gate.
 */
export interface WebGpuBackend extends AttentionBackend, DeviceBackend<GpuTensor> {
  /** The device in use (after `init()`). */
  readonly device: GPUDevice;
  /** The kernel tier in use (after `init()`): the one asked for in the options, else the best available. */
  readonly tier: KernelTier;
  /**
   * Initialises the backend and compiles, ahead of time, the pipelines that calls of these workloads
   * will use, so the first real call does not pay for shader compilation (seconds on a software
   * GPU). Pipelines depend on the shape's size class (head sizes, tile sizes), not on other options,
   * except the logit terms of the tiled forward and the backward ({@link WebGpuWorkload.logitTerms}).
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
