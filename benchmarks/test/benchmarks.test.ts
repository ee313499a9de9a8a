import { referenceAttention64 } from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import {
  causalMask,
  checkOutput,
  expandGrid,
  FULL_GRID,
  HEADLINE_SERIES,
  JS_BLOCK_ROWS,
  JS_DIM,
  JS_FLOP_PER_PASS,
  JS_KEYS,
  jsMultiplyAddKernel,
  makeInputs,
  makeWorkload,
  measureCeilings,
  naivePeer,
  percentile,
  QUICK_GRID,
  QUICK_RUN,
  referenceFor,
  repeatKvHeads,
  runSubject,
  SIMD_CHAINS,
  type Subject,
  simdKernel,
  simdModuleBytes,
  summarize,
  tfjsPeer,
  transposeHeads,
  type Workload,
  workloadFlops,
} from '../src/index.js';
import { ortNodePeer, ortWebNodePeer, peerVersions } from '../src/node.js';

describe('statistics', () => {
  it('percentiles interpolate between order statistics', () => {
    const sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    expect(percentile(sorted, 0.5)).toBe(6);
    expect(percentile(sorted, 0.1)).toBe(2);
    expect(percentile(sorted, 0.9)).toBe(10);
    expect(percentile([1, 3], 0.5)).toBe(2);
    const s = summarize([5, 1, 3], 2);
    expect([s.median, s.min, s.max, s.mean, s.reps, s.warmup]).toEqual([3, 1, 5, 3, 3, 2]);
  });
});

describe('workloads', () => {
  it('the full grid is 8 sizes x 2 dims x 3 head presets x causal/not x prefill/decode', () => {
    const series = expandGrid(FULL_GRID);
    expect(series).toHaveLength(24);
    expect(series.flat()).toHaveLength(192);
    expect(series[0][0].series).toBe(HEADLINE_SERIES);
    for (const s of series) expect(s.map((w) => w.n)).toEqual([128, 256, 512, 1024, 2048, 4096, 8192, 16384]);
  });

  it('counts FLOPs as the spec does: dense 4*H*Lq*Lk*D, causal useful about half', () => {
    const w = makeWorkload('prefill', true, 64, 'h8', 256);
    const f = workloadFlops(w);
    expect(f.dense).toBe(4 * 8 * 256 * 256 * 64);
    expect(f.useful).toBe(4 * 8 * ((256 * 257) / 2) * 64);
    const d = workloadFlops(makeWorkload('decode', true, 128, 'gqa', 1024));
    expect(d.dense).toBe(4 * 32 * 1 * 1024 * 128);
    expect(d.useful).toBe(d.dense);
  });

  it('inputs are deterministic per workload and seed', () => {
    const w = makeWorkload('prefill', false, 64, 'gqa', 128);
    const a = makeInputs(w, 1);
    const b = makeInputs(w, 1);
    const c = makeInputs(w, 2);
    expect(a.q).toEqual(b.q);
    expect(a.q).not.toEqual(c.q);
    expect(a.k.length).toBe(8 * 128 * 64);
    expect(a.q.length).toBe(32 * 128 * 64);
  });

  it('repeats kv heads by group and transposes heads and positions', () => {
    const kv = Float32Array.from([1, 2, 3, 4]); // 2 heads of [1 x 2]
    expect([...repeatKvHeads(kv, 2, 4)]).toEqual([1, 2, 1, 2, 3, 4, 3, 4]);
    const x = Float32Array.from([1, 2, 3, 4, 5, 6]); // [H=2, L=3, D=1]
    const t = transposeHeads(x, 2, 3, 1);
    expect([...t]).toEqual([1, 4, 2, 5, 3, 6]);
    expect([...transposeHeads(t, 3, 2, 1)]).toEqual([...x]);
    expect([...causalMask(2, 3)]).toEqual([0, 0, Math.fround(-1e30), 0, 0, 0]);
  });

  it('checkOutput passes within tolerance and fails outside it or on NaN', () => {
    const ref = Float64Array.from([1, -2, 0]);
    expect(checkOutput(Float32Array.from([1.0005, -2, 0]), ref, { atol: 1e-3, rtol: 0 }).pass).toBe(true);
    expect(checkOutput(Float32Array.from([1.01, -2, 0]), ref, { atol: 1e-3, rtol: 0 }).pass).toBe(false);
    expect(checkOutput(Float32Array.from([Number.NaN, -2, 0]), ref, { atol: 1, rtol: 1 }).pass).toBe(false);
  });
});

