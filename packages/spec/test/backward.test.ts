import { describe, expect, it } from 'vitest';
import {
  type AttentionBackwardInputs,
  type AttentionBias,
  type AttentionOptions,
  type AttentionShape,
  AttnkitError,
  createBackend,
  createReferenceBackend,
  type ReferenceProblem,
  referenceAttentionBackward64,
  referenceAttentionBackwardProblem64,
  referenceAttentionProblem64,
  validateAttention,
  validateAttentionBackward,
} from '../src/index.js';

/**
 * A small deterministic generator (mulberry32), so a failure reproduces. The conformance suite's `prng`
 * is the same generator, but @attnkit/conformance depends on the spec, so the spec's tests cannot import it.
 */
function generator(seed: number) {
  let state = seed >>> 0;
  return (low = -1, high = 1) => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const unit = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    return low + (high - low) * unit;
  };
}

function fill(random: () => number, length: number): Float32Array {
  return Float32Array.from({ length }, () => random());
}

interface Setup {
  inputs: AttentionBackwardInputs;
  options: AttentionOptions;
}

function setup(shape: AttentionShape, options: (random: () => number) => AttentionOptions, seed = 7): Setup {
  const random = generator(seed);
  const Hkv = shape.kvHeads ?? shape.queryHeads;
  const Lk = shape.keyLength ?? shape.queryLength;
  const Dv = shape.valueDim ?? shape.headDim;
  const q = fill(random, shape.batch * shape.queryHeads * shape.queryLength * shape.headDim);
  const k = fill(random, shape.batch * Hkv * Lk * shape.headDim);
  const v = fill(random, shape.batch * Hkv * Lk * Dv);
  const gradOutput = fill(random, shape.batch * shape.queryHeads * shape.queryLength * Dv);
  const opts = options(random);
  const forward = referenceAttentionProblem64({
    ...validateAttention({ q, k, v, shape }, opts),
    returnLse: true,
  });
  return {
    inputs: {
      q,
      k,
      v,
      shape,
      output: Float32Array.from(forward.output),
      lse: Float32Array.from(forward.lse as Float64Array),
      gradOutput,
    },
    options: opts,
  };
}

/** loss = sum(gradOutput * output), in float64, of a problem whose q/k/v may be float64. */
function loss(problem: ReferenceProblem, gradOutput: Float32Array): number {
  const { output } = referenceAttentionProblem64(problem);
  let total = 0;
  for (let index = 0; index < output.length; index++) total += gradOutput[index] * output[index];
  return total;
}

/**
 * Central finite differences of the loss against every element of q, k, v, the bias and the sinks,
 * compared with the analytic reference gradient. The step is small enough (1e-5 on values of size 1)
 * that the O(h^2) truncation error is ~1e-10 and the float64 cancellation error ~1e-11.
 */
function finiteDifferenceCheck({ inputs, options }: Setup): number {
  const problem = validateAttentionBackward(inputs, options);
  const analytic = referenceAttentionBackwardProblem64(problem);
  const base: ReferenceProblem = { ...problem, returnLse: false };
  const step = 1e-5;
  let worst = 0;
  const compare = (label: string, exact: ArrayLike<number>, numeric: number) => {
    const index = Number(label.slice(label.indexOf('[') + 1, -1));
    const error = Math.abs(exact[index] - numeric);
    worst = Math.max(worst, error);
    expect(error, `${label}: analytic ${exact[index]}, numeric ${numeric}`).toBeLessThan(1e-6);
  };
  for (const name of ['q', 'k', 'v'] as const) {
    const wide = Float64Array.from(problem[name]);
    const exact = analytic[name === 'q' ? 'gradQ' : name === 'k' ? 'gradK' : 'gradV'];
    for (let index = 0; index < wide.length; index++) {
      const original = wide[index];
      wide[index] = original + step;
      const up = loss({ ...base, [name]: wide }, inputs.gradOutput);
      wide[index] = original - step;
      const down = loss({ ...base, [name]: wide }, inputs.gradOutput);
      wide[index] = original;
      compare(`${name}[${index}]`, exact, (up - down) / (2 * step));
    }
  }
  // bias and sinks are float32 in the problem: step by a float32-representable amount
  const f32Step = 2 ** -12;
  if (problem.bias !== null) {
    const exact = analytic.gradBias as Float64Array;
    expect(exact.length).toBe(problem.bias.data.length);
    for (let index = 0; index < problem.bias.data.length; index++) {
      const data = Float32Array.from(problem.bias.data);
      data[index] += f32Step;
      const up = loss({ ...base, bias: { ...problem.bias, data } }, inputs.gradOutput);
      data[index] -= 2 * f32Step;
      const down = loss({ ...base, bias: { ...problem.bias, data } }, inputs.gradOutput);
      // the step 2^-12 leaves an O(h^2) ~ 1e-8 truncation error
      expect(Math.abs(exact[index] - (up - down) / (2 * f32Step))).toBeLessThan(1e-6);
    }
  }
  if (problem.sinks !== null) {
    const exact = analytic.gradSinks as Float64Array;
    for (let index = 0; index < problem.sinks.length; index++) {
      const sinks = Float32Array.from(problem.sinks);
      sinks[index] += f32Step;
      const up = loss({ ...base, sinks }, inputs.gradOutput);
      sinks[index] -= 2 * f32Step;
      const down = loss({ ...base, sinks }, inputs.gradOutput);
      expect(Math.abs(exact[index] - (up - down) / (2 * f32Step))).toBeLessThan(1e-6);
    }
  }
  return worst;
}

