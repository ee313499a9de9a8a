import { describe, expect, it } from 'vitest';
import {
  ALL_FEATURES,
  type AttentionOptions,
  createBackend,
  createReferenceBackend,
  type LayerInputs,
  type LayerShape,
  multiHeadAttentionBackward,
  multiHeadAttentionForward,
  referenceAttentionProblem64,
  referenceMatmul64,
  referenceMultiHeadAttention64,
  referenceMultiHeadAttentionBackward64,
} from '../src/index.js';

function seeded(length: number, seed: number, amplitude = 1): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return amplitude * (state / 2 ** 31 - 1);
  });
}

function layer(shape: LayerShape, cross: boolean, biases: boolean, seed: number): LayerInputs {
  const { batch: B, queryLength: Lq, modelDim: M, queryHeads: Hq, headDim: D } = shape;
  const Lk = shape.keyLength ?? Lq;
  const Hkv = shape.kvHeads ?? Hq;
  const Dv = shape.valueDim ?? D;
  return {
    x: seeded(B * Lq * M, seed),
    ...(cross && { context: seeded(B * Lk * M, seed + 1) }),
    weights: {
      wq: seeded(M * Hq * D, seed + 2),
      wk: seeded(M * Hkv * D, seed + 3),
      wv: seeded(M * Hkv * Dv, seed + 4),
      wo: seeded(Hq * Dv * M, seed + 5),
      ...(biases && {
        bq: seeded(Hq * D, seed + 6, 0.5),
        bk: seeded(Hkv * D, seed + 7, 0.5),
        bv: seeded(Hkv * Dv, seed + 8, 0.5),
        bo: seeded(M, seed + 9, 0.5),
      }),
    },
    shape,
  };
}

/** Every differentiable float32 array of a call, with the path its gradient has in the result. */
function parameters(inputs: LayerInputs, options: AttentionOptions): [string, Float32Array][] {
  const list: [string, Float32Array][] = [['gradX', inputs.x]];
  if (inputs.context) list.push(['gradContext', inputs.context]);
  for (const [key, value] of Object.entries(inputs.weights)) {
    if (value instanceof Float32Array) list.push([`gradWeights.${key}`, value]);
  }
  if (options.bias) list.push(['gradBias', options.bias.data]);
  if (options.sinks) list.push(['gradSinks', options.sinks]);
  return list;
}

function pick(gradients: object, path: string): ArrayLike<number> {
  let value: unknown = gradients;
  for (const key of path.split('.')) value = (value as Record<string, unknown>)[key];
  if (value === undefined) throw new Error(`no ${path} in the gradients`);
  return value as ArrayLike<number>;
}

/** The scalar loss `sum(gradOutput * Y)` in float64, whose gradient the backward computes. */
function loss(inputs: LayerInputs, options: AttentionOptions, gradOutput: Float32Array): number {
  const { output } = referenceMultiHeadAttention64(inputs, options);
  let sum = 0;
  for (let i = 0; i < output.length; i++) sum += gradOutput[i] * output[i];
  return sum;
}

/**
 * Central differences of the float64 layer, element by element. Perturbations are float32 (the
 * inputs are Float32Arrays): the step actually taken, `x+ - x-`, is divided by, not the one asked for.
 */
function finiteDifferenceCheck(inputs: LayerInputs, options: AttentionOptions, seed: number) {
  const { batch: B, queryLength: Lq, modelDim: M } = inputs.shape;
  const gradOutput = seeded(B * Lq * M, seed);
  const analytic = referenceMultiHeadAttentionBackward64(inputs, gradOutput, options);
  let worst = 0;
  let checked = 0;
  for (const [path, array] of parameters(inputs, options)) {
    const grad = pick(analytic, path);
    expect(grad.length, path).toBe(array.length);
    for (let index = 0; index < array.length; index++) {
      const original = array[index];
      const h = 2 ** -10 * Math.max(1, Math.abs(original));
      array[index] = original + h;
      const plusAt = array[index];
      const plus = loss(inputs, options, gradOutput);
      array[index] = original - h;
      const minusAt = array[index];
      const minus = loss(inputs, options, gradOutput);
      array[index] = original;
      const numeric = (plus - minus) / (plusAt - minusAt);
      const error = Math.abs(numeric - grad[index]) / (1e-6 + Math.abs(grad[index]));
      worst = Math.max(worst, error);
      checked++;
      expect(Math.abs(numeric - grad[index]), `${path}[${index}]`).toBeLessThanOrEqual(
        2e-6 + 1e-5 * Math.abs(grad[index]),
      );
    }
  }
  return { worst, checked };
}

