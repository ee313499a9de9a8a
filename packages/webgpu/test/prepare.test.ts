// prepare(): the pipelines of a workload are compiled ahead of time, so the first real call compiles
// nothing. Counted at the device: createComputePipelineAsync is wrapped on a device the test owns
// (pipelines are cached per device, so a fresh device starts with none).
import { describe, expect, expectTypeOf, it } from 'vitest';
import { createWebGpuBackend, type WebGpuWorkload } from '../src/index.js';
import { cleanupAfterEach, inputsFor, ownDevice } from './helpers.js';

const { track, defer } = cleanupAfterEach();

async function countingBackend() {
  const device = await ownDevice();
  let compiled = 0;
  const create = device.createComputePipelineAsync.bind(device);
  device.createComputePipelineAsync = (descriptor: GPUComputePipelineDescriptor) => {
    compiled++;
    return create(descriptor);
  };
  defer(() => device.destroy());
  const backend = track(createWebGpuBackend({ device }));
  return { backend, compiled: () => compiled };
}

describe('prepare', () => {
  it('compiles the pipelines a workload needs, so the first call compiles nothing', async () => {
    const { backend, compiled } = await countingBackend();
    const shape = { batch: 1, queryHeads: 2, queryLength: 8, headDim: 16 };
    await backend.prepare([{ shape, returnWeights: true, matmul: true }]);
    const prepared = compiled();
    expect(prepared).toBe(4); // attention + weights pass + matmul with and without bias
    const result = await backend.attention(inputsFor(shape), { causal: true, returnWeights: true });
    expect(result.weights.length).toBe(2 * 8 * 8);
    await backend.matmul({ a: new Float32Array(4), b: new Float32Array(4), shape: { m: 2, k: 2, n: 2 } });
    expect(compiled()).toBe(prepared);
    // The count is real: a head size in another capacity class needs a pipeline of its own.
    await backend.attention(inputsFor({ batch: 1, queryHeads: 1, queryLength: 4, headDim: 128 }));
    expect(compiled()).toBeGreaterThan(prepared);
  });

  it('compiles the backward pipelines too, so a first forward + backward compiles nothing', async () => {
    const { backend, compiled } = await countingBackend();
    const shape = { batch: 1, queryHeads: 2, kvHeads: 1, queryLength: 9, keyLength: 12, headDim: 16 };
    await backend.prepare([{ shape, backward: true }]);
    const prepared = compiled();
    // attention + delta, dQ and dK/dV (each with and without the logit terms' code), gradBias, gradSinks
    expect(prepared).toBe(8);
    const inputs = inputsFor(shape);
    // Every option at once: options travel in the uniform block, not in the pipelines.
    const options = {
      causal: true,
      softcap: 5,
      bias: { data: new Float32Array(12), shape: [1, 1, 1, 12] as const },
      sinks: new Float32Array([0, 1]),
    };
    const forward = await backend.attention(inputs, { ...options, returnLse: true });
    const gradOutput = new Float32Array(forward.output.length).fill(1);
    const grads = await backend.attentionBackward(
      { ...inputs, output: forward.output, lse: forward.lse, gradOutput },
      options,
    );
    expect(grads.gradBias.length).toBe(12);
    expect(grads.gradSinks.length).toBe(2);
    expect(compiled()).toBe(prepared);
  });

  it('compiles only the backward logit-term variant a workload names', async () => {
    const { backend, compiled } = await countingBackend();
    // Lq 9: the scalar forward, one pipeline for both; the backward's dQ and dK/dV have one per variant.
    const shape = { batch: 1, queryHeads: 2, queryLength: 9, headDim: 16 };
    await backend.prepare([{ shape, backward: true, logitTerms: 'dot' }]);
    expect(compiled()).toBe(6); // attention + delta, dQ, dK/dV, gradBias and gradSinks
    const inputs = inputsFor(shape);
    const step = async (options: { causal?: boolean; softcap?: number; sinks?: Float32Array }) => {
      const forward = await backend.attention(inputs, { ...options, returnLse: true });
      const gradOutput = new Float32Array(forward.output.length).fill(1);
      return backend.attentionBackward(
        { ...inputs, output: forward.output, lse: forward.lse, gradOutput },
        options,
      );
    };
    await step({ causal: true, sinks: new Float32Array([0, 1]) });
    expect(compiled()).toBe(6); // masks and sinks are in both variants
    await step({ softcap: 5 });
    expect(compiled()).toBe(8); // dQ and dK/dV with the terms, compiled by the call: the count is real
  });

  it("compiles the f16-storage kernels for precision 'f16-storage', apart from the f32 ones", async () => {
    const { backend, compiled } = await countingBackend();
    // Lq 20: the tiled forward, with and without the logit terms' code (options are not part of a
    // workload); the weights pass too; all unpacking binary16 pairs.
    const shape = { batch: 1, queryHeads: 2, queryLength: 20, headDim: 16 };
    await backend.prepare([{ shape, returnWeights: true, precision: 'f16-storage' }]);
    const prepared = compiled();
    expect(prepared).toBe(3);
    await backend.attention(inputsFor(shape), { precision: 'f16-storage', returnWeights: true });
    await backend.attention(inputsFor(shape), { precision: 'f16-storage', returnWeights: true, softcap: 5 });
    expect(compiled()).toBe(prepared);
    // The f32 kernels are other pipelines: the count is real.
    await backend.attention(inputsFor(shape));
    expect(compiled()).toBe(prepared + 1);
  });

  it('compiles the float16 row padding for an odd head size, so float16 tensors of it compile nothing', async () => {
    const { backend, compiled } = await countingBackend();
    const shape = { batch: 1, queryHeads: 1, queryLength: 4, headDim: 5 };
    await backend.prepare([{ shape, precision: 'f16-storage' }]);
    const prepared = compiled();
    expect(prepared).toBe(2); // the (scalar) f16-storage forward and the row padding
    const inputs = inputsFor(shape);
    const [q, k, v] = await Promise.all(
      [inputs.q, inputs.k, inputs.v].map((a) => backend.upload(a, { dtype: 'float16' })),
    );
    const out = await backend.attentionBuffers({ q, k, v, shape }, { precision: 'f16-storage' });
    expect((await backend.read(out.output)).length).toBe(4 * 5);
    expect(compiled()).toBe(prepared);
  });

  it('compiles only the logit-term variant a workload names', async () => {
    // Lq 20: the tiled forward, whose two variants differ by the softcap/bias/ALiBi code
    const shape = { batch: 1, queryHeads: 2, queryLength: 20, headDim: 16 };
    const dot = await countingBackend();
    await dot.backend.prepare([{ shape, logitTerms: 'dot' }]);
    expect(dot.compiled()).toBe(1);
    await dot.backend.attention(inputsFor(shape), { causal: true, sinks: new Float32Array([0, 1]) });
    expect(dot.compiled()).toBe(1); // masks and sinks are in both variants
    await dot.backend.attention(inputsFor(shape), { softcap: 5 });
    expect(dot.compiled()).toBe(2); // the other variant, compiled by the call: the count is real
    const all = await countingBackend();
    await all.backend.prepare([{ shape, logitTerms: 'all' }]);
    expect(all.compiled()).toBe(1);
    await all.backend.attention(inputsFor(shape), { softcap: 5, alibiSlopes: new Float32Array([0.5, 0.25]) });
    expect(all.compiled()).toBe(1);
    await all.backend.attention(inputsFor(shape));
    expect(all.compiled()).toBe(2);
  });

  it('rejects a bad workload with invalid-argument before acquiring anything', async () => {
    const backend = track(createWebGpuBackend());
    const bad: unknown[] = [
      [{ shape: { batch: 1, queryHeads: 0, queryLength: 1, headDim: 4 } }],
      [{ shape: { batch: 1, queryHeads: 1, queryLength: 1, headDim: 4 }, returnWeight: true }],
      [{ shape: { batch: 1, queryHeads: 1, queryLength: 1, headDim: 4 }, matmul: 'yes' }],
      [{ shape: { batch: 1, queryHeads: 1, queryLength: 1, headDim: 4 }, backward: 1 }],
      [{ shape: { batch: 1, queryHeads: 1, queryLength: 1, headDim: 4 }, precision: 'f16' }],
      [{ shape: { batch: 1, queryHeads: 1, queryLength: 1, headDim: 4 }, logitTerms: 'softcap' }],
      'not an array',
    ];
    for (const workloads of bad) {
      await expect(backend.prepare(workloads as WebGpuWorkload[])).rejects.toMatchObject({
        code: 'invalid-argument',
      });
    }
    const shape1 = { batch: 1, queryHeads: 1, queryLength: 1, headDim: 4 };
    await expect(
      backend.prepare([{ shape: shape1, logitTerms: 'none' } as unknown as WebGpuWorkload]),
    ).rejects.toMatchObject({
      argument: 'workloads[0].logitTerms',
      expected: "one of 'all', 'dot'",
      actual: 'none',
    });
    await expect(
      backend.prepare([{ shape: shape1, logitTerm: 'dot' } as unknown as WebGpuWorkload]),
    ).rejects.toMatchObject({
      argument: 'workloads[0].logitTerm',
      expected: expect.stringContaining('logitTerms'),
    });
    expect(backend.memory().deviceBytes).toBe(0);
    await backend.dispose();
    const shape = { batch: 1, queryHeads: 1, queryLength: 1, headDim: 4 };
    await expect(backend.prepare([{ shape }])).rejects.toMatchObject({ code: 'disposed' });
    expectTypeOf(backend.prepare).parameter(0).toEqualTypeOf<readonly WebGpuWorkload[]>();
  });
});
