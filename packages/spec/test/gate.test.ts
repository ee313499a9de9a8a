// The one gate: the layer's dispatch (a backend's own layer, else the composition) and the
// device-resident calls (validated by the host rules from a handle's element count, capabilities
// checked, init lazy, in flight tracked, `disposed` after dispose), on small hand-written backends.
import { describe, expect, it } from 'vitest';
import {
  ALL_FEATURES,
  AttnkitError,
  type BackendCapabilities,
  type BackendImplementation,
  createReferenceBackend,
  type DeviceImplementation,
  type DeviceTensor,
  describeValue,
  type LayerInputs,
  type LayerProblem,
  multiHeadAttention,
  openDeviceGate,
  openGate,
  referenceAttention64,
  referenceAttentionProblem64,
  referenceMatmul64,
  referenceMultiHeadAttention64,
  roundArrayToF16,
  roundToF16,
} from '../src/index.js';

const invalidArgumentOf = (context: string, argument: string, expected: string, actual: unknown) =>
  new AttnkitError('invalid-argument', `${context}: ${argument} must be ${expected}`, {
    argument,
    expected,
    actual: describeValue(actual),
  });

const capabilities = (features = ALL_FEATURES, headDim?: number): BackendCapabilities => ({
  features,
  limits: headDim === undefined ? {} : { headDim },
  tolerance: { atol: 1e-6, rtol: 1e-5 },
  deterministic: true,
  engine: 'test',
  threads: 1,
  notes: [],
});

/** A float64-reference implementation that counts what it was asked to run. */
function counted(extra: Partial<BackendImplementation> = {}, caps = capabilities()) {
  const calls: string[] = [];
  let inits = 0;
  const implementation: BackendImplementation = {
    name: 'counted',
    capabilities: () => caps,
    init: async () => {
      inits++;
    },
    attention: async (problem) => {
      calls.push('attention');
      const r = referenceAttentionProblem64(problem);
      return { output: Float32Array.from(r.output), ...(r.lse && { lse: Float32Array.from(r.lse) }) };
    },
    matmul: async ({ a, b, bias, shape }) => {
      calls.push('matmul');
      return Float32Array.from(referenceMatmul64(a, b, shape.m, shape.k, shape.n, bias));
    },
    memory: () => ({ hostBytes: 0, deviceBytes: 0 }),
    dispose: async () => {},
    ...extra,
  };
  return { implementation, calls, inits: () => inits };
}

// Values on a 1/8 grid: float32 projections of them are exact, so the composed layer equals the
// float64 layer to float32 rounding of the attention.
const grid = (n: number, seed: number) =>
  Float32Array.from({ length: n }, (_, i) => (((i * 7 + seed) % 9) - 4) / 8);
const M = 4;
const layerInputs = (): LayerInputs => ({
  x: grid(2 * 3 * M, 1),
  shape: { batch: 2, queryLength: 3, modelDim: M, queryHeads: 2, kvHeads: 1, headDim: 2 },
  weights: { wq: grid(M * 4, 2), wk: grid(M * 2, 3), wv: grid(M * 2, 4), wo: grid(4 * M, 5), bo: grid(M, 6) },
});

