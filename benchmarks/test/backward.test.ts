import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createCpuBackend } from '@attnkit/cpu';
import {
  ALL_FEATURES,
  createBackend,
  createReferenceBackend,
  referenceAttention64,
  referenceAttentionProblem64,
} from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import {
  BACKWARD_FLOP_FACTOR,
  BACKWARD_GRID,
  BACKWARD_HEADLINE_SERIES,
  BACKWARD_QUICK_GRID,
  backendSubject,
  backwardFlops,
  backwardReferenceFor,
  checkBackward,
  expandGrid,
  type GradientSet,
  lastRowsError,
  makeInputs,
  makeWorkload,
  naivePeer,
  PEER_TOLERANCE,
  type RunOptions,
  referenceFor,
  runSubject,
  type Subject,
  tfjsPeer,
  type Workload,
  workloadFlops,
} from '../src/index.js';
import { tfjsWasmNodePeer } from '../src/node.js';

const execFileAsync = promisify(execFile);

/** One repetition, no budget pressure, the reference check on every size. */
const ONE_REP: RunOptions = {
  warmup: 1,
  minReps: 1,
  maxReps: 1,
  minTimeMs: 0,
  seriesBudgetMs: 1e6,
  headlineBudgetMs: 1e6,
  maxRunMs: 1e6,
  checkMaxCost: 1e9,
  seed: 1,
  backwardGateSize: 24,
};

const hooks = {
  now: () => performance.now(),
  reference: async (w: Workload, i: never) => referenceFor(w, i),
};

describe('backward workloads', () => {
  it('backward FLOPs are 2.5x the forward: 4*H*N^2*D forward, 10*H*N^2*D backward (dense, D = Dv)', () => {
    const w = makeWorkload('backward', false, 64, 'h8', 512);
    const f = backwardFlops(w);
    expect(BACKWARD_FLOP_FACTOR).toBe(2.5);
    expect(f.forward.dense).toBe(4 * 8 * 512 * 512 * 64);
    expect(f.backward.dense).toBe(10 * 8 * 512 * 512 * 64);
    expect(f.total.dense).toBe(14 * 8 * 512 * 512 * 64);
    // a backward row times forward + backward, so its FLOPs are the total
    expect(workloadFlops(w)).toEqual(f.total);
    const causal = backwardFlops(makeWorkload('backward', true, 64, 'h1', 256));
    expect(causal.forward.useful).toBe(4 * ((256 * 257) / 2) * 64);
    expect(causal.backward.useful).toBe(2.5 * causal.forward.useful);
  });

  it("the grid is the issue's: N 512..8192, D 64, h1 and h8, causal and not; quick stays small", () => {
    const series = expandGrid(BACKWARD_GRID);
    expect(series).toHaveLength(4);
    expect(series[0][0].series).toBe(BACKWARD_HEADLINE_SERIES);
    for (const s of series) {
      expect(s.map((w) => w.n)).toEqual([512, 1024, 2048, 4096, 8192]);
      expect(s.every((w) => w.mode === 'backward' && w.headDim === 64)).toBe(true);
    }
    expect(new Set(series.map((s) => s[0].heads))).toEqual(new Set(['h1', 'h8']));
    expect(Math.max(...BACKWARD_QUICK_GRID.sizes)).toBeLessThanOrEqual(512);
    expect(expandGrid(BACKWARD_QUICK_GRID)[0][0].series).toBe(BACKWARD_HEADLINE_SERIES);
  });

  it('backward inputs add a gradOutput [Hq, Lq, Dv] and keep q, k, v as a forward workload draws them', () => {
    const w = makeWorkload('backward', true, 16, 'gqa', 20);
    const a = makeInputs(w, 3);
    expect(a.shape.queryLength).toBe(20);
    expect(a.gradOutput?.length).toBe(32 * 20 * 16);
    expect(makeInputs(w, 3).gradOutput).toEqual(a.gradOutput);
    expect(makeInputs(makeWorkload('prefill', true, 16, 'gqa', 20), 3).gradOutput).toBeUndefined();
  });
});

