// Float16 device tensors: `upload(data, { dtype: 'float16' })` stores binary16 pairs (half the
// bytes), `read` widens them back exactly, and `attentionBuffers` with precision 'f16-storage' runs
// the kernels that unpack them. Its answer is the host call's with precision 'f16-storage' bit for
// bit (same kernel, same words), and that is attention on the inputs rounded by the spec's
// arithmetic roundToF16, within the float32 kernel's tolerance of the float64 reference.
import { type AttentionShape, referenceAttention64, roundToF16 } from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import type { GpuTensor, WebGpuBackend } from '../src/index.js';
import { cleanupAfterEach, expectClose, inputsFor, newBackend, toBlhd } from './helpers.js';

const { track } = cleanupAfterEach();

const STORAGE = 0x80;
const COPY_SRC = 0x4;
const COPY_DST = 0x8;

/** Inputs with no value in binary16's subnormal range (WGSL lets unpack2x16float flush those). */
function normalInputs(shape: AttentionShape, seed: number) {
  const inputs = inputsFor(shape, seed, 2);
  for (const t of [inputs.q, inputs.k, inputs.v])
    for (let i = 0; i < t.length; i++) if (Math.abs(t[i]) < 2 ** -14) t[i] = 0.5;
  return inputs;
}

async function uploadF16(backend: WebGpuBackend, ...arrays: Float32Array[]): Promise<GpuTensor[]> {
  return Promise.all(arrays.map((a) => backend.upload(a, { dtype: 'float16' })));
}

