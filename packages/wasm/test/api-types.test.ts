// Type-level tests of @attnkit/wasm's public API, checked by tsc (`pnpm typecheck` covers test/).
// Nothing here loads the kernel: creating a backend acquires nothing until init().
import type { AttentionBackend, BackendFactory, Tolerance } from '@attnkit/spec';
import { describe, expect, expectTypeOf, it } from 'vitest';
import createDefault, {
  createWasmBackend,
  defaultKernelUrl,
  type KernelFlavour,
  sharedMemoryUnavailableReason,
  WASM_TOLERANCE,
  type WasmBackendOptions,
} from '../src/index.js';

describe('@attnkit/wasm public API', () => {
  it('default-exports a zero-argument BackendFactory (what attnkit-conformance loads)', () => {
    expectTypeOf(createDefault).toExtend<BackendFactory>();
    expectTypeOf(createDefault).parameters.toEqualTypeOf<[]>();
    expectTypeOf(createDefault).returns.toEqualTypeOf<AttentionBackend>();
    expect(createDefault.length).toBe(0);
  });

  it('takes threads, tiles and kernel locations as options', () => {
    expectTypeOf(createWasmBackend).toEqualTypeOf<(options?: WasmBackendOptions) => AttentionBackend>();
    expectTypeOf<WasmBackendOptions['threads']>().toEqualTypeOf<number | 'auto' | undefined>();
    expectTypeOf<WasmBackendOptions['wasmUrl']>().toEqualTypeOf<string | URL | undefined>();
    expectTypeOf<WasmBackendOptions['wasmThreadsUrl']>().toEqualTypeOf<string | URL | undefined>();
    expectTypeOf<WasmBackendOptions['queryBlock']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<WasmBackendOptions['keyBlock']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<WasmBackendOptions['parallelMinWork']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<{ threads: 'many' }>().not.toExtend<WasmBackendOptions>();
  });

  it('exposes where the kernels load from, so a bundler or server can place them', () => {
    expectTypeOf<KernelFlavour>().toEqualTypeOf<'single' | 'threads'>();
    expectTypeOf(defaultKernelUrl).toEqualTypeOf<(flavour: KernelFlavour) => URL>();
    expect(defaultKernelUrl('single').pathname.endsWith('/wasm/attnkit.wasm')).toBe(true);
    expect(defaultKernelUrl('threads').pathname.endsWith('/wasm/attnkit-threads.wasm')).toBe(true);
    expectTypeOf(sharedMemoryUnavailableReason).returns.toEqualTypeOf<string | null>();
  });

  it('declares a tolerance of the spec type', () => {
    expectTypeOf(WASM_TOLERANCE).toExtend<Tolerance>();
  });
});
