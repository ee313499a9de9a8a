import { describe, expect, it } from 'vitest';
import {
  type AttentionInputs,
  type AttentionOptions,
  AttnkitError,
  validateAttention,
  validateMatmul,
} from '../src/index.js';

const shape = { batch: 1, queryHeads: 2, kvHeads: 1, queryLength: 3, keyLength: 4, headDim: 2, valueDim: 5 };
const good = (): AttentionInputs => ({
  q: new Float32Array(1 * 2 * 3 * 2),
  k: new Float32Array(1 * 1 * 4 * 2),
  v: new Float32Array(1 * 1 * 4 * 5),
  shape: { ...shape },
});

function rejection(run: () => unknown): AttnkitError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(AttnkitError);
    return error as AttnkitError;
  }
  throw new Error('expected an AttnkitError, nothing was thrown');
}

describe('validateAttention', () => {
  it('resolves defaults', () => {
    const t = new Float32Array(12);
    const p = validateAttention({
      q: t,
      k: t,
      v: t,
      shape: { batch: 1, queryHeads: 1, queryLength: 3, headDim: 4 },
    });
    expect(p.shape).toEqual({
      batch: 1,
      queryHeads: 1,
      kvHeads: 1,
      queryLength: 3,
      keyLength: 3,
      headDim: 4,
      valueDim: 4,
    });
    expect(p.scale).toBe(0.5);
    expect(p).toMatchObject({
      causal: false,
      slidingWindow: null,
      keyMask: null,
      bias: null,
      softcap: null,
      sinks: null,
    });
  });

  it('computes bias strides with zeros on broadcast axes', () => {
    const p = validateAttention(good(), { bias: { data: new Float32Array(2 * 4), shape: [1, 2, 1, 4] } });
    expect(p.bias!.strides).toEqual([0, 4, 0, 1]);
  });

  const cases: [string, (inputs: AttentionInputs) => [AttentionInputs, AttentionOptions?], string, RegExp][] =
    [
      [
        'wrong q length',
        (i) => [{ ...i, q: new Float32Array(11) }],
        'q.length',
        /q\.length must be 12 \(B\*Hq\*Lq\*D = 1\*2\*3\*2\), got 11/,
      ],
      ['wrong v length', (i) => [{ ...i, v: new Float32Array(8) }], 'v.length', /got 8/],
      [
        'q not a Float32Array',
        (i) => [{ ...i, q: new Float64Array(12) as unknown as Float32Array }],
        'q',
        /q must be a Float32Array, got Float64Array\(length 12\)/,
      ],
      [
        'k a plain array',
        (i) => [{ ...i, k: [1, 2] as unknown as Float32Array }],
        'k',
        /k must be a Float32Array, got \[1, 2\]/,
      ],
      [
        'zero dim',
        (i) => [{ ...i, shape: { ...shape, headDim: 0 } }],
        'shape.headDim',
        /shape\.headDim must be a positive integer, got 0/,
      ],
      [
        'fractional dim',
        (i) => [{ ...i, shape: { ...shape, queryLength: 2.5 } }],
        'shape.queryLength',
        /got 2\.5/,
      ],
      ['negative batch', (i) => [{ ...i, shape: { ...shape, batch: -1 } }], 'shape.batch', /got -1/],
      [
        'Hq % Hkv != 0',
        (i) => [{ ...i, shape: { ...shape, queryHeads: 3, kvHeads: 2 } }],
        'shape.queryHeads',
        /multiple of shape\.kvHeads \(2\), got 3/,
      ],
      [
        'unknown shape key',
        (i) => [{ ...i, shape: { ...shape, heads: 2 } as typeof shape }],
        'shape.heads',
        /unknown key "heads"/,
      ],
      [
        'unknown option (typo)',
        (i) => [i, { casual: true } as AttentionOptions],
        'options.casual',
        /unknown key "casual"/,
      ],
      ['window 0', (i) => [i, { slidingWindow: 0 }], 'options.slidingWindow', /an integer >= 1, got 0/],
      ['window 1.5', (i) => [i, { slidingWindow: 1.5 }], 'options.slidingWindow', /got 1\.5/],
      ['NaN scale', (i) => [i, { scale: Number.NaN }], 'options.scale', /a finite number, got NaN/],
      ['softcap 0', (i) => [i, { softcap: 0 }], 'options.softcap', /> 0, got 0/],
      [
        'causal a string',
        (i) => [i, { causal: 'yes' as unknown as boolean }],
        'options.causal',
        /a boolean, got "yes"/,
      ],
      [
        'key mask wrong length',
        (i) => [i, { keyMask: new Uint8Array(3) }],
        'options.keyMask.length',
        /4 \(B\*Lk = 1\*4\), got 3/,
      ],
      [
        'key mask wrong type',
        (i) => [i, { keyMask: new Float32Array(4) as unknown as Uint8Array }],
        'options.keyMask',
        /a Uint8Array/,
      ],
      [
        'bias batch axis not broadcastable',
        (i) => [i, { bias: { data: new Float32Array(8), shape: [2, 1, 1, 4] } }],
        'options.bias.shape[0]',
        /1 or 1 \(B\) to broadcast, got 2/,
      ],
      [
        'bias axis size 3 for Lk 4',
        (i) => [i, { bias: { data: new Float32Array(3), shape: [1, 1, 1, 3] } }],
        'options.bias.shape[3]',
        /1 or 4 \(Lk\) to broadcast, got 3/,
      ],
      [
        'bias with 3 dims',
        (i) => [
          i,
          {
            bias: {
              data: new Float32Array(4),
              shape: [1, 1, 4] as unknown as [number, number, number, number],
            },
          },
        ],
        'options.bias.shape',
        /4 dimensions/,
      ],
      [
        'bias data wrong length',
        (i) => [i, { bias: { data: new Float32Array(5), shape: [1, 1, 1, 4] } }],
        'options.bias.data.length',
        /4 \(product of shape \[1, 1, 1, 4\]\), got 5/,
      ],
      [
        'sinks wrong length',
        (i) => [i, { sinks: new Float32Array(1) }],
        'options.sinks.length',
        /2 \(Hq, one per query head\), got 1/,
      ],
      [
        'alibi wrong type',
        (i) => [i, { alibiSlopes: [1, 2] as unknown as Float32Array }],
        'options.alibiSlopes',
        /a Float32Array/,
      ],
    ];

  for (const [name, mutate, argument, message] of cases) {
    it(`rejects ${name}`, () => {
      const [inputs, options] = mutate(good());
      const error = rejection(() => validateAttention(inputs, options));
      expect(error.code).toBe('invalid-argument');
      expect(error.argument).toBe(argument);
      expect(error.message).toMatch(message);
      expect(error.expected).toBeTruthy();
      expect(error.actual).toBeTruthy();
    });
  }

  it('rejects tensors over 2^31 - 1 elements before allocating anything', () => {
    const error = rejection(() =>
      validateAttention({
        ...good(),
        shape: { batch: 1, queryHeads: 1, queryLength: 65536, headDim: 65536 },
      }),
    );
    expect(error.argument).toBe('q');
    expect(error.message).toMatch(/at most 2147483647 elements/);
  });
});

