import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import {
  type AttentionInputs,
  type AttentionOptions,
  AttnkitError,
  allocating,
  createReferenceBackend,
  FLOAT32_MAX,
  referenceAttention64,
  referenceMatmul64,
  validateAttention,
  validateFactoryOptions,
  validateLayer,
  validateMatmul,
} from '../src/index.js';

const shape = { batch: 1, queryHeads: 2, kvHeads: 1, queryLength: 3, keyLength: 4, headDim: 2, valueDim: 5 };

function seeded(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32) * 2 - 1;
  }
  return out;
}

const good = (): AttentionInputs => ({
  q: seeded(1 * 2 * 3 * 2, 1),
  k: seeded(1 * 1 * 4 * 2, 2),
  v: seeded(1 * 1 * 4 * 5, 3),
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

function transfer(buffer: ArrayBufferLike): void {
  structuredClone(buffer, { transfer: [buffer as ArrayBuffer] });
}

describe('inputs are read before the call returns (reference backend)', () => {
  const options: AttentionOptions = {
    causal: true,
    bias: { data: seeded(4, 9), shape: [1, 1, 1, 4] },
    keyMask: new Uint8Array([1, 1, 0, 1]),
    alibiSlopes: new Float32Array([0.25, 0.5]),
    sinks: new Float32Array([0.1, -0.2]),
    returnLse: true,
  };

  for (const initialised of [true, false]) {
    it(`overwriting q and transferring k right after the call does not change the result (${initialised ? 'initialised' : 'init pending'})`, async () => {
      const backend = createReferenceBackend();
      if (initialised) await backend.init();
      const inputs = good();
      const expected = referenceAttention64(
        { ...inputs, q: inputs.q.slice(), k: inputs.k.slice(), v: inputs.v.slice() },
        options,
      );
      const bias = options.bias!.data.slice();
      const call = backend.attention(inputs, options);
      inputs.q.fill(Number.NaN);
      transfer(inputs.k.buffer);
      options.bias!.data.fill(1e6);
      const { output, lse } = await call;
      expect(Array.from(output)).toEqual(Array.from(Float32Array.from(expected.output)));
      expect(Array.from(lse!)).toEqual(Array.from(Float32Array.from(expected.lse!)));
      options.bias!.data.set(bias);
      await backend.dispose();
    });

    it(`matmul inputs are read before the call returns (${initialised ? 'initialised' : 'init pending'})`, async () => {
      const backend = createReferenceBackend();
      if (initialised) await backend.init();
      const a = seeded(6, 4);
      const b = seeded(6, 5);
      const expected = Float32Array.from(referenceMatmul64(a, b, 2, 3, 2, null));
      const call = backend.matmul({ a, b, shape: { m: 2, k: 3, n: 2 } });
      a.fill(7);
      transfer(b.buffer);
      expect(Array.from(await call)).toEqual(Array.from(expected));
      await backend.dispose();
    });
  }
});

describe('real types, read once', () => {
  it('rejects a Float32Array subclass whose length getter lies, naming the real length', () => {
    class Liar extends Float32Array {
      override get length(): number {
        return 12;
      }
    }
    const inputs = { ...good(), q: new Liar(6) };
    expect(inputs.q.length).toBe(12);
    const error = rejection(() => validateAttention(inputs));
    expect(error.argument).toBe('q.length');
    expect(error.actual).toBe('6');
  });

  it('the layer checks real lengths too', () => {
    class Liar extends Float32Array {
      override get length(): number {
        return 8;
      }
    }
    const layerShape = { batch: 1, queryLength: 2, modelDim: 4, queryHeads: 2, headDim: 1 };
    const weights = {
      wq: new Float32Array(8),
      wk: new Float32Array(8),
      wv: new Float32Array(8),
      wo: new Float32Array(8),
    };
    expect(() => validateLayer({ x: new Float32Array(8), weights, shape: layerShape })).not.toThrow();
    const error = rejection(() => validateLayer({ x: new Liar(3), weights, shape: layerShape }));
    expect(error).toMatchObject({ argument: 'x.length', actual: '3' });
  });

  it('hands backends a plain Float32Array view of a subclass, with the real length', () => {
    class Tagged extends Float32Array {}
    const q = new Tagged(12);
    q.set(seeded(12, 1));
    const p = validateAttention({ ...good(), q });
    expect(Object.getPrototypeOf(p.q)).toBe(Float32Array.prototype);
    expect(p.q.buffer).toBe(q.buffer);
    expect(Array.from(p.q)).toEqual(Array.from(q));
  });

  it('rejects an object that fakes Symbol.toStringTag', () => {
    const fake = { [Symbol.toStringTag]: 'Float32Array', length: 12 };
    expect(Object.prototype.toString.call(fake)).toBe('[object Float32Array]');
    const error = rejection(() => validateAttention({ ...good(), q: fake as unknown as Float32Array }));
    expect(error.argument).toBe('q');
    expect(error.code).toBe('invalid-argument');
  });

  it('accepts a Float32Array from another realm', () => {
    const foreign = runInNewContext('new Float32Array(12)') as Float32Array;
    expect(foreign instanceof Float32Array).toBe(false);
    expect(validateAttention({ ...good(), q: foreign }).q.length).toBe(12);
  });

  it('rejects a detached tensor naming it', () => {
    const inputs = good();
    transfer(inputs.v.buffer);
    const error = rejection(() => validateAttention(inputs));
    expect(error.argument).toBe('v');
    expect(error.message).toMatch(/detached/);
    const mask = new Uint8Array(4);
    transfer(mask.buffer);
    expect(rejection(() => validateAttention(good(), { keyMask: mask })).argument).toBe('options.keyMask');
  });

  it('reads each option exactly once: a getter cannot change a value after validation', () => {
    let reads = 0;
    const options = {
      get scale() {
        reads++;
        return reads === 1 ? 0.5 : Number.NaN;
      },
    };
    expect(validateAttention(good(), options).scale).toBe(0.5);
    expect(reads).toBe(1);
  });

  it('reads each shape field and input exactly once', () => {
    let reads = 0;
    const inputs = good();
    const { kvHeads: _, ...rest } = shape;
    const s = {
      ...rest,
      get kvHeads() {
        reads++;
        return reads === 1 ? 1 : 3;
      },
    };
    let qReads = 0;
    const q = inputs.q;
    const given = {
      get q() {
        qReads++;
        return qReads === 1 ? q : new Float32Array(12).fill(Number.NaN);
      },
      k: inputs.k,
      v: inputs.v,
      shape: s,
    };
    const p = validateAttention(given);
    expect(p.shape.kvHeads).toBe(1);
    expect(reads).toBe(1);
    expect(qReads).toBe(1);
    expect(p.q[0]).toBe(q[0]);
  });

  it('reads matmul fields exactly once', () => {
    let reads = 0;
    const bias = new Float32Array([1, 2]);
    const p = validateMatmul({
      a: new Float32Array(6),
      b: new Float32Array(6),
      get bias() {
        reads++;
        return reads === 1 ? bias : undefined;
      },
      shape: { m: 2, k: 3, n: 2 },
    });
    expect(Array.from(p.bias!)).toEqual([1, 2]);
    expect(reads).toBe(1);
  });
});

describe('option values float32 kernels cannot hold', () => {
  it.each([
    ['softcap', 1e-50],
    ['softcap', 2 ** -127],
    ['softcap', 1e39],
    ['scale', 1e300],
    ['scale', -1e300],
    ['scale', 3.5e38],
  ])('rejects options.%s = %d naming the supported range', (name, value) => {
    const error = rejection(() => validateAttention(good(), { [name]: value }));
    expect(error.argument).toBe(`options.${name}`);
    expect(error.message).toMatch(/float32 kernels/);
  });

  it('accepts the ends of the ranges', () => {
    expect(validateAttention(good(), { softcap: 2 ** -126 }).softcap).toBe(2 ** -126);
    expect(validateAttention(good(), { softcap: FLOAT32_MAX }).softcap).toBe(FLOAT32_MAX);
    const tiny = { ...good(), q: new Float32Array(12).fill(1e-20), k: new Float32Array(8).fill(1e-20) };
    expect(validateAttention(tiny, { scale: -FLOAT32_MAX }).scale).toBe(-FLOAT32_MAX);
  });

  it('resolves a sliding window wider than the problem to max(Lq, Lk), the same semantics', () => {
    for (const w of [2 ** 32 + 1, 1e300, 5]) {
      expect(validateAttention(good(), { slidingWindow: w }).slidingWindow).toBe(4);
      expect(validateAttention(good(), { slidingWindow: w, causal: true }).slidingWindow).toBe(4);
    }
    expect(validateAttention(good(), { slidingWindow: 3 }).slidingWindow).toBe(3);
    const inputs = good();
    const wide = referenceAttention64(inputs, { slidingWindow: 2 ** 32 + 1 });
    const none = referenceAttention64(inputs);
    expect(Array.from(wide.output)).toEqual(Array.from(none.output));
  });
});

describe('logits that overflow float32', () => {
  const big = (value: number) => ({
    ...good(),
    q: new Float32Array(12).fill(value),
    k: new Float32Array(8).fill(value),
  });

  it('rejects q = k = 1e30 naming q and k, the bound and the actual product', () => {
    const error = rejection(() => validateAttention(big(1e30)));
    expect(error.code).toBe('invalid-argument');
    expect(error.argument).toBe('q, k');
    expect(error.expected).toContain(String(FLOAT32_MAX));
    expect(error.actual).toMatch(/^2 \* 1\.000\d+e\+30 \* 1\.000\d+e\+30 \* 1 = /);
  });

  it('names options.scale when the scale pushes the logits over', () => {
    const inputs = { ...big(1e18), q: new Float32Array(12).fill(1e18) };
    expect(() => validateAttention(inputs)).not.toThrow();
    expect(rejection(() => validateAttention(inputs, { scale: 1e3 })).argument).toBe('q, k, options.scale');
  });

  it('accepts products up to FLT_MAX, and ignores NaN and infinite elements', () => {
    const inputs = big(1e19); // 2 * 1e19 * 1e19 = 2e38 < FLT_MAX
    expect(() => validateAttention(inputs)).not.toThrow();
    const nonfinite = good();
    nonfinite.q[0] = Number.POSITIVE_INFINITY;
    nonfinite.q[1] = Number.NaN;
    nonfinite.k[0] = Number.NEGATIVE_INFINITY;
    expect(() => validateAttention(nonfinite)).not.toThrow();
  });

  it('the reference rejects the same inputs (the rule is part of the definition)', () => {
    expect(() => referenceAttention64(big(1e30))).toThrow(expect.objectContaining({ argument: 'q, k' }));
  });
});

interface ExampleOptions {
  threads?: number | 'auto';
  block?: number;
  fast?: boolean;
  mode?: 'a' | 'b';
  open?: () => void;
  url?: string | URL;
}
const schema = {
  threads: { kind: 'integer', min: 1, max: 64, also: ['auto'] },
  block: { kind: 'integer', min: 1 },
  fast: { kind: 'boolean' },
  mode: { kind: 'enum', values: ['a', 'b'] },
  open: { kind: 'function' },
  url: {
    kind: 'custom',
    description: 'a URL or a string',
    test: (v: unknown) => typeof v === 'string' || v instanceof URL,
  },
} as const;

describe('validateFactoryOptions', () => {
  const check = (options: unknown) =>
    validateFactoryOptions<ExampleOptions>('createExample', options, schema);

  it('returns a plain copy of the keys that were set; undefined means defaults', () => {
    expect(check(undefined)).toEqual({});
    expect(check({ threads: 'auto', block: 3, fast: undefined, mode: 'b' })).toEqual({
      threads: 'auto',
      block: 3,
      mode: 'b',
    });
  });

  it('rejects an unknown key (a typo) listing the known keys', () => {
    const error = rejection(() => check({ thread: 2 }));
    expect(error.argument).toBe('options.thread');
    expect(error.message).toBe(
      'createExample: options has unknown key "thread" (known: threads, block, fast, mode, open, url)',
    );
  });

  it.each([null, 5, 'x', [1]])('rejects options = %j', (value) => {
    const error = rejection(() => check(value));
    expect(error.argument).toBe('options');
    expect(error.code).toBe('invalid-argument');
  });

  it.each([
    ['threads', 0, "an integer in [1, 64] or 'auto'", '0'],
    ['threads', 'many', "an integer in [1, 64] or 'auto'", '"many"'],
    ['block', 1.5, 'an integer >= 1', '1.5'],
    ['fast', 1, 'a boolean', '1'],
    ['mode', 'c', "one of 'a', 'b'", '"c"'],
    ['open', {}, 'a function', 'an object (Object)'],
    ['url', 3, 'a URL or a string', '3'],
  ])('rejects options.%s = %j with expected and actual', (key, value, expected, actual) => {
    const error = rejection(() => check({ [key]: value }));
    expect(error).toMatchObject({ code: 'invalid-argument', argument: `options.${key}`, expected, actual });
    expect(error.message).toBe(`createExample: options.${key} must be ${expected}, got ${actual}`);
  });

  it('reads each key once', () => {
    let reads = 0;
    const options = {
      get block() {
        reads++;
        return reads === 1 ? 4 : -1;
      },
    };
    expect(check(options)).toEqual({ block: 4 });
    expect(reads).toBe(1);
  });
});

describe('allocating', () => {
  it('turns a RangeError into unavailable naming what and how many bytes', () => {
    const error = rejection(() =>
      allocating('attention', 'weights', 8 * 2 ** 30, () => {
        throw new RangeError('Array buffer allocation failed');
      }),
    );
    expect(error).toMatchObject({ code: 'unavailable', argument: 'weights' });
    expect(error.message).toBe(
      'attention: cannot allocate weights (8589934592 bytes): Array buffer allocation failed',
    );
    expect(error.cause).toBeInstanceOf(RangeError);
  });

  it('passes other errors and results through', () => {
    expect(allocating('x', 'y', 1, () => 3)).toBe(3);
    expect(() =>
      allocating('x', 'y', 1, () => {
        throw new TypeError('t');
      }),
    ).toThrow(TypeError);
  });
});
