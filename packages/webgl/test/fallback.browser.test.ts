import { randomAttentionInputs } from '@attnkit/conformance';
import { AttnkitError } from '@attnkit/spec';
import * as gpujs from 'gpu.js';
import { afterEach, expect, test } from 'vitest';
import { createWebglBackend } from '../src/index.js';

interface PatchableKernel {
  prototype: { build: (...args: unknown[]) => unknown };
}
const classes = gpujs as unknown as Record<'WebGL2Kernel' | 'WebGLKernel', PatchableKernel>;
const restore: (() => void)[] = [];
afterEach(() => {
  for (const undo of restore.splice(0)) undo();
});

// gpu.js rebuilds a kernel on the CPU (and warns on the console) when its GL build asks to fall
// back. Simulate that request through gpu.js's own requestFallback and check that the backend
// refuses it instead of returning CPU-computed results under the webgl name.
for (const [name, context] of [
  ['WebGL2Kernel', 'webgl2'],
  ['WebGLKernel', 'webgl'],
] as const) {
  test(`a ${name} asking gpu.js to fall back to the CPU is refused`, async () => {
    const proto = classes[name].prototype;
    const build = proto.build;
    type Self = {
      built?: boolean;
      onRequestFallback?: unknown;
      requestFallback: (a: unknown[], r: string) => unknown;
    };
    proto.build = function (this: Self, ...args) {
      // Only kernels created through createKernel (gpu.js's own feature probes have no fallback hook).
      if (!this.built && this.onRequestFallback)
        return this.requestFallback(args, 'simulated: GL build failed');
      return build.apply(this, args);
    };
    restore.push(() => {
      proto.build = build;
    });
    const backend = createWebglBackend({ context });
    const inputs = randomAttentionInputs({ batch: 1, queryHeads: 1, queryLength: 3, headDim: 4 }, 1);
    const error = await backend.attention(inputs).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(AttnkitError);
    expect((error as AttnkitError).code).toBe('device');
    expect((error as Error).message).toMatch(/refusing/);
    console.log(`${name}: ${(error as Error).message}`);
    await backend.dispose();
  });
}