describe('validateMatmul', () => {
  it('accepts a good call and rejects a bad one', () => {
    const p = validateMatmul({
      a: new Float32Array(6),
      b: new Float32Array(12),
      shape: { m: 2, k: 3, n: 4 },
    });
    expect(p.bias).toBeNull();
    const error = rejection(() =>
      validateMatmul({
        a: new Float32Array(6),
        b: new Float32Array(12),
        bias: new Float32Array(3),
        shape: { m: 2, k: 3, n: 4 },
      }),
    );
    expect(error.argument).toBe('bias.length');
    expect(error.message).toMatch(/bias\.length must be 4 \(n = 4\), got 3/);
  });
});

describe('a decode call that forgets keyLength', () => {
  it('says that shape.keyLength defaulted to shape.queryLength', () => {
    const shape = { batch: 1, queryHeads: 1, queryLength: 1, headDim: 4 }; // keyLength omitted
    const call = () =>
      validateAttention({ q: new Float32Array(4), k: new Float32Array(64), v: new Float32Array(64), shape });
    expect(call).toThrow(
      'attention: k.length must be 4 (B*Hkv*Lk*D = 1*1*1*4; shape.keyLength defaults to shape.queryLength), got 64',
    );
  });

  it('does not mention the default when keyLength was given', () => {
    const shape = { batch: 1, queryHeads: 1, queryLength: 1, keyLength: 16, headDim: 4 };
    const call = () =>
      validateAttention({ q: new Float32Array(4), k: new Float32Array(60), v: new Float32Array(64), shape });
    expect(call).toThrow('attention: k.length must be 64 (B*Hkv*Lk*D = 1*1*16*4), got 60');
  });
});