describe('referenceMultiHeadAttentionBackward64 against finite differences', () => {
  it('cross-attention, GQA 4:2, Dv != D, projection biases, bias, ALiBi, softcap, sinks, causal', () => {
    const shape = {
      batch: 2,
      queryLength: 3,
      keyLength: 4,
      modelDim: 4,
      queryHeads: 4,
      kvHeads: 2,
      headDim: 3,
      valueDim: 2,
    };
    const inputs = layer(shape, true, true, 11);
    const options: AttentionOptions = {
      causal: true,
      // broadcast over batch and query rows: its gradient sums them
      bias: { data: seeded(4 * 4, 31), shape: [1, 4, 1, 4] },
      alibiSlopes: new Float32Array([0.25, -0.5, 0.125, 0.75]),
      softcap: 1.5,
      sinks: new Float32Array([0.3, -0.2, 1, 0]),
    };
    const { checked } = finiteDifferenceCheck(inputs, options, 41);
    expect(checked).toBeGreaterThan(150);
  });

  it('self-attention, causal, sliding window, a keyMask that empties every row of one batch', () => {
    const shape = { batch: 2, queryLength: 5, modelDim: 6, queryHeads: 2, headDim: 3 };
    const inputs = layer(shape, false, true, 5);
    const keyMask = new Uint8Array([1, 0, 1, 1, 1, 0, 0, 0, 0, 0]);
    const options: AttentionOptions = { causal: true, slidingWindow: 3, keyMask, scale: 0.7 };
    finiteDifferenceCheck(inputs, options, 17);
    // Batch 1 sees no key: the attention contributes nothing, so x's gradient there is zero
    // (only bo reaches the output).
    const gradients = referenceMultiHeadAttentionBackward64(inputs, seeded(2 * 5 * 6, 17), options);
    for (let i = 5 * 6; i < 2 * 5 * 6; i++) expect(gradients.gradX[i]).toBe(0);
  });

  it('MQA self-attention without biases: no bias gradients are returned', () => {
    const shape = { batch: 1, queryLength: 4, modelDim: 5, queryHeads: 3, kvHeads: 1, headDim: 2 };
    const inputs = layer(shape, false, false, 23);
    finiteDifferenceCheck(inputs, {}, 29);
    const gradients = referenceMultiHeadAttentionBackward64(inputs, seeded(4 * 5, 29));
    expect(Object.keys(gradients.gradWeights).sort()).toEqual(['wk', 'wo', 'wq', 'wv']);
    expect(gradients.gradContext).toBeUndefined();
    expect(gradients.gradBias).toBeUndefined();
    expect(gradients.gradSinks).toBeUndefined();
  });

  it('gradWo is merged^T gradOutput (hand-composed from the float64 forward)', () => {
    // With Wq = 0 every query scores every key equally: the attention output is the mean of the values.
    const shape = { batch: 1, queryLength: 3, modelDim: 2, queryHeads: 1, headDim: 2 };
    const inputs = layer(shape, false, false, 3);
    inputs.weights.wq.fill(0);
    const gradOutput = seeded(3 * 2, 7);
    const v = referenceMatmul64(inputs.x, inputs.weights.wv, 3, 2, 2);
    const mean = [0, 1].map((d) => (v[d] + v[2 + d] + v[4 + d]) / 3);
    const gradients = referenceMultiHeadAttentionBackward64(inputs, gradOutput);
    for (let r = 0; r < 2; r++)
      for (let c = 0; c < 2; c++) {
        const expected = mean[r] * (gradOutput[c] + gradOutput[2 + c] + gradOutput[4 + c]);
        expect(gradients.gradWeights.wo[r * 2 + c]).toBeCloseTo(expected, 12);
      }
  });
});