const BASE: AttentionShape = { batch: 2, queryHeads: 2, queryLength: 4, headDim: 3 };

describe('referenceAttentionBackward64 agrees with finite differences of the reference forward', () => {
  const cases: [string, AttentionShape, (random: () => number) => AttentionOptions][] = [
    ['no options', BASE, () => ({})],
    ['explicit scale', BASE, () => ({ scale: 0.8 })],
    ['causal', BASE, () => ({ causal: true })],
    ['sliding window', BASE, () => ({ slidingWindow: 2 })],
    ['causal window', BASE, () => ({ slidingWindow: 2, causal: true })],
    ['keyMask', BASE, () => ({ keyMask: new Uint8Array([1, 0, 1, 1, 0, 1, 1, 0]) })],
    [
      'full bias',
      BASE,
      (random) => ({
        bias: { data: fill(random, 2 * 2 * 4 * 4), shape: [2, 2, 4, 4] } satisfies AttentionBias,
      }),
    ],
    [
      'broadcast bias [1,Hq,1,Lk]',
      BASE,
      (random) => ({ bias: { data: fill(random, 2 * 4), shape: [1, 2, 1, 4] } satisfies AttentionBias }),
    ],
    ['alibi', BASE, () => ({ alibiSlopes: new Float32Array([0.5, 0.25]), causal: true })],
    ['softcap', BASE, () => ({ softcap: 0.7, scale: 2 })],
    ['sinks', BASE, () => ({ sinks: new Float32Array([0.3, -0.6]) })],
    ['GQA 4/2', { ...BASE, queryHeads: 4, kvHeads: 2 }, () => ({})],
    ['MQA 4/1 causal', { ...BASE, queryHeads: 4, kvHeads: 1 }, () => ({ causal: true })],
    ['cross attention, Lq 3 Lk 5', { ...BASE, queryLength: 3, keyLength: 5 }, () => ({ causal: true })],
    ['value dim 5', { ...BASE, valueDim: 5 }, () => ({})],
    [
      'everything at once',
      { batch: 2, queryHeads: 4, kvHeads: 2, queryLength: 3, keyLength: 5, headDim: 3, valueDim: 2 },
      (random) => ({
        causal: true,
        slidingWindow: 4,
        keyMask: new Uint8Array([1, 1, 0, 1, 1, 1, 1, 1, 0, 1]),
        bias: { data: fill(random, 4 * 3 * 5), shape: [1, 4, 3, 5] },
        alibiSlopes: new Float32Array([0.1, 0.2, 0.3, 0.4]),
        softcap: 1.5,
        sinks: new Float32Array([0.1, -0.2, 0.3, 0.5]),
        scale: 0.9,
      }),
    ],
  ];
  for (const [name, shape, options] of cases) {
    it(name, () => {
      finiteDifferenceCheck(setup(shape, options));
    });
  }
});

