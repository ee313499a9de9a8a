import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BACKWARD_GRID,
  BACKWARD_QUICK_GRID,
  BACKWARD_RUN,
  makeWorkload,
  QUICK_BACKWARD_RUN,
  type ResultRow,
  type RssProbeResult,
  type SubjectReport,
  summarize,
} from '@attnkit/benchmarks';
import { describe, expect, it } from 'vitest';
import { cellText } from '../src/analysis.js';
import {
  BAR_SIZES,
  backwardGoalLines,
  backwardRows,
  backwardTableHtml,
  notApplicable,
} from '../src/backward-tables.js';
import { backwardTableText } from '../src/backward-text.js';
import {
  type CliOptions,
  DEFAULT_PROBE_SIZE,
  probeSize,
  probeSubjects,
  program,
  resolveRun,
  selectEntries,
} from '../src/options.js';
import { outputPlan } from '../src/paths.js';
import { renderHtml } from '../src/report.js';
import type { BenchResults } from '../src/results.js';
import { ALL_SUBJECTS, NODE_BACKENDS, NODE_PEERS } from '../src/subjects.js';
import { handMadeResults } from './fixtures.js';

const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');
const SERIES = 'backward-causal-d64-h1';

function parse(args: string[]): CliOptions {
  const cmd = program();
  cmd.parse(args, { from: 'user' });
  return cmd.opts<CliOptions>();
}

describe('--mode backward: options', () => {
  it('selects the backward grid and budgets, the quick variant, and the probe at N = 16384 (none in quick)', () => {
    const full = resolveRun(parse(['--mode', 'backward']));
    expect(full.grid).toEqual(BACKWARD_GRID);
    expect(full.run).toEqual({ ...BACKWARD_RUN, seed: 1 });
    expect(full.probe).toBe(DEFAULT_PROBE_SIZE);
    expect(DEFAULT_PROBE_SIZE).toBe(16384);
    const quick = resolveRun(parse(['--mode', 'backward', '--quick']));
    expect(quick.grid).toEqual(BACKWARD_QUICK_GRID);
    expect(quick.run).toEqual({ ...QUICK_BACKWARD_RUN, seed: 1 });
    expect(quick.probe).toBeNull();
    // filters narrow the backward grid; it stays backward
    const narrowed = resolveRun(
      parse([
        '--mode',
        'backward',
        '--sizes',
        '1024..4096',
        '--causal',
        'true',
        '--heads',
        'h8',
        '--budget',
        '2',
      ]),
    );
    expect(narrowed.grid).toEqual({
      ...BACKWARD_GRID,
      sizes: [1024, 2048, 4096],
      causal: [true],
      heads: ['h8'],
    });
    expect(narrowed.run.seriesBudgetMs).toBe(2000);
    expect(resolveRun(parse(['--mode', 'backward', '--rss-probe', 'off'])).probe).toBeNull();
    expect(resolveRun(parse(['--mode', 'backward', '--quick', '--rss-probe', '4096'])).probe).toBe(4096);
    // the forward modes are what they were
    expect(resolveRun(parse(['--mode', 'prefill'])).grid.modes).toEqual(['prefill']);
    expect(resolveRun(parse(['--mode', 'prefill'])).probe).toBeNull();
    expect(resolveRun(parse(['--mode', 'prefill', '--rss-probe', '65536'])).probe).toBe(65536);
  });

  it('--rss-probe takes a size or off, nothing else', () => {
    expect(probeSize('off')).toBe(false);
    expect(probeSize('2048')).toBe(2048);
    expect(() => probeSize('lots')).toThrow(/positive integer/);
  });

  it('runs every attnkit backend and the peers with a backward; onnxruntime only when named', () => {
    const ids = selectEntries([...NODE_BACKENDS, ...NODE_PEERS], { mode: 'backward' }).map((e) => e.id);
    expect(ids).toEqual(['cpu', 'wasm', 'wasm-mt', 'webgpu-dawn', 'naive-js', 'tfjs-cpu', 'tfjs-wasm']);
    const named = selectEntries([...NODE_BACKENDS, ...NODE_PEERS], {
      mode: 'backward',
      backends: ['cpu', 'ort-node-attention'],
    });
    expect(named.map((e) => e.id)).toEqual(['cpu', 'ort-node-attention']);
    // the RSS probe: the CPU backends only
    expect(probeSubjects(selectEntries(ALL_SUBJECTS, { mode: 'backward' })).map((e) => e.id)).toEqual([
      'cpu',
      'wasm',
      'wasm-mt',
    ]);
    // a forward run is unchanged: every subject but the decode-cache mode's own
    expect(selectEntries(ALL_SUBJECTS, {})).toHaveLength(ALL_SUBJECTS.filter((e) => !e.decodeOnly).length);
  });

  it('writes bench-backward(-quick).* and may refresh only the committed bench-backward.*', () => {
    expect(outputPlan({ mode: 'backward' }).name).toBe('bench-backward');
    expect(outputPlan({ mode: 'backward', quick: true }).name).toBe('bench-backward-quick');
    expect(outputPlan({ mode: 'backward', updateCommitted: true }).name).toBe('bench-backward');
    expect(() => outputPlan({ mode: 'backward', updateCommitted: true, quick: true })).toThrow(
      /bench-backward\.\*: use it without --quick/,
    );
    expect(outputPlan({}).name).toBe('bench-full');
  });
});

