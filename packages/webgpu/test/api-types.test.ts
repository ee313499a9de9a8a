// Type-level tests of @attnkit/webgpu's public API, checked by tsc (`pnpm typecheck` covers test/).
// Nothing here touches a GPU: creating a backend acquires nothing until init().
import type {
  AttentionBackend,
  AttentionOptions,
  BackendFactory,
  LayerInputs,
  UploadOptions,
} from '@attnkit/spec';
import { describe, expect, expectTypeOf, it } from 'vitest';
import createDefault, {
  type AcquiredDevice,
  acquireDevice,
  createWebGpuBackend,
  DEFAULT_DAWN_FLAGS,
  type DeviceOptions,
  type GpuAttentionInputs,
  type GpuAttentionResult,
  type GpuTensor,
  type TensorLayout,
  type WebGpuBackend,
  type WebGpuBackendOptions,
} from '../src/index.js';

describe('@attnkit/webgpu public API', () => {
  it('default-exports a zero-argument BackendFactory (what attnkit-conformance loads)', () => {
    expectTypeOf(createDefault).toEqualTypeOf<BackendFactory>();
    expect(createDefault.length).toBe(0);
  });

  it('returns a full AttentionBackend with a device-resident path on top', () => {
    expectTypeOf(createWebGpuBackend).toEqualTypeOf<(options?: WebGpuBackendOptions) => WebGpuBackend>();
    expectTypeOf<WebGpuBackend>().toExtend<AttentionBackend>();
    expectTypeOf<WebGpuBackend['device']>().toEqualTypeOf<GPUDevice>();
    expectTypeOf<WebGpuBackend['attentionBuffers']>().toEqualTypeOf<
      (inputs: GpuAttentionInputs, options?: AttentionOptions) => Promise<GpuAttentionResult>
    >();
    expectTypeOf<WebGpuBackend['multiHeadAttention']>().parameter(0).toEqualTypeOf<LayerInputs>();
    expectTypeOf<GpuAttentionInputs['q']>().toEqualTypeOf<GpuTensor>();
    expectTypeOf<GpuTensor['buffer']>().toEqualTypeOf<GPUBuffer>();
    expectTypeOf<WebGpuBackend['upload']>().toEqualTypeOf<
      (data: Float32Array, options?: UploadOptions) => Promise<GpuTensor>
    >();
    expectTypeOf<GpuTensor['dtype']>().toEqualTypeOf<'float32' | 'float16' | undefined>();
    expectTypeOf<WebGpuBackend['read']>().toEqualTypeOf<(tensor: GpuTensor) => Promise<Float32Array>>();
    expectTypeOf<TensorLayout>().toEqualTypeOf<'bhld' | 'blhd'>();
  });

  it('lets the caller bring a device, a GPU or Dawn for Node', () => {
    expectTypeOf<WebGpuBackendOptions>().toExtend<DeviceOptions>();
    expectTypeOf<DeviceOptions['device']>().toEqualTypeOf<GPUDevice | undefined>();
    expectTypeOf<DeviceOptions['gpu']>().toEqualTypeOf<GPU | undefined>();
    expectTypeOf<WebGpuBackendOptions['workgroupSize']>().toEqualTypeOf<number | undefined>();
    expectTypeOf(acquireDevice).returns.toEqualTypeOf<Promise<AcquiredDevice>>();
    expectTypeOf(DEFAULT_DAWN_FLAGS).toEqualTypeOf<readonly string[]>();
  });
});
