import { naiveAttention32 } from '@attnkit/conformance';
import {
  type AttentionInputs,
  type AttentionOptions,
  referenceAttention64,
  validateAttention,
} from '@attnkit/spec';
import { afterAll, describe, expect, it } from 'vitest';
import { createWasmBackend, WASM_TOLERANCE } from '../src/index.js';
import { uniform } from './helpers.js';

const { atol, rtol, fudge } = WASM_TOLERANCE;

/** Worst `|got - ref| / (atol + rtol |ref| + f * naiveRowError)` over the output (rows of `row` values). */
function ratio(
  got: Float32Array,
  inputs: AttentionInputs,
  options: AttentionOptions,
  f: number,
  row: number,
) {
  const ref = referenceAttention64(inputs, options).output;
  const naive = naiveAttention32(validateAttention(inputs, options)).output;
  let worst = 0;
  for (let r = 0; r < ref.length / row; r++) {
    let naiveError = 0;
    for (let c = 0; c < row; c++)
      naiveError = Math.max(naiveError, Math.abs(naive[r * row + c] - ref[r * row + c]));
    for (let c = 0; c < row; c++) {
      const i = r * row + c;
      worst = Math.max(worst, Math.abs(got[i] - ref[i]) / (atol + rtol * Math.abs(ref[i]) + f * naiveError));
    }
  }
  return worst;
}

describe('float32 rounding against the honest tolerance', () => {
  const backend = createWasmBackend();
  afterAll(() => backend.dispose());

  it('the reviewer example (D = 1, q = 70.123, k = [71.456, 71.47]) passes with fudge, as float32 must', async () => {
    const inputs = {
      q: new Float32Array([70.123]),
      k: new Float32Array([71.456, 71.47]),
      v: new Float32Array([1, -1]),
      shape: { batch: 1, queryHeads: 1, queryLength: 1, keyLength: 2, headDim: 1 },
    };
    const options = { scale: 1 };
    const { output } = await backend.attention(inputs, options);
    // float32 logits: -0.4547898 against the exact -0.4548978 (what the naive composition gives too)
    expect(output[0]).toBeCloseTo(-0.4547898, 6);
    expect(ratio(output, inputs, options, 0, 1)).toBeGreaterThan(1); // the old model refused it
    expect(ratio(output, inputs, options, fudge, 1)).toBeLessThanOrEqual(1);
  });

  it('large ALiBi terms of both signs, Lq > Lk, stay within atol/rtol alone (exact two-product)', async () => {
    // before the two-product (and the compensated sums): 2.0 times atol + rtol |ref| here
    const shape = { batch: 1, queryHeads: 4, queryLength: 300, keyLength: 100, headDim: 8 };
    const inputs = {
      q: uniform(4 * 300 * 8, 11),
      k: uniform(4 * 100 * 8, 12),
      v: uniform(4 * 100 * 8, 13),
      shape,
    };
    const options = { alibiSlopes: new Float32Array([0.3713, -0.2917, 0.0971, -0.5379]) };
    const { output } = await backend.attention(inputs, options);
    expect(ratio(output, inputs, options, 0, 8)).toBeLessThan(0.5);
  });

  it('decode over 3M keys with positive values stays within atol/rtol alone (compensated sums)', async () => {
    // before the compensation: 3.2 times atol + rtol |ref| (the conformance case at 4M keys: 37 times)
    const Lk = 3 << 20;
    const v = uniform(Lk * 4, 23);
    for (let i = 0; i < v.length; i++) v[i] = 1 + v[i] / 2;
    const inputs = {
      q: uniform(4, 21),
      k: uniform(Lk * 4, 22),
      v,
      shape: { batch: 1, queryHeads: 1, queryLength: 1, keyLength: Lk, headDim: 4 },
    };
    const { output } = await backend.attention(inputs, {});
    expect(ratio(output, inputs, {}, 0, 4)).toBeLessThan(0.5);
  }, 60_000);
});