/** A synthetic timed backward row: medians as given, one repetition. */
function row(
  subject: string,
  n: number,
  forwardMs: number,
  backwardMs: number,
  opts: { derived?: boolean; pass?: boolean; peak?: number } = {},
): ResultRow {
  const w = makeWorkload('backward', true, 64, 'h1', n);
  // a fused subject's repetition is forward + backward; tf.grads' backward call is the same sum
  const total = forwardMs + backwardMs;
  const stats = (ms: number) => summarize([ms], 1);
  return {
    subject,
    workload: w,
    status: 'ok',
    timing: stats(total),
    flops: { dense: 1e9, useful: 5e8 },
    gflops: { dense: 1e9 / total / 1e6, useful: 5e8 / total / 1e6 },
    memory: {
      rssPeakBytes: opts.peak ?? 3 * 2 ** 20,
      rssBaselineBytes: 2 ** 20,
      rssPeakSource: 'high-water mark',
      hostBytes: null,
      deviceBytes: null,
    },
    check: {
      maxAbsError: 0,
      worstRatio: opts.pass === false ? 5 : 0.1,
      pass: opts.pass !== false,
      atol: 0,
      rtol: 0,
    },
    phases: {
      forward: stats(forwardMs),
      backward: stats(backwardMs),
      derived: opts.derived === true,
      ratio: backwardMs / forwardMs,
      gflops: { forward: { dense: 1, useful: 1 }, backward: { dense: 2, useful: 2 } },
    },
  };
}

function subject(id: string, kind: 'attnkit' | 'peer', rows: ResultRow[]): SubjectReport {
  return {
    id,
    kind,
    family: id,
    label: id,
    environment: 'node',
    status: 'ok',
    rows,
    stopped: {},
    elapsedMs: 0,
  };
}

function results(subjects: SubjectReport[], rssProbe?: RssProbeResult[]): BenchResults {
  return handMadeResults(
    subjects,
    { ...BACKWARD_GRID, sizes: [...BAR_SIZES] },
    BACKWARD_RUN,
    rssProbe && { rssProbe },
  );
}

const probe = (id: string, delta: number): RssProbeResult => ({
  subject: id,
  workload: makeWorkload('backward', true, 64, 'h1', 16384),
  status: 'ok',
  baselineBytes: 100 * 2 ** 20,
  peakBytes: 100 * 2 ** 20 + delta,
  deltaBytes: delta,
  scoreBufferBytes: 4 * 16384 * 16384,
  inputBytes: 16 * 2 ** 20,
  forwardMs: 1,
  backwardMs: 2,
  finite: true,
});

