import { referenceAttention64 } from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { createWasmBackend, WASM_TOLERANCE } from '../src/index.js';
import { threadsTestHooks, type WorkerPool } from '../src/threads.js';
import { errorRatio, inputsFor } from './helpers.js';

// Runs in Node and in a cross-origin isolated Chromium page: both have shared memory.
describe('threads on one shared memory', () => {
  it('starts the asked number of threads and says so', async () => {
    const backend = createWasmBackend({ threads: 2 });
    await backend.init();
    expect(backend.capabilities.threads).toBe(2);
    expect(backend.capabilities.engine).toContain('2 threads');
    await backend.dispose();
  });

  it('gives the same bits as one thread, and matches the reference, on a call big enough to split', async () => {
    const shape = { batch: 2, queryHeads: 4, kvHeads: 2, queryLength: 200, keyLength: 257, headDim: 40 };
    const inputs = inputsFor(shape, 7);
    const options = {
      causal: true,
      returnLse: true,
      alibiSlopes: new Float32Array([0.5, 0.25, 0.125, 0.0625]),
    };
    const one = createWasmBackend({ threads: 1 });
    const two = createWasmBackend({ threads: 2 });
    const [a, b] = await Promise.all([one.attention(inputs, options), two.attention(inputs, options)]);
    // 2 x 4 x 200 x 257 x 80 multiply-adds is above the default hand-off threshold: workers ran
    expect(2 * 4 * 200 * 257 * 80).toBeGreaterThan(1 << 22);
    expect(b.output).toEqual(a.output);
    expect(b.lse).toEqual(a.lse);
    const ref = referenceAttention64(inputs, options);
    expect(errorRatio(b.output, ref.output, WASM_TOLERANCE.atol, WASM_TOLERANCE.rtol)).toBeLessThanOrEqual(1);
    await Promise.all([one.dispose(), two.dispose()]);
  });

  it('serialises concurrent calls that share the workers', async () => {
    const backend = createWasmBackend({ threads: 2, queryBlock: 16, parallelMinWork: 0 });
    const calls = [1, 2, 3, 4, 5, 6].map((seed) => {
      const shape = { batch: 1, queryHeads: 2, queryLength: 40 + seed * 9, headDim: 16 };
      return { inputs: inputsFor(shape, seed), options: { causal: seed % 2 === 0 } };
    });
    const results = await Promise.all(calls.map((c) => backend.attention(c.inputs, c.options)));
    results.forEach((result, i) => {
      const ref = referenceAttention64(calls[i].inputs, calls[i].options);
      expect(
        errorRatio(result.output, ref.output, WASM_TOLERANCE.atol, WASM_TOLERANCE.rtol),
      ).toBeLessThanOrEqual(1);
    });
    await backend.dispose();
  });

  it('releases its memory and workers on dispose', async () => {
    const backend = createWasmBackend({ threads: 2 });
    const before = backend.memory().hostBytes;
    await backend.attention(inputsFor({ batch: 1, queryHeads: 2, queryLength: 300, headDim: 64 }));
    expect(backend.memory().hostBytes).toBeGreaterThan(0);
    await backend.dispose();
    expect(backend.memory().hostBytes).toBe(before);
    await expect(
      backend.attention(inputsFor({ batch: 1, queryHeads: 1, queryLength: 2, headDim: 4 })),
    ).rejects.toMatchObject({
      code: 'disposed',
    });
  });
});

describe('a worker that dies', () => {
  const shape = { batch: 1, queryHeads: 4, queryLength: 96, keyLength: 130, headDim: 32 };
  const inputs = inputsFor(shape, 3);
  const options = { causal: true, returnLse: true };
  const ref = referenceAttention64(inputs, options);
  const matchesReference = (result: { output: Float32Array; lse?: Float32Array }) => {
    expect(
      errorRatio(result.output, ref.output, WASM_TOLERANCE.atol, WASM_TOLERANCE.rtol),
    ).toBeLessThanOrEqual(1);
    expect(
      errorRatio(result.lse ?? [], ref.lse ?? [], WASM_TOLERANCE.atol, WASM_TOLERANCE.rtol),
    ).toBeLessThanOrEqual(1);
  };

  async function threeThreads() {
    const pools: WorkerPool[] = [];
    threadsTestHooks.poolStarted = (pool) => pools.push(pool);
    try {
      // small tiles and no hand-off threshold: every call really splits across the workers
      const backend = createWasmBackend({ threads: 3, queryBlock: 16, parallelMinWork: 0 });
      await backend.init();
      expect(pools).toHaveLength(1);
      return { backend, pool: pools[0] };
    } finally {
      threadsTestHooks.poolStarted = null;
    }
  }

  it('fails the call in flight once with a device error naming the worker; the next call is right', async () => {
    const { backend, pool } = await threeThreads();
    matchesReference(await backend.attention(inputs, options));
    pool.failNextRun(1);
    await expect(backend.attention(inputs, options)).rejects.toMatchObject({
      name: 'AttnkitError',
      code: 'device',
      argument: 'worker 2',
      message: expect.stringMatching(/worker 2 of 2 .*(died|crashed)/),
    });
    // replaced: this and later calls run on three threads again and give the right answer
    for (let i = 0; i < 3; i++) matchesReference(await backend.attention(inputs, options));
    expect(backend.capabilities.threads).toBe(3);
    await backend.dispose();
  });

  it('replaces a worker killed while idle; later calls give the bits of one thread', async () => {
    const { backend, pool } = await threeThreads();
    const one = createWasmBackend({ threads: 1, queryBlock: 16 });
    const expected = await one.attention(inputs, options);
    const before = backend.memory().hostBytes;
    for (let round = 0; round < 4; round++) {
      await pool.terminateWorker(round % 2);
      const result = await backend.attention(inputs, options);
      expect(result.output).toEqual(expected.output);
      expect(result.lse).toEqual(expected.lse);
    }
    // a new worker reuses the dead one's stack region: no memory grows per replacement
    expect(backend.memory().hostBytes).toBe(before);
    await Promise.all([backend.dispose(), one.dispose()]);
  });

  it('replaces a worker whose kernel traps (its stack pointer may be left mid-call)', async () => {
    const { backend, pool } = await threeThreads();
    // parameters far past the end of memory: each worker's kernel traps on its first read
    await expect(pool.run(0xfffffff0)).rejects.toMatchObject({
      code: 'device',
      argument: 'worker 1',
      message: expect.stringMatching(/worker 1 of 2 failed during the call/),
    });
    matchesReference(await backend.attention(inputs, options));
    await backend.dispose();
  });
});