const CASES: Workload[] = [
  makeWorkload('prefill', true, 16, 'h1', 37),
  makeWorkload('prefill', false, 16, 'h8', 20),
  makeWorkload('prefill', true, 8, 'gqa', 9),
  makeWorkload('decode', true, 16, 'gqa', 33),
];

async function expectMatchesReference(subject: Subject): Promise<void> {
  await subject.init();
  try {
    for (const w of CASES) {
      const inputs = makeInputs(w, 7);
      const prepared = await subject.prepare(w, inputs);
      const out = await prepared.run();
      await prepared.dispose();
      const ref = referenceAttention64(inputs, { causal: w.causal }).output;
      const check = checkOutput(out, ref, subject.tolerance);
      expect(check.pass, `${subject.id} ${w.id}: worst ${check.worstRatio}`).toBe(true);
    }
  } finally {
    await subject.dispose();
  }
}

describe('peers agree with the float64 reference (causal, full, GQA, decode)', () => {
  it('naive JS', () => expectMatchesReference(naivePeer()));
  it('TF.js cpu', () => expectMatchesReference(tfjsPeer('cpu')));
  for (const variant of ['attention', 'mha', 'matmul'] as const) {
    it(`onnxruntime-node ${variant}`, () => expectMatchesReference(ortNodePeer(variant)));
  }
  it('onnxruntime-web wasm matmul graph', () => expectMatchesReference(ortWebNodePeer('matmul', 1)));

  it('a wrong peer fails the runner check', async () => {
    const wrong: Subject = {
      ...naivePeer(),
      id: 'wrong',
      async prepare(w, inputs) {
        const right = await naivePeer().prepare(w, inputs);
        return { run: async () => (await right.run()).map((x) => x * 1.01), dispose() {} };
      },
    };
    const report = await runSubject(
      wrong,
      'node',
      [[makeWorkload('prefill', true, 16, 'h1', 32)]],
      {
        warmup: 1,
        minReps: 1,
        maxReps: 1,
        minTimeMs: 0,
        seriesBudgetMs: 10000,
        headlineBudgetMs: 10000,
        maxRunMs: 10000,
        checkMaxCost: 1e9,
        seed: 1,
      },
      { now: () => performance.now(), reference: async (w, i) => referenceFor(w, i) },
    );
    expect(report.rows[0].status).toBe('ok');
    expect(report.rows[0].check?.pass).toBe(false);
  });

  it('the runner stops a series at the size whose predicted run exceeds the cap, and says so', async () => {
    let calls = 0;
    const slow: Subject = {
      ...naivePeer(),
      id: 'slow',
      async prepare() {
        return {
          run: async () => {
            calls++;
            await new Promise((r) => setTimeout(r, 20));
            return new Float32Array(0);
          },
          dispose() {},
        };
      },
    };
    const series = [[32, 64, 128].map((n) => makeWorkload('prefill', true, 16, 'h1', n))];
    const report = await runSubject(
      slow,
      'node',
      series,
      {
        warmup: 1,
        minReps: 1,
        maxReps: 1,
        minTimeMs: 0,
        seriesBudgetMs: 1e6,
        headlineBudgetMs: 1e6,
        maxRunMs: 50,
        checkMaxCost: 0,
        seed: 1,
      },
      { now: () => performance.now(), reference: async () => null },
    );
    // 32 runs (~20 ms); 64 predicted ~80 ms > 50 ms cap: skipped, and so is 128
    expect(report.rows.map((r) => r.status)).toEqual(['ok', 'skipped', 'skipped']);
    expect(report.stopped['prefill-causal-d16-h1'].n).toBe(64);
    expect(report.stopped['prefill-causal-d16-h1'].reason).toMatch(/too slow/);
    expect(calls).toBe(2);
  });

  it('alwaysRunUpTo runs the headline series past the budget up to that size, then the budget stops it', async () => {
    const slow: Subject = {
      ...naivePeer(),
      id: 'slow',
      async prepare() {
        return {
          run: async () => {
            await new Promise((r) => setTimeout(r, 20));
            return new Float32Array(0);
          },
          dispose() {},
        };
      },
    };
    const sizes = [32, 64, 128, 256];
    // the headline series (prefill-causal-d64-h1), then another one that the floor does not apply to
    const series = [
      sizes.map((n) => makeWorkload('prefill', true, 64, 'h1', n)),
      sizes.map((n) => makeWorkload('prefill', true, 16, 'h1', n)),
    ];
    const options = {
      warmup: 1,
      minReps: 1,
      maxReps: 1,
      minTimeMs: 0,
      seriesBudgetMs: 1e6,
      headlineBudgetMs: 1e6,
      maxRunMs: 50,
      checkMaxCost: 0,
      seed: 1,
    };
    const hooks = { now: () => performance.now(), reference: async () => null };
    const report = await runSubject(slow, 'node', series, { ...options, alwaysRunUpTo: 128 }, hooks);
    // without the floor the cap stops at 64 (previous test); with it 64 and 128 run, 256 is stopped
    expect(report.rows.slice(0, 4).map((r) => r.status)).toEqual(['ok', 'ok', 'ok', 'skipped']);
    expect(report.stopped[HEADLINE_SERIES].n).toBe(256);
    // the other series keeps its budget
    expect(report.rows.slice(4).map((r) => r.status)).toEqual(['ok', 'skipped', 'skipped', 'skipped']);
    expect(report.stopped['prefill-causal-d16-h1'].n).toBe(64);
  });

  it('the quick run reaches N = 512 on every subject in the headline series', () => {
    expect(QUICK_RUN.alwaysRunUpTo).toBeGreaterThanOrEqual(512);
    expect(QUICK_GRID.sizes).toContain(512);
  });

  it('peer versions are read from the installed packages (onnxruntime-web has an exports map)', () => {
    const versions = peerVersions();
    for (const name of ['onnxruntime-web', 'onnxruntime-node', '@tensorflow/tfjs-core'])
      expect(versions[name], name).toMatch(/^\d+\.\d+\.\d+/);
    expect(ortWebNodePeer('matmul', 1).label).not.toContain('unknown');
  });
});

