// A forward whose upload fails part-way (the GL context out of memory) must release what it already
// packed on the device: the runtime and kernels here are stand-ins that record every texture.
import { validateAttention } from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import type { GlInput, GlRuntime, GlTexture } from '../src/gl.js';
import { type ForwardKernels, planForward, runForward } from '../src/run-forward.js';

describe('webgl forward: an upload that fails', () => {
  it('releases every texture packed before it, and rethrows the failure', () => {
    const live = new Set<GlTexture>();
    let inputs = 0;
    const runtime = {
      maxTextureSize: 4096,
      input: (): GlInput => {
        inputs++;
        // q and k upload and pack; v's upload fails
        if (inputs === 3) throw new Error('GL_OUT_OF_MEMORY');
        return { kind: 'input' };
      },
      release: (t: GlTexture) => {
        live.delete(t);
      },
    } as unknown as GlRuntime;
    const pack = {
      run: (output: readonly [number, number]): GlTexture => {
        const t: GlTexture = { kind: 'texture', output };
        live.add(t);
        return t;
      },
    };
    const kernels = { pack } as unknown as ForwardKernels;
    const shape = { batch: 1, queryHeads: 1, queryLength: 4, headDim: 4 };
    const data = () => new Float32Array(16).fill(0.5);
    const problem = validateAttention({ q: data(), k: data(), v: data(), shape });
    const plan = planForward(problem, 4096, 256, 1 << 20, true);
    expect(() => runForward(runtime, kernels, problem, plan, true)).toThrow('GL_OUT_OF_MEMORY');
    expect(inputs).toBe(3);
    expect(live.size).toBe(0);
  });
});