describe('the layer goes through the gate', () => {
  it("composes over the implementation's matmul and attention when it has no layer", async () => {
    const { implementation, calls } = counted();
    const backend = openGate(implementation).backend;
    const inputs = layerInputs();
    const got = await multiHeadAttention(backend, inputs, { causal: true });
    const ref = referenceMultiHeadAttention64(inputs, { causal: true });
    for (let i = 0; i < ref.output.length; i++)
      expect(Math.abs(got.output[i] - ref.output[i])).toBeLessThan(1e-6);
    expect(calls.sort()).toEqual(['attention', 'matmul', 'matmul', 'matmul', 'matmul']);
  });

  it('dispatches to the implementation’s layer with the resolved problem, validated once before init', async () => {
    const seen: LayerProblem[] = [];
    const { implementation, calls, inits } = counted({
      layer: async (problem) => {
        seen.push(problem);
        return { output: new Float32Array(problem.x.length) };
      },
    });
    const backend = openGate(implementation).backend;
    const inputs = layerInputs();
    const bad = multiHeadAttention(backend, { ...inputs, x: new Float32Array(5) });
    await expect(bad).rejects.toMatchObject({ code: 'invalid-argument', argument: 'x.length' });
    expect(inits()).toBe(0);
    const pending = backend.multiHeadAttention(inputs, { causal: true });
    inputs.x.fill(99); // the gate copied the inputs while init was pending
    await pending;
    expect(calls).toEqual([]);
    expect(seen).toHaveLength(1);
    const [problem] = seen;
    expect(problem.x).toEqual(layerInputs().x);
    expect(problem.context).toBeNull();
    expect(problem.weights.bq).toBeNull();
    expect(problem.attentionShape).toEqual({
      batch: 2,
      queryHeads: 2,
      kvHeads: 1,
      queryLength: 3,
      keyLength: 3,
      headDim: 2,
      valueDim: 2,
    });
    expect(problem.options.causal).toBe(true);
    expect(problem.options.scale).toBeCloseTo(1 / Math.sqrt(2), 15);
  });

  it("checks the layer's attention against the capabilities before the layer runs", async () => {
    const { implementation, calls } = counted(
      { layer: async () => ({ output: new Float32Array(0) }) },
      capabilities(ALL_FEATURES.filter((f) => f !== 'groupedQuery')),
    );
    const backend = openGate(implementation).backend;
    await expect(backend.multiHeadAttention(layerInputs())).rejects.toMatchObject({
      code: 'unsupported',
      argument: 'groupedQuery',
    });
    expect(calls).toEqual([]);
  });

  it('an object that is not a gated backend gets the composition over its public methods', async () => {
    const reference = createReferenceBackend();
    const inputs = layerInputs();
    const plain = { attention: reference.attention, matmul: reference.matmul };
    const got = await multiHeadAttention(plain, inputs);
    expect(Array.from(got.output)).toEqual(Array.from((await reference.multiHeadAttention(inputs)).output));
    await reference.dispose();
  });
});

/** A device handle of the test backend: host memory standing in for device memory. */
interface FakeTensor extends DeviceTensor {
  readonly data: Float32Array;
  readonly elements: number;
}

function fakeDevice() {
  const held = new Set<Float32Array>();
  let released = 0;
  const device: DeviceImplementation<FakeTensor> = {
    checkTensor(context, argument, value) {
      if (typeof value !== 'object' || value === null || !('data' in value))
        throw invalidArgumentOf(context, argument, 'a FakeTensor', value);
      const { data, elements } = value as FakeTensor;
      if (
        typeof elements !== 'number' ||
        !Number.isInteger(elements) ||
        elements < 0 ||
        elements > data.length
      )
        throw invalidArgumentOf(
          context,
          `${argument}.elements`,
          `an integer in [0, ${data.length}]`,
          elements,
        );
      const { dtype } = value as FakeTensor;
      return { data, elements, ...(dtype !== undefined && { dtype }) };
    },
    // A float16 tensor holds the binary16 values, widened (what the device would compute with).
    upload: async (data, dtype) => {
      const copy = dtype === 'float16' ? roundArrayToF16(data) : data.slice();
      held.add(copy);
      return { data: copy, elements: data.length, dtype };
    },
    read: async (tensor) => tensor.data.slice(0, tensor.elements),
    attention: async (problem) => {
      const r = referenceAttentionProblem64({
        ...problem,
        q: problem.q.data.subarray(0, problem.q.elements),
        k: problem.k.data.subarray(0, problem.k.elements),
        v: problem.v.data.subarray(0, problem.v.elements),
      });
      return { output: { data: Float32Array.from(r.output), elements: r.output.length } };
    },
    matmul: async ({ a, b, bias, shape }) => {
      const out = referenceMatmul64(a.data, b.data, shape.m, shape.k, shape.n, bias?.data ?? null);
      return { data: Float32Array.from(out), elements: out.length };
    },
    release: (tensor) => {
      if (held.delete(tensor.data)) released++;
    },
  };
  return { device, held, released: () => released };
}

