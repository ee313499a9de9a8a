// onPass (profiling): every GL pass of a call reported with its kernel, output size and time. The
// counts below are worked out by hand from the plan (run-forward.ts planForward) for this shape.
import { randomAttentionInputs } from '@attnkit/conformance';
import { expectClose } from '@attnkit/conformance/vitest';
import { referenceAttention64 } from '@attnkit/spec';
import { describe, expect, test } from 'vitest';
import { createWebglBackend, type GlPass } from '../src/index.js';

describe('onPass', () => {
  test('reports every pass of a call, timed, and leaves the results as they are', async () => {
    const passes: GlPass[] = [];
    const backend = createWebglBackend({ tileKeys: 16, onPass: (pass) => passes.push(pass) });
    try {
      await backend.init();
      expect(backend.capabilities.engine).toMatch(/WebGL2Kernel/);
      const shape = { batch: 1, queryHeads: 1, queryLength: 64, headDim: 8 };
      const inputs = randomAttentionInputs(shape, 3);
      passes.length = 0;
      const got = await backend.attention(inputs, { causal: true });
      expectClose(
        got.output,
        referenceAttention64(inputs, { causal: true }).output,
        backend.capabilities.tolerance,
        'output',
      );
      // Tiles of 16 keys; causal with Lq 64 > 16: 4 chunks of 16 positions, chunk c sees tiles 0..c,
      // so 1 + 2 + 3 + 4 = 10 tile passes; per chunk one initMax, initAcc and finalize; q, k, v and
      // the absent bias and key mask (1-float stand-ins) each packed once.
      const count = (kernel: string) => passes.filter((p) => p.kernel === kernel).length;
      for (const kernel of ['scoresPacked', 'rowMaxPacked', 'probsPacked', 'accumulatePacked'])
        expect(count(kernel), kernel).toBe(10);
      for (const kernel of ['initMax', 'initAcc', 'finalize']) expect(count(kernel), kernel).toBe(4);
      expect(count('pack')).toBe(5);
      expect(passes.length).toBe(4 * 10 + 3 * 4 + 5);
      // a tile's scores: four keys a texel, one row of the chunk a line
      expect(passes.find((p) => p.kernel === 'scoresPacked')?.output).toEqual([4, 16]);
      expect(passes.find((p) => p.kernel === 'rowMaxPacked')?.output).toEqual([1, 16]);
      for (const p of passes) expect(Number.isFinite(p.ms) && p.ms >= 0, `${p.kernel} ${p.ms}`).toBe(true);
    } finally {
      await backend.dispose();
    }
  });
});
