// Stateless attention with precision 'f16-storage' on WebGPU: q, k and v go up as packed binary16
// pairs (half the bytes), the kernels unpack them into float32. Correctness against the float64
// reference (on rounded and on original inputs) is the conformance suite's f16-storage/* cases;
// here, what only this backend can show: the bytes it moves, and that it answers exactly as the
// float32 kernel does on inputs rounded by the spec's arithmetic roundToF16.
import { roundToF16 } from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach, inputsFor, newBackend } from './helpers.js';

const { track } = cleanupAfterEach();

describe("attention on WebGPU, precision 'f16-storage'", () => {
  it('declares f16Storage and uploads q, k and v in half the bytes (even D), a padded word per odd row', async () => {
    const backend = track(newBackend());
    await backend.init();
    expect(backend.capabilities.features).toContain('f16Storage');
    const uploaded = async (headDim: number, precision: 'f32' | 'f16-storage') => {
      const shape = { batch: 1, queryHeads: 2, queryLength: 24, headDim };
      const before = backend.transfers().uploadBytes;
      await backend.attention(inputsFor(shape), { precision });
      return backend.transfers().uploadBytes - before;
    };
    // q [2, 24, D], k and v [2, 24, D]: 3 * 48 rows. The uniform block is the same either way.
    const rows = 3 * 2 * 24;
    for (const D of [16, 64]) {
      const full = await uploaded(D, 'f32');
      const half = await uploaded(D, 'f16-storage');
      expect(full - half, `D ${D}`).toBe(rows * D * 2);
    }
    // D 5: three words a row, not two and a half.
    expect((await uploaded(5, 'f32')) - (await uploaded(5, 'f16-storage'))).toBe(rows * (5 * 4 - 3 * 4));
  });

  it('gives the bits the float32 kernel gives on inputs rounded by roundToF16 (scalar and tiled kernels)', async () => {
    const backend = track(newBackend());
    for (const queryLength of [6, 40]) {
      const shape = { batch: 2, queryHeads: 4, kvHeads: 2, queryLength, headDim: 64, valueDim: 32 };
      // No value in binary16's subnormal range (|x| < 2^-14): WGSL lets unpack2x16float flush those.
      const inputs = inputsFor(shape, 3, 2);
      for (const t of [inputs.q, inputs.k, inputs.v])
        for (let i = 0; i < t.length; i++) if (Math.abs(t[i]) < 2 ** -14) t[i] = 0.5;
      const options = { causal: true, returnLse: true } as const;
      const stored = await backend.attention(inputs, { ...options, precision: 'f16-storage' });
      const rounded = await backend.attention(
        { ...inputs, q: inputs.q.map(roundToF16), k: inputs.k.map(roundToF16), v: inputs.v.map(roundToF16) },
        options,
      );
      // Same kernel, same values after the load: the same bits.
      expect(stored.output, `Lq ${queryLength}`).toEqual(rounded.output);
      expect(stored.lse, `Lq ${queryLength}`).toEqual(rounded.lse);
      // and not the float32 answer on the original inputs
      const plain = await backend.attention(inputs, options);
      let moved = 0;
      for (let i = 0; i < plain.output.length; i++)
        moved = Math.max(moved, Math.abs(plain.output[i] - stored.output[i]));
      expect(moved, `Lq ${queryLength}`).toBeGreaterThan(1e-5);
    }
  });
});