describe('device tensors go through the same gate', () => {
  const shape = { batch: 1, queryHeads: 2, kvHeads: 1, queryLength: 3, headDim: 2 };

  it('validates by the host rules with the element count for a length, before init', async () => {
    const { implementation, inits } = counted();
    const { device } = fakeDevice();
    const backend = openDeviceGate(implementation, device).backend;
    const t = (elements: number) => ({ data: new Float32Array(64), elements });
    const cases: [Promise<unknown>, string, string][] = [
      [
        backend.attentionBuffers({ q: t(12), k: t(5), v: t(6), shape }),
        'k.elements',
        '6 (B*Hkv*Lk*D = 1*1*3*2; shape.keyLength defaults to shape.queryLength)',
      ],
      [
        backend.attentionBuffers({ q: t(12), k: t(6), v: t(6), shape, layout: 'hbld' as 'bhld' }),
        'layout',
        '"bhld" or "blhd"',
      ],
      [
        backend.attentionBuffers({ q: t(12), k: t(6), v: t(6), shape }, { sinks: new Float32Array(1) }),
        'options.sinks.length',
        '2 (Hq, one per query head)',
      ],
      [
        backend.matmulBuffers({ a: t(6), b: t(5), shape: { m: 2, k: 3, n: 2 } }),
        'b.elements',
        '6 (k*n = 3*2)',
      ],
      [backend.read({ data: new Float32Array(2), elements: 3 }), 'tensor.elements', 'an integer in [0, 2]'],
      [backend.upload([1, 2] as unknown as Float32Array), 'data', 'a Float32Array'],
    ];
    for (const [call, argument, expected] of cases)
      await expect(call).rejects.toMatchObject({ code: 'invalid-argument', argument, expected });
    expect(inits()).toBe(0);
  });

  it('runs after a lazy init, checks capabilities, chains on the device, rejects after dispose', async () => {
    const { implementation, inits } = counted({}, capabilities(ALL_FEATURES, 1));
    const { device, held, released } = fakeDevice();
    const backend = openDeviceGate(implementation, device).backend;
    const q = await backend.upload(grid(12, 1));
    expect(inits()).toBe(1);
    const kv = await backend.upload(grid(6, 2));
    await expect(backend.attentionBuffers({ q, k: kv, v: kv, shape })).rejects.toMatchObject({
      code: 'unsupported',
      argument: 'shape.headDim',
    });
    const projected = await backend.matmulBuffers({ a: q, b: kv, shape: { m: 2, k: 6, n: 1 } });
    expect(Array.from(await backend.read(projected))).toEqual(
      Array.from(referenceMatmul64(grid(12, 1), grid(6, 2), 2, 6, 1, null)),
    );
    backend.release(q);
    backend.release(kv);
    expect(released()).toBe(2);
    expect(held.size).toBe(0);
    expect(() => backend.release(5 as unknown as typeof q)).toThrow(
      expect.objectContaining({ argument: 'tensor' }),
    );
    const running = backend.upload(grid(4, 3));
    const disposing = backend.dispose();
    await expect(running).resolves.toMatchObject({ elements: 4 }); // dispose waited for it
    await disposing;
    await expect(backend.upload(grid(4, 3))).rejects.toMatchObject({ code: 'disposed' });
    await expect(backend.read(projected)).rejects.toMatchObject({ code: 'disposed' });
  });
});