describe('float16 device tensors on WebGPU', () => {
  it('declares deviceF16Storage; upload rounds to nearest even in half the bytes and read widens exactly', async () => {
    const backend = track(newBackend());
    await backend.init();
    expect(backend.capabilities.features).toContain('deviceF16Storage');
    // 1 + 2^-12 rounds down to 1; 3 + 2^-10 is a tie that goes to the even 3; 0.1 rounds to a value
    // float32 does not hold as 0.1; 65504 is binary16's largest; infinities and NaN pass through.
    const values = new Float32Array([1 + 2 ** -12, 3 + 2 ** -10, 0.1, -2, 65504, -Infinity, Number.NaN]);
    const before = backend.transfers().uploadBytes;
    const tensor = await backend.upload(values, { dtype: 'float16' });
    // seven values: four 32-bit words, the last padded
    expect(backend.transfers().uploadBytes - before).toBe(16);
    expect(tensor).toMatchObject({ elements: 7, dtype: 'float16' });
    const back = await backend.read(tensor);
    expect(Array.from(back)).toEqual([1, 3, Math.fround(roundToF16(0.1)), -2, 65504, -Infinity, Number.NaN]);
    expect(back[2]).not.toBe(Math.fround(0.1));
  });

  it('answers as the host call with f16 storage, bit for bit, and as attention on the rounded inputs (scalar and tiled)', async () => {
    const backend = track(newBackend());
    for (const queryLength of [6, 40]) {
      const shape = { batch: 2, queryHeads: 4, kvHeads: 2, queryLength, headDim: 64, valueDim: 32 };
      const inputs = normalInputs(shape, 3 + queryLength);
      const options = { causal: true, returnLse: true, precision: 'f16-storage' } as const;
      const hosted = await backend.attention(inputs, options);
      const [q, k, v] = await uploadF16(backend, inputs.q, inputs.k, inputs.v);
      const out = await backend.attentionBuffers({ q, k, v, shape }, options);
      expect(out.output.dtype ?? 'float32').toBe('float32');
      const output = await backend.read(out.output);
      expect(output, `Lq ${queryLength}`).toEqual(hosted.output);
      expect(await backend.read(out.lse!), `Lq ${queryLength}`).toEqual(hosted.lse);
      const rounded = {
        ...inputs,
        q: inputs.q.map(roundToF16),
        k: inputs.k.map(roundToF16),
        v: inputs.v.map(roundToF16),
      };
      const ref = referenceAttention64(rounded, { causal: true });
      expectClose(
        `Lq ${queryLength} against the reference on rounded inputs`,
        output,
        ref.output,
        backend.capabilities.tolerance,
      );
    }
  });

  it('reads [B, L, H, D] float16 tensors by the same strides, in words', async () => {
    const backend = track(newBackend());
    const shape = { batch: 2, queryHeads: 2, kvHeads: 1, queryLength: 20, headDim: 8, valueDim: 6 };
    const { B, Hq, Hkv, L } = { B: 2, Hq: 2, Hkv: 1, L: 20 };
    const inputs = normalInputs(shape, 11);
    const options = { causal: true, precision: 'f16-storage' } as const;
    const [q, k, v] = await uploadF16(backend, inputs.q, inputs.k, inputs.v);
    const bhld = await backend.read((await backend.attentionBuffers({ q, k, v, shape }, options)).output);
    const [q2, k2, v2] = await uploadF16(
      backend,
      toBlhd(inputs.q, B, Hq, L, 8),
      toBlhd(inputs.k, B, Hkv, L, 8),
      toBlhd(inputs.v, B, Hkv, L, 6),
    );
    const out = await backend.attentionBuffers({ q: q2, k: k2, v: v2, shape, layout: 'blhd' }, options);
    expect(await backend.read(out.output)).toEqual(toBlhd(bhld, B, Hq, L, 6));
  });

  it('odd head sizes: rows padded to whole words on the device, the host call bit for bit, both layouts', async () => {
    const backend = track(newBackend());
    const options = { causal: true, returnLse: true, precision: 'f16-storage' } as const;
    // D odd, Dv odd, both; Lq 6 (the scalar kernel) and 40 (the tiled one)
    for (const [headDim, valueDim] of [
      [5, 8],
      [8, 3],
      [7, 5],
    ] as const) {
      for (const queryLength of [6, 40]) {
        const label = `D ${headDim}, Dv ${valueDim}, Lq ${queryLength}`;
        const shape = { batch: 2, queryHeads: 2, kvHeads: 1, queryLength, headDim, valueDim };
        const inputs = normalInputs(shape, headDim * 10 + valueDim + queryLength);
        // The host call packs each row to whole words itself: same words, same kernel.
        const hosted = await backend.attention(inputs, options);
        const [q, k, v] = await uploadF16(backend, inputs.q, inputs.k, inputs.v);
        const out = await backend.attentionBuffers({ q, k, v, shape }, options);
        const output = await backend.read(out.output);
        expect(output, label).toEqual(hosted.output);
        expect(await backend.read(out.lse!), label).toEqual(hosted.lse);
        const rounded = {
          ...inputs,
          q: inputs.q.map(roundToF16),
          k: inputs.k.map(roundToF16),
          v: inputs.v.map(roundToF16),
        };
        expectClose(
          label,
          output,
          referenceAttention64(rounded, { causal: true }).output,
          backend.capabilities.tolerance,
        );
        // [B, L, H, D]: the same rows in another order, padded the same way.
        const { batch: B, queryHeads: Hq, kvHeads: Hkv } = shape;
        const [q2, k2, v2] = await uploadF16(
          backend,
          toBlhd(inputs.q, B, Hq, queryLength, headDim),
          toBlhd(inputs.k, B, Hkv, queryLength, headDim),
          toBlhd(inputs.v, B, Hkv, queryLength, valueDim),
        );
        const blhd = await backend.attentionBuffers({ q: q2, k: k2, v: v2, shape, layout: 'blhd' }, options);
        expect(await backend.read(blhd.output), label).toEqual(toBlhd(output, B, Hq, queryLength, valueDim));
        for (const t of [q, k, v, q2, k2, v2, out.output, out.lse!, blhd.output, blhd.lse!])
          backend.release(t);
      }
    }
    // The padded copies go back to the pool: repeated calls do not grow device memory.
    const shape = { batch: 1, queryHeads: 2, queryLength: 20, headDim: 7, valueDim: 5 };
    const inputs = normalInputs(shape, 5);
    const [q, k, v] = await uploadF16(backend, inputs.q, inputs.k, inputs.v);
    const once = async () => {
      const out = await backend.attentionBuffers({ q, k, v, shape }, options);
      await backend.read(out.output);
      backend.release(out.output);
      backend.release(out.lse!);
    };
    await once();
    const settled = backend.memory().deviceBytes;
    for (let n = 0; n < 5; n++) await once();
    expect(backend.memory().deviceBytes).toBe(settled);
  });

  it('rejects, before any work, a float16 buffer too small and a dtype it does not know', async () => {
    const backend = track(newBackend());
    await backend.init();
    const f16 = { precision: 'f16-storage' } as const;

    // 300 float16 values need 600 bytes: a 512-byte buffer of the caller's is too small for them,
    // though it would hold 128 float32 ones.
    const buffer = backend.device.createBuffer({ size: 512, usage: STORAGE | COPY_SRC | COPY_DST });
    try {
      const shape = { batch: 1, queryHeads: 1, queryLength: 20, headDim: 15 * 1 };
      const small = { buffer, elements: 300, dtype: 'float16' } as const;
      await expect(
        backend.attentionBuffers({ q: small, k: small, v: small, shape }, f16),
      ).rejects.toMatchObject({
        code: 'invalid-argument',
        argument: 'q.buffer.size',
        expected: 'at least 600 bytes',
      });
      await expect(
        backend.read({ buffer, elements: 4, dtype: 'bfloat16' as 'float16' }),
      ).rejects.toMatchObject({
        code: 'invalid-argument',
        argument: 'tensor.dtype',
        expected: "'float32' or 'float16'",
      });
      // a caller's own float16 buffer reads back as what it holds
      backend.device.queue.writeBuffer(buffer, 0, new Uint32Array([(0x3c00 | (0xc000 << 16)) >>> 0]));
      expect(Array.from(await backend.read({ buffer, elements: 2, dtype: 'float16' }))).toEqual([1, -2]);
    } finally {
      buffer.destroy();
    }
  });
});