describe('backward tables and the issue bars', () => {
  it('the phase table shows forward, backward, their ratio, the derived mark, peak RSS and WRONG', () => {
    const r = results([
      subject('cpu', 'attnkit', [row('cpu', 1024, 10, 25, { pass: false })]),
      subject('tfjs-wasm', 'peer', [row('tfjs-wasm', 1024, 100, 300, { derived: true })]),
    ]);
    const rows = backwardRows(r, SERIES);
    expect(rows.map((x) => [x.subject, x.forwardMs, x.backwardMs, x.totalMs, x.ratio, x.wrong])).toEqual([
      ['cpu', 10, 25, 35, 2.5, true],
      ['tfjs-wasm', 100, 300, 400, 3, false],
    ]);
    expect(rows[0].peakDeltaBytes).toBe(2 * 2 ** 20);
    const text = backwardTableText(r, SERIES);
    expect(text).toContain('WRONG');
    expect(text).toContain('300*');
    expect(text).toContain('2.50x');
    expect(backwardTableHtml(r, SERIES)).toContain('<table class="backward">');
    // a forward series has no backward table
    expect(backwardTableText(r, 'prefill-causal-d64-h1')).toBe('');
  });

  it('the HTML report carries the phase table of a backward series and the RSS probe', () => {
    const r = results([subject('cpu', 'attnkit', [row('cpu', 1024, 10, 25)])], [probe('cpu', 2 ** 20)]);
    const html = renderHtml(r);
    // the per-series tables travel as JSON inside the page
    expect(html).toContain('<table class=\\"backward\\">');
    expect(html).toContain('<h2>Backward RSS probe</h2><table class="probe">');
  });

  it('a backend without backward shows n/a with its reason, not an error', () => {
    const na: ResultRow = {
      subject: 'wasm',
      workload: makeWorkload('backward', true, 64, 'h1', 1024),
      status: 'not-applicable',
      reason: "capabilities do not list 'backward' (no attentionBackward yet)",
      flops: { dense: 0, useful: 0 },
    };
    const r = results([subject('wasm', 'attnkit', [na])]);
    expect(cellText(na)).toBe('n/a');
    expect(notApplicable(r)).toEqual([{ subject: 'wasm', reason: na.reason }]);
    expect(backwardGoalLines(r)[0]).toMatch(/^wasm: not applicable .*the bars wait for its backward/);
  });

  it('reads the bars: >= 10x TF.js wasm at 1024..4096, backward <= 3x forward, probe vs N^2', () => {
    const met = results(
      [
        subject(
          'wasm',
          'attnkit',
          BAR_SIZES.map((n, i) => row('wasm', n, 1 + i, 2 + i)),
        ),
        subject(
          'tfjs-wasm',
          'peer',
          BAR_SIZES.map((n, i) => row('tfjs-wasm', n, 10 * (1 + i), 30 * (2 + i), { derived: true })),
        ),
      ],
      [probe('wasm', 20 * 2 ** 20), probe('cpu', 30 * 2 ** 20)],
    );
    const lines = backwardGoalLines(met);
    expect(lines[0]).toMatch(/N=1024 23x.*bar >= 10x met$/);
    expect(lines[1]).toMatch(/N=1024 2\.00x.*bar <= 3x met$/);
    expect(lines[2]).toBe(
      'wasm RSS probe N=16384: peak 20.0 MiB above its inputs vs 1024 MiB for one N^2 float32 buffer (2.0%)',
    );
    expect(lines[3]).toContain('cpu RSS probe N=16384: peak 30.0 MiB');
    // slower than 10x at one size, backward 4x its forward at another, a size TF.js did not reach
    const slow = results([
      subject('wasm', 'attnkit', [row('wasm', 1024, 10, 40), row('wasm', 2048, 1, 2)]),
      subject('tfjs-wasm', 'peer', [row('tfjs-wasm', 1024, 100, 300), row('tfjs-wasm', 2048, 100, 300)]),
    ]);
    const [speed, ratio, probeLine] = backwardGoalLines(slow);
    expect(speed).toMatch(/N=1024 8\.00x, N=2048 133x, N=4096 not measured: bar >= 10x not met$/);
    expect(ratio).toMatch(/N=1024 4\.00x.*bar <= 3x not met$/);
    expect(probeLine).toBe('wasm RSS probe: not run');
    // a WRONG row is no evidence for a bar
    const wrong = results([
      subject(
        'wasm',
        'attnkit',
        BAR_SIZES.map((n) => row('wasm', n, 1, 2, { pass: false })),
      ),
      subject(
        'tfjs-wasm',
        'peer',
        BAR_SIZES.map((n) => row('tfjs-wasm', n, 100, 300)),
      ),
    ]);
    expect(backwardGoalLines(wrong)[0]).toMatch(/not measured.*not met$/);
    // a forward-only run has no bar lines
    expect(backwardGoalLines(results([]))).toEqual([]);
  });
});