const CASES: Workload[] = [
  makeWorkload('backward', true, 16, 'h1', 37),
  makeWorkload('backward', false, 16, 'h8', 20),
  makeWorkload('backward', true, 8, 'gqa', 9),
];

async function expectGradientsMatch(subject: Subject): Promise<void> {
  await subject.init();
  try {
    for (const w of CASES) {
      const inputs = makeInputs(w, 5);
      const prepare = subject.prepareBackward;
      if (prepare === undefined) throw new Error(`${subject.id} has no prepareBackward`);
      const prepared = await prepare(w, inputs);
      const forward = await prepared.forward();
      const grads = await prepared.backward(forward);
      await prepared.dispose();
      const ref = backwardReferenceFor(w, inputs);
      const check = checkBackward(forward, grads, ref, subject.tolerance, inputs.shape);
      expect(check.pass, `${subject.id} ${w.id}: ${check.worstTensor} worst ${check.worstRatio}`).toBe(true);
      // and the gradients are not all zero (a check of zeros against zeros would prove nothing)
      expect(ref.gradK.some((x) => Math.abs(x) > 1e-3)).toBe(true);
    }
  } finally {
    await subject.dispose();
  }
}

describe('backward subjects agree with the float64 reference gradients (causal, full, GQA)', () => {
  it('naive JS backward', () => expectGradientsMatch(naivePeer()));
  it('TF.js cpu tf.grads', () => expectGradientsMatch(tfjsPeer('cpu')));
  it('TF.js wasm tf.grads (on the wasm backend: init and prepareBackward check tf.getBackend())', () =>
    expectGradientsMatch(tfjsWasmNodePeer()));
  it('@attnkit/cpu under its declared tolerance (its capabilities list backward)', () =>
    expectGradientsMatch(backendSubject('cpu', 'cpu', async () => createCpuBackend())));
  it('the reference backend through the gate (backendSubject)', () =>
    expectGradientsMatch(backendSubject('reference', 'reference', async () => createReferenceBackend())));

  it('the naive forward returns the reference lse', async () => {
    const w = CASES[0];
    const inputs = makeInputs(w, 5);
    const prepared = await (naivePeer().prepareBackward as NonNullable<Subject['prepareBackward']>)(
      w,
      inputs,
    );
    const { lse } = await prepared.forward();
    const ref = referenceAttentionProblem64({
      ...inputs,
      scale: 1 / 4,
      causal: true,
      slidingWindow: null,
      keyMask: null,
      bias: null,
      alibiSlopes: null,
      softcap: null,
      sinks: null,
      returnLse: true,
      returnWeights: false,
    }).lse as Float64Array;
    for (let i = 0; i < ref.length; i++) expect(lse?.[i]).toBeCloseTo(ref[i], 5);
  });
});

