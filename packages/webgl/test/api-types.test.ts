// Type-level tests of @attnkit/webgl's public API, checked by tsc (`pnpm typecheck` covers test/).
// This package's vitest projects run only *.browser.test.ts and *.node.test.ts files, so the
// assertions here are compile-time only; creating a backend acquires nothing until init().
import type { AttentionBackend, BackendFactory, Tolerance } from '@attnkit/spec';
import { describe, expectTypeOf, it } from 'vitest';
import * as publicApi from '../src/index.js';
import createDefault, {
  createWebglBackend,
  GL_KERNEL_CLASSES,
  type GlKernelClass,
  type GlRuntime,
  openGl,
  WEBGL_TOLERANCE,
  type WebglBackendOptions,
} from '../src/index.js';

describe('@attnkit/webgl public API', () => {
  it('default-exports a zero-argument BackendFactory (what attnkit-conformance loads)', () => {
    expectTypeOf(createDefault).toExtend<BackendFactory>();
    expectTypeOf(createDefault).parameters.toEqualTypeOf<[]>();
    expectTypeOf(createDefault).returns.toEqualTypeOf<AttentionBackend>();
  });

  it('takes optional tiling options in the named factory', () => {
    expectTypeOf(createWebglBackend).toEqualTypeOf<(options?: WebglBackendOptions) => AttentionBackend>();
    expectTypeOf<WebglBackendOptions['tileKeys']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<WebglBackendOptions['blockElements']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<{ tileKeys: string }>().not.toExtend<WebglBackendOptions>();
  });

  it('exports the factory, its options, the tolerance and the GL runtime hooks, no internals', () => {
    // the implementation class is internal: tests reach it through src/backend.ts
    expectTypeOf(publicApi).not.toHaveProperty('WebglImplementation');
  });

  it('names only real GL kernel classes (never the CPU fallback)', () => {
    expectTypeOf<GlKernelClass>().toEqualTypeOf<'WebGL2Kernel' | 'WebGLKernel' | 'HeadlessGLKernel'>();
    expectTypeOf(GL_KERNEL_CLASSES).toEqualTypeOf<
      readonly ['WebGL2Kernel', 'WebGLKernel', 'HeadlessGLKernel']
    >();
    expectTypeOf(openGl).returns.toEqualTypeOf<Promise<GlRuntime>>();
  });

  it('declares a tolerance of the spec type', () => {
    expectTypeOf(WEBGL_TOLERANCE).toExtend<Tolerance>();
  });
});
