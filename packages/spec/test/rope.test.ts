import { describe, expect, it } from 'vitest';
import { AttnkitError, applyRotary, resolveRotary, rotateInPlace } from '../src/index.js';

const one = { batch: 1, heads: 1, length: 1, headDim: 4 };

describe('applyRotary (RoPE)', () => {
  it('position 0 is the identity', () => {
    const x = new Float32Array([0.5, -1, 2, 3]);
    expect(applyRotary(x, one, 0)).toEqual(x);
  });

  it('half-split, base 10000, D 4, position 1: pairs (0,2) turn by 1 rad and (1,3) by 0.01 rad (hand-derived)', () => {
    // inv_freq = [10000^0, 10000^(-2/4)] = [1, 0.01]
    const out = applyRotary(new Float32Array([1, 1, 0, 0]), one, 1);
    expect(out[0]).toBeCloseTo(Math.cos(1), 7);
    expect(out[2]).toBeCloseTo(Math.sin(1), 7);
    expect(out[1]).toBeCloseTo(Math.cos(0.01), 7);
    expect(out[3]).toBeCloseTo(Math.sin(0.01), 7);
  });

  it('interleaved pairs (0,1) and (2,3): the same rotation on a permuted layout', () => {
    const half = applyRotary(new Float32Array([1, 2, 3, 4]), one, 5);
    const inter = applyRotary(new Float32Array([1, 3, 2, 4]), one, 5, { interleaved: true });
    expect([inter[0], inter[2], inter[1], inter[3]]).toEqual([...half]);
  });

  it('rotaryDim 2 of D 4: the last two dimensions pass through unchanged', () => {
    const out = applyRotary(new Float32Array([1, 0, 7, -7]), one, 3, { rotaryDim: 2, base: 500 });
    expect(out[0]).toBeCloseTo(Math.cos(3), 7);
    expect(out[1]).toBeCloseTo(Math.sin(3), 7);
    expect([out[2], out[3]]).toEqual([7, -7]);
  });

  it('the score of a rotated query and key depends only on their distance', () => {
    const q = new Float32Array([0.3, -0.7, 1.1, 0.2, 0.5, -0.4, 0.9, 0.1]);
    const k = new Float32Array([-0.2, 0.8, 0.4, -1.2, 0.6, 0.3, -0.5, 0.7]);
    const shape = { batch: 1, heads: 1, length: 1, headDim: 8 };
    const dot = (a: Float32Array, b: Float32Array) => a.reduce((sum, value, i) => sum + value * b[i], 0);
    const near = dot(applyRotary(q, shape, 10), applyRotary(k, shape, 7));
    const far = dot(applyRotary(q, shape, 1003), applyRotary(k, shape, 1000));
    expect(near).toBeCloseTo(far, 4);
  });

  it('per-row starts: row b token l sits at start[b] + l; sign -1 undoes the rotation', () => {
    const shape = { batch: 2, heads: 2, length: 3, headDim: 4 };
    const x = Float32Array.from({ length: 48 }, (_, i) => Math.sin(i + 1));
    const rotated = applyRotary(x, shape, [4, 9]);
    // row 1, head 1, token 2 equals a single token rotated at position 11
    const single = applyRotary(x.slice(44, 48), one, 11);
    expect(rotated.slice(44, 48)).toEqual(single);
    rotateInPlace(rotated, shape, [4, 9], resolveRotary({}, 4), -1);
    for (let i = 0; i < 48; i++) expect(rotated[i]).toBeCloseTo(x[i], 6);
  });

  it('rejects bad input naming the argument', () => {
    const reject = (call: () => unknown, argument: string) => {
      try {
        call();
      } catch (error) {
        expect(error).toBeInstanceOf(AttnkitError);
        expect((error as AttnkitError).argument).toBe(argument);
        return;
      }
      throw new Error(`expected ${argument} to be rejected`);
    };
    reject(() => applyRotary(new Float32Array(3), one), 'x.length');
    reject(() => applyRotary(new Float32Array(4), one, -1), 'start');
    reject(() => applyRotary(new Float32Array(4), one, [1, 2]), 'start');
    reject(() => applyRotary(new Float32Array(4), one, 0, { rotaryDim: 3 }), 'rotary.rotaryDim');
    reject(() => applyRotary(new Float32Array(4), one, 0, { base: 1 }), 'rotary.base');
    reject(() => applyRotary(new Float32Array(5), { ...one, headDim: 5 }), 'rotary.rotaryDim');
    reject(() => applyRotary(new Float32Array(4), one, 0, { theta: 3 } as never), 'rotary.theta');
  });
});