describe('multiHeadAttentionBackward through a backend', () => {
  const shape = {
    batch: 2,
    queryLength: 4,
    keyLength: 6,
    modelDim: 8,
    queryHeads: 4,
    kvHeads: 2,
    headDim: 3,
    valueDim: 5,
  };
  const options: AttentionOptions = {
    causal: true,
    sinks: new Float32Array([0.5, -1, 0, 2]),
    bias: { data: seeded(2 * 6, 3), shape: [2, 1, 1, 6] },
  };

  it('matches the float64 layer reference on the reference backend (cross, GQA, Dv != D, sinks, bias)', async () => {
    const backend = createReferenceBackend();
    for (const cross of [false, true]) {
      const s = cross ? shape : { ...shape, keyLength: 4 };
      const opts = cross
        ? options
        : { ...options, bias: { data: seeded(2 * 4, 3), shape: [2, 1, 1, 4] as const } };
      const inputs = layer(s, cross, true, 101);
      const gradOutput = seeded(2 * 4 * 8, 102);
      const got = await multiHeadAttentionBackward(backend, inputs, gradOutput, opts);
      const want = referenceMultiHeadAttentionBackward64(inputs, gradOutput, opts);
      const paths = parameters(inputs, opts).map(([path]) => path);
      expect(paths.length).toBe(cross ? 12 : 11);
      for (const path of paths) {
        const g = pick(got, path);
        const r = pick(want, path);
        expect(g).toBeInstanceOf(Float32Array);
        expect(g.length, path).toBe(r.length);
        // A few float32 roundings per element (each matmul and attentionBackward round once).
        for (let i = 0; i < r.length; i++) {
          expect(Math.abs(g[i] - r[i]), `${path}[${i}]`).toBeLessThanOrEqual(1e-6 + 1e-5 * Math.abs(r[i]));
        }
      }
      expect(got.gradContext !== undefined).toBe(cross);
    }
    await backend.dispose();
  });

  it('gives the same bits with the forward saved as with the forward recomputed', async () => {
    const backend = createReferenceBackend();
    const inputs = layer(shape, true, true, 7);
    const gradOutput = seeded(2 * 4 * 8, 8);
    const forward = await multiHeadAttentionForward(backend, inputs, options);
    const fromSaved = await multiHeadAttentionBackward(backend, inputs, gradOutput, options, forward.saved);
    const recomputed = await multiHeadAttentionBackward(backend, inputs, gradOutput, options);
    expect(fromSaved).toEqual(recomputed);
    // the training forward's output is the layer's output
    const plain = referenceMultiHeadAttention64(inputs, options);
    for (let i = 0; i < plain.output.length; i++)
      expect(Math.abs(forward.output[i] - plain.output[i])).toBeLessThan(1e-5);
    expect(forward.lse.length).toBe(2 * 4 * 4);
    await backend.dispose();
  });

  it('rejects a gradOutput of the wrong length or type before calling the backend', async () => {
    let calls = 0;
    const reference = createReferenceBackend();
    const counting = {
      attention: ((...args: Parameters<typeof reference.attention>) => {
        calls++;
        return reference.attention(...args);
      }) as typeof reference.attention,
      attentionBackward: ((...args: Parameters<typeof reference.attentionBackward>) => {
        calls++;
        return reference.attentionBackward(...args);
      }) as typeof reference.attentionBackward,
      matmul: ((...args: Parameters<typeof reference.matmul>) => {
        calls++;
        return reference.matmul(...args);
      }) as typeof reference.matmul,
    };
    const inputs = layer(shape, true, false, 1);
    await expect(
      multiHeadAttentionBackward(counting, inputs, new Float32Array(2 * 4 * 8 - 1), options),
    ).rejects.toMatchObject({
      code: 'invalid-argument',
      argument: 'gradOutput.length',
      message: expect.stringContaining('multiHeadAttentionBackward: gradOutput.length must be 64'),
    });
    await expect(
      multiHeadAttentionBackward(counting, inputs, new Float64Array(64) as unknown as Float32Array, options),
    ).rejects.toMatchObject({ code: 'invalid-argument', argument: 'gradOutput' });
    const forward = await multiHeadAttentionForward(reference, inputs, options);
    await expect(
      multiHeadAttentionBackward(counting, inputs, new Float32Array(64), options, {
        ...forward.saved,
        lse: new Float32Array(3),
      }),
    ).rejects.toMatchObject({ code: 'invalid-argument', argument: 'saved.lse.length' });
    await expect(
      multiHeadAttentionBackward(counting, { ...inputs, context: undefined }, new Float32Array(64), options),
    ).rejects.toMatchObject({ code: 'invalid-argument', argument: 'context' });
    expect(calls).toBe(0);
    await reference.dispose();
  });

  it("rejects 'unsupported' on a backend without the backward feature", async () => {
    const reference = createReferenceBackend();
    const forwardOnly = createBackend({
      name: 'forward-only',
      capabilities: () => ({ ...reference.capabilities, features: ALL_FEATURES }),
      init: async () => {},
      attention: async (problem) => {
        const { output, lse } = referenceAttentionProblem64(problem);
        return { output: Float32Array.from(output), ...(lse && { lse: Float32Array.from(lse) }) };
      },
      matmul: async ({ a, b, bias, shape: { m, k, n } }) =>
        Float32Array.from(referenceMatmul64(a, b, m, k, n, bias)),
      memory: () => ({ hostBytes: 0, deviceBytes: 0 }),
      dispose: async () => {},
    });
    const inputs = layer(shape, true, false, 1);
    await expect(
      multiHeadAttentionBackward(forwardOnly, inputs, new Float32Array(64), options),
    ).rejects.toMatchObject({ code: 'unsupported', argument: 'backward' });
    await forwardOnly.dispose();
    await reference.dispose();
  });
});
