import { describe, expect, it } from 'vitest';
import {
  type AttentionProblem,
  AttnkitError,
  type BackendCapabilities,
  createBackend,
  createReferenceBackend,
  referenceAttention64,
} from '../src/index.js';

const inputs = () => ({
  q: new Float32Array([1, 2]),
  k: new Float32Array([1, 0, 0, 1]),
  v: new Float32Array([3, 4]),
  shape: { batch: 1, queryHeads: 1, queryLength: 1, keyLength: 2, headDim: 2, valueDim: 1 },
});

function spyBackend(capabilities: Partial<BackendCapabilities> = {}) {
  const log: string[] = [];
  const caps: BackendCapabilities = {
    features: ['causal', 'crossAttention', 'valueDim'],
    limits: { keyLength: 4 },
    tolerance: { atol: 0, rtol: 0 },
    deterministic: true,
    engine: 'spy',
    threads: 1,
    notes: [],
    ...capabilities,
  };
  const backend = createBackend({
    name: 'spy',
    capabilities: () => caps,
    init: async () => {
      log.push('init');
    },
    attention: async (problem: AttentionProblem) => {
      log.push('attention');
      return { output: new Float32Array(problem.shape.queryLength * problem.shape.valueDim) };
    },
    matmul: async () => new Float32Array(1),
    memory: () => ({ hostBytes: 0, deviceBytes: 0 }),
    dispose: async () => {
      log.push('dispose');
    },
  });
  return { backend, log };
}

describe('createBackend', () => {
  it('validates before init: bad input never acquires anything', async () => {
    const { backend, log } = spyBackend();
    await expect(backend.attention({ ...inputs(), q: new Float32Array(3) })).rejects.toMatchObject({
      code: 'invalid-argument',
      argument: 'q.length',
    });
    expect(log).toEqual([]);
  });

  it('initialises lazily, once', async () => {
    const { backend, log } = spyBackend();
    await Promise.all([backend.attention(inputs()), backend.attention(inputs())]);
    expect(log).toEqual(['init', 'attention', 'attention']);
  });

  it('rejects an unsupported feature and a size over a limit with "unsupported"', async () => {
    const { backend, log } = spyBackend();
    await expect(backend.attention(inputs(), { sinks: new Float32Array(1) })).rejects.toMatchObject({
      code: 'unsupported',
      argument: 'sinks',
    });
    const long = {
      q: new Float32Array(2),
      k: new Float32Array(10),
      v: new Float32Array(5),
      shape: { ...inputs().shape, keyLength: 5 },
    };
    await expect(backend.attention(long)).rejects.toThrow(
      /shape\.keyLength must be at most 4 on backend "spy", got 5/,
    );
    expect(log).toEqual(['init']);
  });

  it('waits for calls in flight on dispose, then rejects new calls with "disposed"', async () => {
    const { backend, log } = spyBackend();
    const running = backend.attention(inputs());
    await backend.dispose();
    await expect(running).resolves.toBeDefined();
    expect(log).toEqual(['init', 'attention', 'dispose']);
    await expect(backend.attention(inputs())).rejects.toBeInstanceOf(AttnkitError);
    await expect(backend.attention(inputs())).rejects.toHaveProperty('code', 'disposed');
    await expect(backend.init()).rejects.toThrow(/disposed/);
  });

  it('a failed init can be retried', async () => {
    let attempts = 0;
    const backend = createBackend({
      name: 'flaky',
      capabilities: () => ({
        features: [],
        limits: {},
        tolerance: { atol: 0, rtol: 0 },
        deterministic: true,
        engine: 'x',
        threads: 1,
        notes: [],
      }),
      init: async () => {
        attempts++;
        if (attempts === 1) throw new AttnkitError('unavailable', 'flaky: no device yet');
      },
      attention: async () => ({ output: new Float32Array(1) }),
      matmul: async () => new Float32Array(1),
      memory: () => ({ hostBytes: 0, deviceBytes: 0 }),
      dispose: async () => {},
    });
    await expect(backend.init()).rejects.toMatchObject({ code: 'unavailable' });
    await expect(backend.init()).resolves.toBeUndefined();
  });
});

describe('reference backend', () => {
  it('rounds the float64 reference to float32', async () => {
    const backend = createReferenceBackend();
    const result = await backend.attention(inputs(), { returnLse: true });
    const exact = referenceAttention64(inputs(), { returnLse: true });
    expect(result.output[0]).toBe(Math.fround(exact.output[0]));
    expect(result.lse![0]).toBe(Math.fround(exact.lse![0]));
    await backend.dispose();
  });
});