describe('checkBackward', () => {
  const w = makeWorkload('backward', true, 8, 'h1', 6);
  const inputs = makeInputs(w, 2);
  const ref = backwardReferenceFor(w, inputs);
  const exact = {
    output: Float32Array.from(ref.output),
    grads: {
      gradQ: Float32Array.from(ref.gradQ),
      gradK: Float32Array.from(ref.gradK),
      gradV: Float32Array.from(ref.gradV),
    } as GradientSet,
  };

  it('passes the rounded reference and names the tensor that fails', () => {
    const ok = checkBackward(
      { output: exact.output, lse: null },
      exact.grads,
      ref,
      PEER_TOLERANCE,
      inputs.shape,
    );
    expect(ok.pass).toBe(true);
    const bad = { ...exact.grads, gradK: exact.grads.gradK.map((x) => x * 1.1) };
    const check = checkBackward({ output: exact.output, lse: null }, bad, ref, PEER_TOLERANCE, inputs.shape);
    expect(check.pass).toBe(false);
    expect(check.worstTensor).toBe('gradK');
    const nan = { ...exact.grads, gradV: exact.grads.gradV.map(() => Number.NaN) };
    expect(
      checkBackward({ output: exact.output, lse: null }, nan, ref, PEER_TOLERANCE, inputs.shape).pass,
    ).toBe(false);
    const short = { ...exact.grads, gradQ: exact.grads.gradQ.subarray(1) };
    expect(
      checkBackward({ output: exact.output, lse: null }, short, ref, PEER_TOLERANCE, inputs.shape).pass,
    ).toBe(false);
  });

  it('fudge allows that many times the naive float32 error of the row, no more', () => {
    // an error of 3e-3 on one gradQ element, naive float32 error 1e-3 in that row
    const gradQ = Float32Array.from(ref.gradQ);
    gradQ[3] += 3e-3;
    const tensors = {
      output: ref.output,
      gradQ: Float64Array.from(ref.gradQ, (x, i) => (i === 0 ? x + 1e-3 : x)),
      gradK: ref.gradK,
      gradV: ref.gradV,
    };
    const naive32 = () => tensors;
    const tolerance = { atol: 1e-6, rtol: 1e-5 };
    const got = { ...exact.grads, gradQ };
    const forward = { output: exact.output, lse: null };
    expect(
      checkBackward(forward, got, { ...ref, naive32 }, { ...tolerance, fudge: 4 }, inputs.shape).pass,
    ).toBe(true);
    expect(
      checkBackward(forward, got, { ...ref, naive32 }, { ...tolerance, fudge: 2 }, inputs.shape).pass,
    ).toBe(false);
    // another row's naive error lends nothing (row 1 of gradQ starts at D = 8)
    const moved = { ...tensors, gradQ: Float64Array.from(ref.gradQ, (x, i) => (i === 8 ? x + 1 : x)) };
    const elsewhere = () => moved;
    expect(
      checkBackward(forward, got, { ...ref, naive32: elsewhere }, { ...tolerance, fudge: 4 }, inputs.shape)
        .pass,
    ).toBe(false);
  });
});

/** A backend that has a forward but no backward: the gate would reject `attentionBackward`. */
function forwardOnlyBackend() {
  return createBackend({
    name: 'forward-only',
    capabilities: () => ({
      features: ALL_FEATURES,
      limits: {},
      tolerance: { atol: 1e-6, rtol: 1e-5 },
      deterministic: true,
      engine: 'float64 reference forward, no backward',
      threads: 1,
      notes: [],
    }),
    init: async () => {},
    attention: async (problem) => {
      const r = referenceAttentionProblem64(problem);
      return { output: Float32Array.from(r.output), ...(r.lse && { lse: Float32Array.from(r.lse) }) };
    },
    matmul: async () => new Float32Array(0),
    memory: () => ({ hostBytes: 0, deviceBytes: 0 }),
    dispose: async () => {},
  });
}

