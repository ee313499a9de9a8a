import { type AttentionBackend, AttnkitError, createReferenceBackend } from '@attnkit/spec';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { resolveConformanceOptions, runConformance } from '../src/index.js';
import { ignoringBackend } from './broken.js';

describe('capabilities decide the expectation', () => {
  it('missing features and declared limits turn cases into unsupported checks, and they pass', async () => {
    const report = await runConformance(
      () =>
        ignoringBackend(
          ['sinks', 'groupedQuery', 'returnWeights'],
          { headDim: 64, queryLength: 100, batch: 2, tensorElements: 4096 },
          true,
        ),
      { seed: 5 },
    );
    const failures = report.cases.filter((c) => c.status === 'failed').map((c) => `${c.id}: ${c.message}`);
    expect(failures).toEqual([]);
    const byId = new Map(report.cases.map((c) => [c.id, c]));
    expect(byId.get('options/sinks')).toMatchObject({ status: 'passed', expectation: 'reject-unsupported' });
    expect(byId.get('heads/gqa-4-2')).toMatchObject({ status: 'passed', expectation: 'reject-unsupported' });
    expect(byId.get('sizes/L1-D256')).toMatchObject({ status: 'passed', expectation: 'reject-unsupported' });
    expect(byId.get('sizes/L129-D1')).toMatchObject({ status: 'passed', expectation: 'reject-unsupported' });
    expect(byId.get('options/causal')).toMatchObject({ status: 'passed', expectation: 'match-reference' });
    for (const key of ['headDim', 'queryLength', 'batch', 'tensorElements']) {
      expect(byId.get(`limits/${key}`), key).toMatchObject({
        status: 'passed',
        expectation: 'reject-unsupported',
      });
    }
    // valueDim has no declared limit: its large shape (Dv 4096) breaks tensorElements, so it must reject
    expect(byId.get('limits/valueDim')).toMatchObject({
      status: 'passed',
      expectation: 'reject-unsupported',
    });
  });

  it('a backend that declares a limit but ignores it fails the limit case', async () => {
    const report = await runConformance(() => ignoringBackend([], { headDim: 8 }, false), {
      filter: 'limits/headDim',
    });
    expect(report.cases[0].status).toBe('failed');
  });
});

describe('maxWork', () => {
  it('omits cases that cannot shrink and reduces those that can, always saying why', async () => {
    const report = await runConformance(createReferenceBackend, {
      maxWork: 1e6,
      filter: /^(sizes|memory|random)\//,
      seed: 3,
    });
    const byId = new Map(report.cases.map((c) => [c.id, c]));
    const big = byId.get('sizes/L129-D256');
    expect(big?.status).toBe('omitted');
    expect(big?.note).toMatch(/above maxWork 1000000/);
    expect(byId.get('sizes/L7-D3')?.status).toBe('passed');
    const random = byId.get('random/attention');
    expect(random).toMatchObject({ status: 'passed', reduced: true });
    expect(random?.note).toMatch(/runs instead of 60/);
    // leaks are per call: the memory cases keep their 1000 calls at a tiny size
    expect(byId.get('memory/repeated-attention')).toMatchObject({ status: 'passed', reduced: true });
    expect(byId.get('memory/repeated-attention')?.note).toMatch(/tiny .* calls instead of decode/);
    expect(report.totals.failed).toBe(0);
    expect(report.totals.omitted).toBeGreaterThan(0);
    expect(report.totals.reduced).toBeGreaterThan(0);
    expect(report.options.maxWork).toBe(1e6);
  });

  it('shrinks the repeated-call cases to fewer tiny calls, or omits them, saying why', async () => {
    const report = await runConformance(createReferenceBackend, { maxWork: 20_000, filter: 'memory/' });
    expect(report.cases.map((c) => c.status)).toEqual(['passed', 'passed', 'passed']);
    expect(report.cases[0].note).toMatch(/156 tiny \(L 4, D 4\) calls instead of 1000/);
    const none = await runConformance(createReferenceBackend, {
      maxWork: 1000,
      filter: 'memory/repeated-attention',
    });
    expect(none.cases[0].status).toBe('omitted');
    expect(none.cases[0].note).toMatch(/above maxWork 1000/);
  });
});