describe('referenceAttentionBackward64 on hand-derived cases', () => {
  it('one key: output = v, so gradV = gradOutput and gradQ = gradK = 0', () => {
    const shape = { batch: 1, queryHeads: 1, queryLength: 1, headDim: 2 };
    const gradOutput = new Float32Array([0.5, -2]);
    const grads = referenceAttentionBackward64({
      q: new Float32Array([1, 2]),
      k: new Float32Array([3, -1]),
      v: new Float32Array([4, 5]),
      shape,
      output: new Float32Array([4, 5]),
      lse: new Float32Array([1 / Math.SQRT2]),
      gradOutput,
    });
    expect([...grads.gradV]).toEqual([0.5, -2]);
    expect([...grads.gradQ]).toEqual([0, 0]);
    expect([...grads.gradK]).toEqual([0, 0]);
  });

  it('scale 0: weights are 1/Lk, so gradV_j = gradOutput / Lk and gradQ = 0', () => {
    const shape = { batch: 1, queryHeads: 1, queryLength: 1, keyLength: 4, headDim: 1 };
    const grads = referenceAttentionBackward64(
      {
        q: new Float32Array([1]),
        k: new Float32Array([1, 2, 3, 4]),
        v: new Float32Array([1, 2, 3, 4]),
        shape,
        output: new Float32Array([2.5]),
        lse: new Float32Array([Math.log(4)]),
        gradOutput: new Float32Array([2]),
      },
      { scale: 0 },
    );
    expect([...grads.gradV]).toEqual([0.5, 0.5, 0.5, 0.5]);
    expect([...grads.gradQ]).toEqual([0]);
    // dK_j = scale * dS_j * q = 0
    expect([...grads.gradK]).toEqual([0, 0, 0, 0]);
  });

  it('two keys, D = 1: dS = P(dP - D_i) by hand', () => {
    // q = 1, k = [0, ln 3] with scale 1: s = [0, ln 3], P = [1/4, 3/4]; v = [1, 5], O = 4.
    // dO = 1: dP = v = [1, 5], D_i = O = 4, dS = [1/4 * -3, 3/4 * 1] = [-0.75, 0.75].
    // dQ = sum dS_j k_j = 0.75 ln 3; dK = dS * q = [-0.75, 0.75]; dV = P * dO = [0.25, 0.75].
    const grads = referenceAttentionBackward64(
      {
        q: new Float32Array([1]),
        k: new Float32Array([0, Math.log(3)]),
        v: new Float32Array([1, 5]),
        shape: { batch: 1, queryHeads: 1, queryLength: 1, keyLength: 2, headDim: 1 },
        output: new Float32Array([4]),
        lse: new Float32Array([Math.log(4)]),
        gradOutput: new Float32Array([1]),
      },
      { scale: 1 },
    );
    const k1 = Math.fround(Math.log(3));
    // P_1 = 3/4 up to k1's float32 rounding; compare with 1e-7
    expect(grads.gradQ[0]).toBeCloseTo(0.75 * k1, 6);
    expect(grads.gradK[0]).toBeCloseTo(-0.75, 6);
    expect(grads.gradK[1]).toBeCloseTo(0.75, 6);
    expect(grads.gradV[0]).toBeCloseTo(0.25, 6);
    expect(grads.gradV[1]).toBeCloseTo(0.75, 6);
  });

  it('a fully masked row gives zero gradients, with and without a sink, never NaN', () => {
    const shape = { batch: 1, queryHeads: 1, queryLength: 2, headDim: 2 };
    for (const sinks of [undefined, new Float32Array([0.5])]) {
      const grads = referenceAttentionBackward64(
        {
          q: new Float32Array([1, 2, 3, 4]),
          k: new Float32Array([1, 1, 1, 1]),
          v: new Float32Array([1, 2, 3, 4]),
          shape,
          output: new Float32Array(4),
          lse: new Float32Array([Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY]),
          gradOutput: new Float32Array([1, 1, 1, 1]),
        },
        { keyMask: new Uint8Array([0, 0]), ...(sinks && { sinks }) },
      );
      for (const tensor of [grads.gradQ, grads.gradK, grads.gradV, grads.gradSinks ?? new Float64Array()]) {
        for (const value of tensor) expect(value).toBe(0);
      }
      expect(grads.gradSinks === undefined).toBe(sinks === undefined);
    }
  });

  it('gradBias has the bias shape: a [1,1,1,Lk] bias gets the sum of dS over b, h and i', () => {
    const { inputs, options } = setup(BASE, () => ({}));
    const full = referenceAttentionBackward64(inputs, {
      bias: { data: new Float32Array(2 * 2 * 4 * 4), shape: [2, 2, 4, 4] },
    });
    const broadcast = referenceAttentionBackward64(inputs, {
      ...options,
      bias: { data: new Float32Array(4), shape: [1, 1, 1, 4] },
    });
    const gradFull = full.gradBias as Float64Array;
    const gradBroadcast = broadcast.gradBias as Float64Array;
    expect(gradBroadcast.length).toBe(4);
    for (let j = 0; j < 4; j++) {
      let sum = 0;
      for (let row = 0; row < 16; row++) sum += gradFull[row * 4 + j];
      expect(gradBroadcast[j]).toBeCloseTo(sum, 12);
    }
  });
});