describe('the backward mode in the runner', () => {
  const series = [[16, 32].map((n) => makeWorkload('backward', true, 8, 'h1', n))];

  it('an attnkit backend whose capabilities lack backward is not applicable, not an error', async () => {
    const report = await runSubject(
      backendSubject('fwd', 'forward only', async () => forwardOnlyBackend()),
      'node',
      [...series, [makeWorkload('prefill', true, 8, 'h1', 16)]],
      ONE_REP,
      hooks,
    );
    expect(report.status).toBe('ok');
    expect(report.rows.map((r) => r.status)).toEqual(['not-applicable', 'not-applicable', 'ok']);
    expect(report.rows[0].reason).toMatch(/capabilities do not list 'backward'/);
    expect(report.stopped).toEqual({});
  });

  it('a peer without prepareBackward is not applicable too', async () => {
    const { prepareBackward: _, ...forwardOnly } = naivePeer();
    const report = await runSubject(forwardOnly, 'node', series, ONE_REP, hooks);
    expect(report.rows.map((r) => r.status)).toEqual(['not-applicable', 'not-applicable']);
  });

  it('the reference backend passes the gate and every size; rows carry phases and the gate size', async () => {
    const subject = backendSubject('reference', 'reference', async () => createReferenceBackend());
    const report = await runSubject(subject, 'node', series, ONE_REP, hooks);
    for (const row of report.rows) {
      expect(row.status).toBe('ok');
      expect(row.check?.pass, JSON.stringify(row.check)).toBe(true);
      expect(row.phases?.derived).toBe(false);
      expect(row.phases?.ratio).toBeGreaterThan(0);
    }
  });

  it('the gate marks a subject with a wrong gradient WRONG at every size, even where no own check runs', async () => {
    const right = naivePeer();
    const wrong: Subject = {
      ...right,
      id: 'wrong-dk',
      async prepareBackward(w, inputs) {
        const p = await (right.prepareBackward as NonNullable<Subject['prepareBackward']>)(w, inputs);
        return {
          ...p,
          backward: async (f) => {
            const g = await p.backward(f);
            // dK off by the scale: one of the broken variants
            return { ...g, gradK: g.gradK.map((x) => x * 8) };
          },
        };
      },
    };
    const report = await runSubject(wrong, 'node', series, { ...ONE_REP, checkMaxCost: 0 }, hooks);
    for (const row of report.rows) {
      expect(row.status).toBe('ok');
      expect(row.check?.pass).toBe(false);
      expect(row.check?.checkedAt).toBe(24);
      expect(row.check?.worstTensor).toBe('gradK');
    }
  });

  it('a gate that throws fails the check instead of passing silently', async () => {
    let calls = 0;
    const flaky: Subject = {
      ...naivePeer(),
      id: 'flaky',
      async prepareBackward(w, inputs) {
        calls++;
        if (calls === 1) throw new Error('no memory for the gate');
        return (naivePeer().prepareBackward as NonNullable<Subject['prepareBackward']>)(w, inputs);
      },
    };
    const report = await runSubject(flaky, 'node', series, { ...ONE_REP, checkMaxCost: 0 }, hooks);
    expect(report.rows[0].status).toBe('ok');
    expect(report.rows[0].check?.pass).toBe(false);
    expect(report.rows[0].check?.worstTensor).toMatch(/gate threw: no memory/);
  });

  it('phases: forward and backward apart; a backward that re-runs the forward is derived (fake clock)', async () => {
    let clock = 0;
    const timed = (forwardMs: number, backwardMs: number, includes: boolean): Subject => ({
      ...naivePeer(),
      id: includes ? 'grads' : 'fused',
      async prepareBackward(w, inputs) {
        const p = await (naivePeer().prepareBackward as NonNullable<Subject['prepareBackward']>)(w, inputs);
        return {
          backwardIncludesForward: includes,
          forward: async () => {
            clock += forwardMs;
            return p.forward();
          },
          backward: async (f) => {
            clock += backwardMs;
            return p.backward(f);
          },
          dispose() {},
        };
      },
    });
    const fake = {
      now: () => clock,
      reference: async () => null,
      rss: () => 1000,
      resetPeakRss: () => {},
      peakRss: () => 5000,
    };
    const one = [[makeWorkload('backward', true, 8, 'h1', 16)]];
    const fused = (await runSubject(timed(10, 30, false), 'node', one, ONE_REP, fake)).rows[0];
    expect([fused.phases?.forward.median, fused.phases?.backward.median, fused.timing?.median]).toEqual([
      10, 30, 40,
    ]);
    expect(fused.phases?.ratio).toBe(3);
    const flops = backwardFlops(one[0][0]);
    expect(fused.gflops?.useful).toBeCloseTo(flops.total.useful / 40 / 1e6, 9);
    expect(fused.phases?.gflops.backward.useful).toBeCloseTo(flops.backward.useful / 30 / 1e6, 9);
    expect(fused.memory).toMatchObject({
      rssBaselineBytes: 1000,
      rssPeakBytes: 5000,
      rssPeakSource: 'high-water mark',
    });
    const grads = (await runSubject(timed(10, 30, true), 'node', one, ONE_REP, fake)).rows[0];
    // tf.grads: the backward call (30) is forward + backward; the backward alone is 30 - 10
    expect([grads.phases?.forward.median, grads.phases?.backward.median, grads.timing?.median]).toEqual([
      10, 20, 30,
    ]);
    expect(grads.phases?.derived).toBe(true);
    expect(grads.phases?.ratio).toBe(2);
  });

  it('the forward reference of a backward workload is the forward of the same inputs', () => {
    const w = makeWorkload('backward', false, 8, 'h8', 12);
    const inputs = makeInputs(w, 9);
    const { q, k, v, shape } = inputs;
    expect(backwardReferenceFor(w, inputs).output).toEqual(
      referenceAttention64({ q, k, v, shape }, { causal: false }).output,
    );
  });
});