describe('machine ceilings', () => {
  it('the hand-assembled SIMD loop validates and computes acc = acc * m + a on every chain', () => {
    expect([...simdModuleBytes().subarray(0, 4)]).toEqual([0x00, 0x61, 0x73, 0x6d]); // simdKernel validates it
    const [m, a] = [0.75, 0.125];
    const run = simdKernel(m, a);
    for (const iterations of [1, 2, 7]) {
      const f = Math.fround;
      let sum = 0;
      for (let j = 0; j < SIMD_CHAINS; j++) {
        let acc = f(1 + j / 16);
        for (let i = 0; i < iterations; i++) acc = f(f(acc * f(m)) + f(a));
        sum = j === 0 ? acc : f(sum + acc);
      }
      expect(run(iterations)).toBe(sum);
    }
  });

  it('the plain-JS multiply-add kernel computes the sum of every (row, key) dot product, pass after pass', () => {
    const q = new Float32Array(JS_BLOCK_ROWS * JS_DIM);
    const k = new Float32Array(JS_KEYS * JS_DIM);
    // small integers: every partial sum is exact in float64, so the expected value is exact too
    for (let i = 0; i < q.length; i++) q[i] = (i % 7) - 3;
    for (let i = 0; i < k.length; i++) k[i] = (i % 5) - 2;
    let expected = 0;
    for (let r = 0; r < JS_BLOCK_ROWS; r++)
      for (let j = 0; j < JS_KEYS; j++)
        for (let d = 0; d < JS_DIM; d++) expected += q[r * JS_DIM + d] * k[j * JS_DIM + d];
    const run = jsMultiplyAddKernel(q, k);
    expect(run(1)).toBe(expected);
    expect(run(3)).toBe(3 * expected);
    expect(JS_FLOP_PER_PASS).toBe(JS_BLOCK_ROWS * JS_KEYS * JS_DIM * 2);
    expect(() => jsMultiplyAddKernel(new Float32Array(3), k)).toThrow(
      /expected q of 512 and k of 8192 elements, got 3/,
    );
  });

  it('reports GFLOP/s and GB/s from the measured times (a fake clock: 1 ms per timing)', () => {
    let t = 0;
    const ceilings = measureCeilings(() => t++);
    // 2e6 iterations x 96 FLOP in 1 ms; 4000 passes x 4 x 64 x 128 x 2 FLOP in 1 ms; 2 x 64 MiB in 1 ms
    expect(ceilings.simdGflops).toBeCloseTo(192, 6);
    expect(ceilings.jsGflops).toBeCloseTo((4000 * 4 * 64 * 128 * 2) / 1e6, 6);
    expect(ceilings.copyGBps).toBeCloseTo((2 * 64 * 2 ** 20) / 1e6, 6);
    expect(ceilings.method).toContain('simd128');
  });
});
