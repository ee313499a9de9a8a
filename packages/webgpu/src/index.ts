/**
 * @attnkit/webgpu: attention on WebGPU with fused WGSL kernels, in browsers (`navigator.gpu`) and in
 * Node (Dawn, from the optional `webgpu` package).
 * @packageDocumentation
 */
import type { BackendFactory } from '@attnkit/spec';
import { createWebGpuBackend } from './backend.js';

export {
  createWebGpuBackend,
  type GpuAttentionInputs,
  type GpuAttentionResult,
  type GpuMatmulInputs,
  type GpuTensor,
  type TensorLayout,
  type TransferCounters,
  type WebGpuBackend,
  type WebGpuBackendOptions,
  type WebGpuWorkload,
} from './backend.js';
export {
  type AcquiredDevice,
  acquireDevice,
  DEFAULT_DAWN_FLAGS,
  type DeviceOptions,
  type NodeWebGpuModule,
} from './device.js';
export { LOGIT_TERMS, type LogitTerms } from './kernels/shared.js';
export { KERNEL_TIERS, type KernelTier } from './tier.js';

/** Zero-argument factory (what the conformance CLI imports): a backend that acquires its own device. */
const factory: BackendFactory = () => createWebGpuBackend();
export default factory;