describe('--mode backward: a tiny real run (built dist/cli.js)', () => {
  it('times cpu and the naive peer apart, checks their gradients, reports onnxruntime n/a and probes cpu', () => {
    const out = mkdtempSync(path.join(os.tmpdir(), 'attnkit-bench-backward-'));
    const stdout = execFileSync(
      process.execPath,
      [
        cli,
        '--mode',
        'backward',
        '--backends',
        'cpu,naive-js,ort-node-attention',
        '--sizes',
        '32,64',
        '--heads',
        'h1',
        '--causal',
        'true',
        '--rss-probe',
        '256',
        '--no-browser',
        '--no-html',
        '-o',
        out,
      ],
      { encoding: 'utf8' },
    );
    expect(stdout).toContain('backward-causal-d64-h1: forward and backward timed apart');
    expect(stdout).toContain("Issue 13's bars, this run:");
    const r = JSON.parse(readFileSync(path.join(out, 'bench-backward.json'), 'utf8')) as BenchResults;
    expect(r.subjects.map((s) => s.id)).toEqual(['cpu', 'naive-js', 'ort-node-attention']);
    for (const s of r.subjects.slice(0, 2))
      for (const x of s.rows) {
        expect(x.status).toBe('ok');
        expect(x.check?.pass).toBe(true);
        expect(x.phases?.forward.median).toBeGreaterThan(0);
        expect(x.memory?.rssPeakSource).toBe('high-water mark');
      }
    expect(r.subjects[2].rows.map((x) => x.status)).toEqual(['not-applicable', 'not-applicable']);
    expect(r.rssProbe?.map((p) => [p.subject, p.status, p.finite])).toEqual([['cpu', 'ok', true]]);
    expect(r.rssProbe?.[0].deltaBytes).toBeGreaterThanOrEqual(0);
  });

  it('--rss-probe without --mode backward or prefill is refused before any run', () => {
    for (const mode of [[], ['--mode', 'decode-cache']])
      expect(() =>
        execFileSync(process.execPath, [cli, ...mode, '--rss-probe', '128', '--no-browser'], {
          encoding: 'utf8',
          stdio: 'pipe',
        }),
      ).toThrow(/--rss-probe measures one forward \(--mode prefill\) or forward \+ backward/);
  });

  it('--mode prefill --rss-probe: one cold forward per CPU backend, its last rows checked against float64', () => {
    const out = mkdtempSync(path.join(os.tmpdir(), 'attnkit-bench-forward-probe-'));
    const stdout = execFileSync(
      process.execPath,
      [
        cli,
        '--mode',
        'prefill',
        '--backends',
        'cpu,naive-js',
        '--sizes',
        '32',
        '--heads',
        'h1',
        '--causal',
        'true',
        '--rss-probe',
        '512',
        '--no-browser',
        '--no-html',
        '-o',
        out,
      ],
      { encoding: 'utf8' },
    );
    expect(stdout).toContain('last rows vs f64');
    const r = JSON.parse(readFileSync(path.join(out, 'bench-full.json'), 'utf8')) as BenchResults;
    // the probe takes attnkit's CPU backends only, never a peer
    expect(r.rssProbe?.map((p) => [p.subject, p.status, p.finite, p.workload.mode, p.workload.n])).toEqual([
      ['cpu', 'ok', true, 'prefill', 512],
    ]);
    const probe = r.rssProbe?.[0];
    expect(probe?.backwardMs).toBeUndefined();
    expect(probe?.forwardMs).toBeGreaterThan(0);
    // cpu computes in float64 and rounds once: its rows are within float32 rounding of the reference
    expect(probe?.checkedError).toBeLessThan(1e-6);
    // no gradOutput among a forward's inputs: q, k, v of 512 x 64 floats
    expect(probe?.inputBytes).toBe(4 * 3 * 512 * 64);
  });
});
