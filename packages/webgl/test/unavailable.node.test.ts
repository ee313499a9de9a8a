import { randomAttentionInputs } from '@attnkit/conformance';
import { AttnkitError } from '@attnkit/spec';
import { describe, expect, test } from 'vitest';
import { createWebglBackend } from '../src/index.js';

// This file runs in Node, where the only GL is headless-gl (npm "gl", gpu.js's optional dependency).
// The workspace does not build it, so here the backend must say it is unavailable and why, and never
// run gpu.js's CPU or webasm fallback. Where someone has built gl, it must run on HeadlessGLKernel.
const gpujs = (await import('gpu.js')) as unknown as { HeadlessGLKernel: { isSupported: boolean } };
const headlessGl = gpujs.HeadlessGLKernel.isSupported;

describe(`webgl in Node (headless-gl ${headlessGl ? 'present' : 'absent'})`, () => {
  test('init rejects with unavailable and the reason, or runs on HeadlessGLKernel', async () => {
    const backend = createWebglBackend();
    const error = await backend.init().then(
      () => null,
      (e: unknown) => e,
    );
    if (headlessGl) {
      expect(error).toBeNull();
      expect(backend.capabilities.engine).toMatch(/HeadlessGLKernel/);
    } else {
      expect(error).toBeInstanceOf(AttnkitError);
      expect((error as AttnkitError).code).toBe('unavailable');
      expect((error as Error).message).toMatch(/headless-gl/);
      console.log((error as Error).message);
    }
    await backend.dispose();
  });

  test('without GL a call rejects as unavailable; bad input is rejected first either way', async () => {
    const backend = createWebglBackend();
    const inputs = randomAttentionInputs({ batch: 1, queryHeads: 1, queryLength: 2, headDim: 2 }, 1);
    await expect(backend.attention({ ...inputs, q: new Float32Array(3) })).rejects.toMatchObject({
      code: 'invalid-argument',
      argument: 'q.length',
    });
    if (!headlessGl) await expect(backend.attention(inputs)).rejects.toMatchObject({ code: 'unavailable' });
    await backend.dispose();
  });
});