describe('the forward probe checks its last rows against float64 (lastRowsError)', () => {
  const w = makeWorkload('prefill', true, 64, 'h8', 48);
  const inputs = makeInputs(w, 5);
  const exact = referenceFor(w, inputs);

  it('the reference rounded to float32 is within float32 rounding; an error in a last row is found', () => {
    const output = Float32Array.from(exact);
    expect(lastRowsError(w, inputs, output, 4)).toBeLessThan(1e-7);
    // head 7, the last query row, value 3: inside the checked rows
    output[(7 * 48 + 47) * 64 + 3] += 0.01;
    expect(lastRowsError(w, inputs, output, 4)).toBeCloseTo(0.01, 6);
  });

  it('only the last rows are read: an error in row 0 goes unseen, NaN in a checked row is reported', () => {
    const output = Float32Array.from(exact);
    output[5] += 1;
    expect(lastRowsError(w, inputs, output, 4)).toBeLessThan(1e-7);
    output[(2 * 48 + 45) * 64] = Number.NaN;
    expect(lastRowsError(w, inputs, output, 4)).toBeNaN();
  });
});

describe('the RSS high-water mark (Linux procfs)', () => {
  // Measured in a fresh Node process: in this worker, V8 answers a 64 MiB external allocation with a
  // GC that may release tens of MiB of earlier tests' garbage at the same moment, so the resident set
  // (and its high-water mark) need not rise by the buffer's size. A new process has no such garbage.
  it('sees a 64 MiB buffer touched since the reset, and the reset brings it back to the current RSS', async () => {
    const moduleUrl = new URL('../dist/node.js', import.meta.url).href;
    const script = `
      const { currentRssBytes, peakRssBytes, resetPeakRss } = await import(${JSON.stringify(moduleUrl)});
      const reset1 = resetPeakRss();
      const before = peakRssBytes();
      const buffer = new Float64Array(8 * 2 ** 20).fill(1);
      const after = peakRssBytes();
      const last = buffer[buffer.length - 1];
      const reset2 = resetPeakRss();
      const peakAfterReset = peakRssBytes();
      const currentAfterReset = currentRssBytes();
      console.log(JSON.stringify({ reset1, before, after, last, reset2, peakAfterReset, currentAfterReset }));
    `;
    const { stdout } = await execFileAsync(process.execPath, ['--input-type=module', '-e', script]);
    const r = JSON.parse(stdout) as Record<string, number | boolean>;
    expect(r.reset1).toBe(true);
    expect(r.before as number).toBeGreaterThan(0);
    expect((r.after as number) - (r.before as number)).toBeGreaterThanOrEqual(60 * 2 ** 20);
    expect(r.last).toBe(1);
    expect(r.reset2).toBe(true);
    // right after a reset the mark is the resident set (both read from the same procfs file)
    expect(Math.abs((r.peakAfterReset as number) - (r.currentAfterReset as number))).toBeLessThan(
      8 * 2 ** 20,
    );
  });
});
