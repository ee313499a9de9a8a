// The train-induction example: its PNG encoder, and short training runs on cpu (the threshold comes
// from the task: a model that ignores the context cannot beat ln(vocab) by much, one that does
// induction reaches ~0).
import { inflateSync } from 'node:zlib';
import { createCpuBackend } from '@attnkit/cpu';
import { createReferenceBackend } from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { patternScores } from '../train-induction/src/heatmap.js';
import { encodePng } from '../train-induction/src/png.js';
import { DEFAULT_CONFIG, train } from '../train-induction/src/train.js';

describe('encodePng', () => {
  it('writes the signature, an IHDR of the size, and deflated filter-0 scanlines', () => {
    const rgb = Uint8Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9, 1, 2, 3, 4, 5, 6]); // 3 x 2
    const png = encodePng(3, 2, rgb);
    expect(Array.from(png.subarray(0, 8))).toEqual([137, 80, 78, 71, 13, 10, 26, 10]);
    const view = new DataView(png.buffer, png.byteOffset);
    expect(String.fromCharCode(...png.subarray(12, 16))).toBe('IHDR');
    expect([view.getUint32(16), view.getUint32(20), png[24], png[25]]).toEqual([3, 2, 8, 2]);
    // IHDR chunk: 4 length + 4 type + 13 data + 4 crc, from offset 8
    const idat = 8 + 25;
    expect(String.fromCharCode(...png.subarray(idat + 4, idat + 8))).toBe('IDAT');
    const raw = inflateSync(png.subarray(idat + 8, idat + 8 + view.getUint32(idat)));
    expect(Array.from(raw)).toEqual([0, ...rgb.subarray(0, 9), 0, ...rgb.subarray(9)]);
    // CRC of "IEND" with no data is the well-known 0xAE426082
    expect(view.getUint32(png.length - 4)).toBe(0xae426082);
  });
});

describe('train-induction', () => {
  it('learns induction on cpu: held-out loss far below ln(vocab), an induction head in layer 2', async () => {
    const backend = createCpuBackend();
    const config = { ...DEFAULT_CONFIG, steps: 100, evalEvery: 50 };
    const result = await train(backend, config);
    await backend.dispose();
    const chance = Math.log(config.task.vocab);
    expect(result.history[0].loss).toBeGreaterThan(0.8 * chance); // it starts at chance
    expect(result.final.loss).toBeLessThan(0.1 * chance);
    expect(result.final.accuracy).toBeGreaterThan(0.9);
    const { tokens, period } = result.sample;
    const scores = result.patterns.map((layer) => layer.map((p) => patternScores(p, tokens, period)));
    expect(Math.max(...scores[1].map((s) => s.induction))).toBeGreaterThan(0.4);
    expect(Math.max(...scores[0].map((s) => s.previousToken))).toBeGreaterThan(0.25);
  });

  it('follows the float64 reference backend step by step (same seed, same data)', async () => {
    const config = { ...DEFAULT_CONFIG, steps: 30, evalEvery: 30 };
    const cpu = createCpuBackend();
    const reference = createReferenceBackend();
    const [a, b] = [await train(cpu, config), await train(reference, config)];
    await cpu.dispose();
    await reference.dispose();
    let worst = 0;
    for (let i = 0; i < config.steps; i++)
      worst = Math.max(worst, Math.abs(a.history[i].loss - b.history[i].loss));
    expect(worst).toBeLessThan(1e-4);
  });
});