describe('validateAttentionBackward', () => {
  const { inputs } = setup(BASE, () => ({}));
  const message = (call: () => unknown): AttnkitError => {
    try {
      call();
    } catch (error) {
      if (error instanceof AttnkitError) return error;
      throw error;
    }
    throw new Error('did not throw');
  };

  it('rejects a gradOutput of the wrong length, naming it with the expected and actual lengths', () => {
    const error = message(() => validateAttentionBackward({ ...inputs, gradOutput: new Float32Array(5) }));
    expect(error.code).toBe('invalid-argument');
    expect(error.argument).toBe('gradOutput.length');
    expect(error.message).toContain('attentionBackward');
    expect(error.expected).toContain(String(2 * 2 * 4 * 3));
    expect(error.actual).toBe('5');
  });

  it('rejects an lse of the wrong length and an output that is not a Float32Array', () => {
    expect(message(() => validateAttentionBackward({ ...inputs, lse: new Float32Array(3) })).argument).toBe(
      'lse.length',
    );
    const notFloat32 = { ...inputs, output: new Float64Array(48) as unknown as Float32Array };
    expect(message(() => validateAttentionBackward(notFloat32)).argument).toBe('output');
  });

  it('rejects a missing gradOutput and an unknown key', () => {
    const { gradOutput: _dropped, ...missing } = inputs;
    expect(message(() => validateAttentionBackward(missing as AttentionBackwardInputs)).argument).toBe(
      'gradOutput',
    );
    const extra = { ...inputs, weights: new Float32Array(1) } as AttentionBackwardInputs;
    expect(message(() => validateAttentionBackward(extra)).argument).toBe('inputs.weights');
  });

  it('checks the forward inputs and options by the forward rules, named for attentionBackward', () => {
    const error = message(() => validateAttentionBackward(inputs, { slidingWindow: 0 }));
    expect(error.argument).toBe('options.slidingWindow');
    expect(error.message.startsWith('attentionBackward:')).toBe(true);
  });

  it('accepts returnLse/returnWeights (the forward options object) and resolves them to false', () => {
    const problem = validateAttentionBackward(inputs, { returnLse: true, returnWeights: true });
    expect(problem.returnLse).toBe(false);
    expect(problem.returnWeights).toBe(false);
  });
});

describe('the gate for attentionBackward', () => {
  const { inputs } = setup(BASE, () => ({}));

  it('the reference backend returns the float64 gradients rounded to float32', async () => {
    const backend = createReferenceBackend();
    const sinks = new Float32Array([0.1, 0.2]);
    const bias: AttentionBias = { data: new Float32Array(4), shape: [1, 1, 1, 4] };
    const grads = await backend.attentionBackward(inputs, { causal: true, sinks, bias });
    const exact = referenceAttentionBackward64(inputs, { causal: true, sinks, bias });
    expect(grads.gradQ).toEqual(Float32Array.from(exact.gradQ));
    expect(grads.gradSinks).toEqual(Float32Array.from(exact.gradSinks as Float64Array));
    expect(grads.gradBias).toEqual(Float32Array.from(exact.gradBias as Float64Array));
    await backend.dispose();
    await expect(backend.attentionBackward(inputs)).rejects.toMatchObject({ code: 'disposed' });
  });

  it('a backend without backward rejects unsupported; bad input is rejected before init', async () => {
    let inits = 0;
    const backend = createBackend({
      name: 'forward-only',
      capabilities: () => ({
        features: [],
        limits: {},
        tolerance: { atol: 0, rtol: 0 },
        deterministic: true,
        engine: 'test',
        threads: 1,
        notes: [],
      }),
      init: async () => {
        inits++;
      },
      attention: async () => ({ output: new Float32Array(0) }),
      matmul: async () => new Float32Array(0),
      memory: () => ({ hostBytes: 0, deviceBytes: 0 }),
      dispose: async () => {},
    });
    await expect(backend.attentionBackward({ ...inputs, lse: new Float32Array(1) })).rejects.toMatchObject({
      code: 'invalid-argument',
      argument: 'lse.length',
    });
    expect(inits).toBe(0);
    await expect(backend.attentionBackward(inputs)).rejects.toMatchObject({
      code: 'unsupported',
      argument: 'backward',
    });
    expect(inits).toBe(1);
    await backend.dispose();
  });

  it('copies the inputs of a call made before init, so the caller may overwrite them at once', async () => {
    const backend = createReferenceBackend();
    const gradOutput = new Float32Array(inputs.gradOutput);
    const pending = backend.attentionBackward({ ...inputs, gradOutput });
    gradOutput.fill(0);
    const grads = await pending;
    expect(grads.gradV).toEqual(Float32Array.from(referenceAttentionBackward64(inputs).gradV));
    await backend.dispose();
  });
});