describe('robustness of the runner', () => {
  it('fails a hanging backend by timeout instead of hanging, and moves on', async () => {
    let made = 0;
    const factory = (): AttentionBackend => {
      made++;
      const inner = createReferenceBackend();
      return {
        ...inner,
        name: 'hanging',
        capabilities: inner.capabilities,
        attention: () => new Promise(() => {}),
      };
    };
    const report = await runConformance(factory, {
      filter: /^options\/(causal|default-scale)$/,
      timeoutMs: 300,
    });
    expect(report.cases.map((c) => c.status)).toEqual(['failed', 'failed']);
    expect(report.cases[0].message).toMatch(/did not finish within 300 ms/);
    expect(report.notes.join(' ')).toMatch(/replaced/);
    expect(made).toBe(2);
  });

  it('bounds a factory whose promise never settles, first and as a replacement, and disposes a late one', async () => {
    const never = await runConformance(() => new Promise<AttentionBackend>(() => {}), {
      filter: 'heads/',
      timeoutMs: 200,
    });
    expect(never.backend.error).toMatch(/factory did not settle within 200 ms/);
    expect(never.totals).toMatchObject({ cases: 8, failed: 8 });

    // the first backend hangs on its first call; its replacement never arrives
    let made = 0;
    const once = (): Promise<AttentionBackend> => {
      made++;
      if (made > 1) return new Promise(() => {});
      const inner = createReferenceBackend();
      let first = true;
      return Promise.resolve({
        ...inner,
        name: 'hangs-once',
        capabilities: inner.capabilities,
        // A cast: attention is generic in its options, which an arrow function cannot forward.
        attention: ((...args: Parameters<AttentionBackend['attention']>) => {
          if (!first) return inner.attention(...args);
          first = false;
          return new Promise<never>(() => {});
        }) as AttentionBackend['attention'],
      });
    };
    const replaced = await runConformance(once, { filter: 'heads/', timeoutMs: 200 });
    expect(replaced.cases[0].message).toMatch(/did not finish within 200 ms/);
    expect(replaced.cases[1].message).toMatch(/factory did not settle within 200 ms/);
    expect(replaced.totals).toMatchObject({ cases: 8, failed: 8 });

    // a backend that arrives after the runner gave up on it is released, not leaked
    let lateDisposed = false;
    const late = (): Promise<AttentionBackend> =>
      new Promise((resolve) => {
        setTimeout(() => {
          const inner = createReferenceBackend();
          resolve({
            ...inner,
            name: 'late',
            capabilities: inner.capabilities,
            dispose: async () => {
              lateDisposed = true;
              await inner.dispose();
            },
          });
        }, 300);
      });
    const slow = await runConformance(late, { filter: 'heads/gqa-4-2', timeoutMs: 100 });
    expect(slow.backend.error).toMatch(/factory did not settle within 100 ms/);
    await vi.waitFor(() => expect(lateDisposed).toBe(true), { timeout: 2000 });
  });

  it('reports a backend that cannot initialise on every case', async () => {
    const factory = (): AttentionBackend => ({
      ...createReferenceBackend(),
      init: () => Promise.reject(new AttnkitError('unavailable', 'no GPU adapter')),
    });
    const report = await runConformance(factory, { filter: 'options/' });
    expect(report.backend.error).toMatch(/no GPU adapter/);
    expect(report.totals.failed).toBe(report.totals.cases);
    expect(report.cases[0].message).toMatch(/could not be created or initialised/);
  });

  it('disposes every backend it created', async () => {
    const disposed: string[] = [];
    let made = 0;
    const factory = (): AttentionBackend => {
      const backend = createReferenceBackend();
      const id = `b${made++}`;
      return {
        ...backend,
        name: 'reference',
        capabilities: backend.capabilities,
        dispose: async () => {
          disposed.push(id);
          await backend.dispose();
        },
      };
    };
    await runConformance(factory, { filter: /^lifecycle\// });
    expect(made).toBeGreaterThan(5);
    expect(new Set(disposed).size).toBe(made);
  });

  it('calls onCaseDone for every case in order', async () => {
    const seen: string[] = [];
    const report = await runConformance(createReferenceBackend, {
      filter: 'cross/',
      onCaseDone: (c) => seen.push(c.id),
    });
    expect(seen).toEqual(report.cases.map((c) => c.id));
  });
});

describe('options', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('takes the seed from ATTNKIT_CONFORMANCE_SEED when not given', () => {
    vi.stubEnv('ATTNKIT_CONFORMANCE_SEED', '4242');
    expect(resolveConformanceOptions().seed).toBe(4242);
    expect(resolveConformanceOptions({ seed: 1 }).seed).toBe(1);
  });

  it('rejects bad options with AttnkitError naming the option', () => {
    expect(() => resolveConformanceOptions({ maxWork: 0 })).toThrow(
      /options.maxWork must be a number > 0, got 0/,
    );
    expect(() => resolveConformanceOptions({ seed: 1.5 })).toThrow(/options.seed must be an integer/);
    vi.stubEnv('ATTNKIT_CONFORMANCE_SEED', 'abc');
    expect(() => resolveConformanceOptions()).toThrow(/ATTNKIT_CONFORMANCE_SEED must be an integer/);
  });

  it('the same seed gives the same random cases', async () => {
    const run = () =>
      runConformance(createReferenceBackend, { filter: 'random/matmul', seed: 77, numRuns: 20 });
    const [a, b] = [await run(), await run()];
    expect(a.cases[0].worstAbsError).toBe(b.cases[0].worstAbsError);
  });
});