describe('float16 device tensors (deviceF16Storage)', () => {
  const shape = { batch: 1, queryHeads: 1, queryLength: 2, headDim: 2 };
  const F16_DEVICE = [...ALL_FEATURES, 'deviceF16Storage' as const];
  const t = (elements: number, dtype?: unknown) =>
    ({ data: new Float32Array(8), elements, dtype }) as unknown as FakeTensor;

  it('checks each dtype against the precision, and float32 for the matmul, before init', async () => {
    const { implementation, inits } = counted({}, capabilities(F16_DEVICE));
    const backend = openDeviceGate(implementation, fakeDevice().device).backend;
    const f16 = { precision: 'f16-storage' } as const;
    const cases: [Promise<unknown>, string, string][] = [
      [
        backend.attentionBuffers({ q: t(4, 'float16'), k: t(4), v: t(4, 'float16'), shape }, f16),
        'k.dtype',
        "'float16' (options.precision 'f16-storage' reads binary16 tensors: upload with { dtype: 'float16' })",
      ],
      [
        backend.attentionBuffers({ q: t(4, 'float16'), k: t(4), v: t(4), shape }),
        'q.dtype',
        "'float32' (a float16 tensor needs options.precision 'f16-storage')",
      ],
      [
        backend.attentionBuffers({ q: t(4, 'bfloat16'), k: t(4), v: t(4), shape }),
        'q.dtype',
        "'float32' or 'float16'",
      ],
      [
        backend.matmulBuffers({ a: t(4), b: t(4, 'float16'), shape: { m: 2, k: 2, n: 2 } }),
        'b.dtype',
        "'float32' (the matmul reads float32 tensors)",
      ],
      [
        backend.upload(new Float32Array(2), { dtype: 'float64' as 'float16' }),
        'options.dtype',
        "'float32' or 'float16'",
      ],
      [
        backend.upload(new Float32Array([1, -65520]), { dtype: 'float16' }),
        'data',
        'finite values below 65520 in magnitude (binary16 storage rounds larger ones to infinity)',
      ],
      [backend.upload(new Float32Array(2), { type: 'float16' } as never), 'options.type', 'one of dtype'],
    ];
    for (const [call, argument, expected] of cases)
      await expect(call).rejects.toMatchObject({ code: 'invalid-argument', argument, expected });
    expect(inits()).toBe(0);
  });

  it('needs deviceF16Storage for a float16 upload and for attentionBuffers on float16 tensors', async () => {
    const { implementation } = counted({}, capabilities(ALL_FEATURES));
    const backend = openDeviceGate(implementation, fakeDevice().device).backend;
    await expect(backend.upload(new Float32Array(4), { dtype: 'float16' })).rejects.toMatchObject({
      code: 'unsupported',
      argument: 'options.dtype',
    });
    await expect(
      backend.attentionBuffers(
        { q: t(4, 'float16'), k: t(4, 'float16'), v: t(4, 'float16'), shape },
        { precision: 'f16-storage' },
      ),
    ).rejects.toMatchObject({ code: 'unsupported', argument: 'deviceF16Storage' });
  });

  it('stores the rounded values and hands attentionBuffers the float16 tensors', async () => {
    const { implementation } = counted({}, capabilities(F16_DEVICE));
    const backend = openDeviceGate(implementation, fakeDevice().device).backend;
    // 1 + 2^-12 rounds down to 1; 3 + 2^-10 is a tie that rounds to even (3); 0.1 to roundToF16(0.1)
    const q = await backend.upload(new Float32Array([1 + 2 ** -12, 3 + 2 ** -10, 0.1, -2]), {
      dtype: 'float16',
    });
    expect(q.dtype).toBe('float16');
    expect(Array.from(await backend.read(q))).toEqual([1, 3, Math.fround(roundToF16(0.1)), -2]);
    expect(Math.fround(roundToF16(0.1))).not.toBe(Math.fround(0.1));
    const plain = await backend.upload(new Float32Array([0.5, 0.25, -1, 2]));
    expect(plain.dtype).toBe('float32');
    const out = await backend.attentionBuffers({ q, k: q, v: q, shape }, { precision: 'f16-storage' });
    const rounded = new Float32Array([1, 3, roundToF16(0.1), -2]);
    const expected = referenceAttention64({ q: rounded, k: rounded, v: rounded, shape }).output;
    expect(Array.from(await backend.read(out.output))).toEqual(Array.from(Float32Array.from(expected)));
  });
});
