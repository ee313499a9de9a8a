import {
  DECODE_CACHE_GRID,
  DECODE_CACHE_QUICK_GRID,
  DECODE_CACHE_RUN,
  makeWorkload,
  QUICK_DECODE_CACHE_RUN,
  type ResultRow,
  type SubjectReport,
  summarize,
} from '@attnkit/benchmarks';
import { describe, expect, it } from 'vitest';
import { cellText, ratioTable, usable } from '../src/analysis.js';
import { DECODE_BAR_SIZES, decodeGoalLines, decodeRows, decodeTableHtml } from '../src/decode-tables.js';
import { decodeTableText } from '../src/decode-text.js';
import { type CliOptions, program, resolveRun, selectEntries } from '../src/options.js';
import { outputPlan } from '../src/paths.js';
import { renderHtml } from '../src/report.js';
import type { BenchResults } from '../src/results.js';
import {
  ALL_SUBJECTS,
  BROWSER_SUBJECTS,
  NODE_BACKENDS,
  NODE_GQA_PEERS,
  NODE_PEERS,
  NODE_STATELESS,
} from '../src/subjects.js';
import { handMadeResults } from './fixtures.js';

const SERIES = 'decode-cache-causal-d128-gqa';
const NODE = [...NODE_BACKENDS, ...NODE_STATELESS, ...NODE_PEERS, ...NODE_GQA_PEERS];

function parse(args: string[]): CliOptions {
  const cmd = program();
  cmd.parse(args, { from: 'user' });
  return cmd.opts<CliOptions>();
}

describe('--mode decode-cache: options', () => {
  it('selects the decode-cache grid and run options, the quick variant, and keeps the filters', () => {
    const full = resolveRun(parse(['--mode', 'decode-cache']));
    expect(full.grid).toEqual(DECODE_CACHE_GRID);
    expect(full.run).toEqual({ ...DECODE_CACHE_RUN, seed: 1 });
    expect(full.probe).toBeNull();
    const quick = resolveRun(parse(['--mode', 'decode-cache', '--quick']));
    expect(quick.grid).toEqual(DECODE_CACHE_QUICK_GRID);
    expect(quick.run).toEqual({ ...QUICK_DECODE_CACHE_RUN, seed: 1 });
    const narrowed = resolveRun(
      parse([
        '--mode',
        'decode-cache',
        '--sizes',
        '4096,8192,32768',
        '--heads',
        'gqa',
        '--dims',
        '128',
        '--budget',
        '20',
      ]),
    );
    expect(narrowed.grid).toEqual({
      ...DECODE_CACHE_GRID,
      sizes: [4096, 8192, 32768],
      heads: ['gqa'],
      headDims: [128],
    });
    expect(narrowed.run.seriesBudgetMs).toBe(20000);
    // causal changes nothing for one decode query: one value whatever is asked
    expect(resolveRun(parse(['--mode', 'decode-cache', '--causal', 'both'])).grid.causal).toEqual([true]);
  });

  it('runs the attnkit backends, their stateless baselines and the GQA peers; others only when named', () => {
    const ids = selectEntries(NODE, { mode: 'decode-cache' }).map((e) => e.id);
    expect(ids).toEqual([
      'cpu',
      'wasm',
      'wasm-mt',
      'webgpu-dawn',
      'cpu-stateless',
      'wasm-stateless',
      'wasm-mt-stateless',
      'webgpu-dawn-stateless',
      'ort-web-1t-gqa',
      'ort-web-mt-gqa',
      'ort-node-gqa',
    ]);
    expect(selectEntries(BROWSER_SUBJECTS, { mode: 'decode-cache' })).toEqual([]);
    expect(
      selectEntries(NODE, { mode: 'decode-cache', backends: ['wasm', 'ort-web-1t', 'naive-js'] }).map(
        (e) => e.id,
      ),
    ).toEqual(['wasm', 'wasm-mt', 'wasm-stateless', 'wasm-mt-stateless', 'naive-js', 'ort-web-1t-gqa']);
    // the other modes never start the decode-only subjects unless named by id
    const forward = selectEntries(ALL_SUBJECTS, {}).map((e) => e.id);
    expect(forward).not.toContain('cpu-stateless');
    expect(forward).not.toContain('ort-node-gqa');
    expect(selectEntries(ALL_SUBJECTS, { backends: ['cpu-stateless'] }).map((e) => e.id)).toEqual([
      'cpu-stateless',
    ]);
    expect(selectEntries(ALL_SUBJECTS, { mode: 'backward' }).map((e) => e.id)).not.toContain(
      'wasm-stateless',
    );
  });

  it('writes bench-decode-cache(-quick).*', () => {
    expect(outputPlan({ mode: 'decode-cache' }).name).toBe('bench-decode-cache');
    expect(outputPlan({ mode: 'decode-cache', quick: true }).name).toBe('bench-decode-cache-quick');
    expect(() => outputPlan({ mode: 'decode-cache', updateCommitted: true, quick: true })).toThrow(
      /bench-decode-cache\.\*/,
    );
  });
});

/** A synthetic timed decode-cache row with the given median (one step). */
function row(
  subject: string,
  n: number,
  ms: number,
  opts: { pass?: boolean; fallback?: string } = {},
): ResultRow {
  const t = summarize([ms * 0.9, ms, ms * 1.2], 3);
  return {
    subject,
    workload: makeWorkload('decode-cache', true, 128, 'gqa', n),
    status: 'ok',
    timing: t,
    flops: { dense: 1e6, useful: 1e6 },
    gflops: { dense: 1, useful: 1 },
    check: {
      maxAbsError: 0,
      worstRatio: opts.pass === false ? 5 : 0.1,
      pass: opts.pass !== false,
      atol: 0,
      rtol: 0,
    },
    ...(opts.fallback !== undefined && {
      placement: { expected: 'CPUExecutionProvider', nodes: { [opts.fallback]: 1 }, fallback: opts.fallback },
    }),
  };
}

function subject(id: string, kind: 'attnkit' | 'peer', rows: ResultRow[], threads = 1): SubjectReport {
  return {
    id,
    kind,
    family: id.replace(/-gqa$/, ''),
    label: id,
    environment: 'node',
    status: 'ok',
    info: { engine: id, threads, notes: [] },
    rows,
    stopped: {},
    elapsedMs: 0,
  };
}

function results(subjects: SubjectReport[]): BenchResults {
  const grid = { ...DECODE_CACHE_GRID, sizes: [4096, 8192, 32768], headDims: [128], heads: ['gqa' as const] };
  return handMadeResults(subjects, grid, DECODE_CACHE_RUN);
}

const at = (
  id: string,
  ms: (n: number) => number,
  opts: (n: number) => Parameters<typeof row>[3] = () => ({}),
) => DECODE_BAR_SIZES.map((n) => row(id, n, ms(n), opts(n)));

describe('decode-cache tables and bars', () => {
  it('per-step median, p10, p90 and the cache against its stateless call', () => {
    const r = results([
      subject(
        'cpu',
        'attnkit',
        at('cpu', () => 2),
      ),
      subject(
        'cpu-stateless',
        'attnkit',
        at('cpu-stateless', () => 8),
      ),
    ]);
    const rows = decodeRows(r, SERIES);
    const cpu = rows.find((x) => x.subject === 'cpu' && x.n === 8192);
    expect(cpu).toMatchObject({
      medianMs: 2,
      p10Ms: expect.closeTo(1.84, 6),
      p90Ms: expect.closeTo(2.32, 6),
      steps: 3,
      vsStateless: 4,
    });
    expect(rows.find((x) => x.subject === 'cpu-stateless')?.vsStateless).toBeNull();
    expect(decodeTableText(r, SERIES)).toMatch(/4\.00x/);
    expect(decodeTableHtml(r, SERIES)).toContain('<table class="decode">');
    expect(decodeTableText(r, 'prefill-causal-d64-h1')).toBe('');
  });

  it("reports issue 12's bars: met, not met, not measured", () => {
    const r = results([
      subject(
        'wasm',
        'attnkit',
        at('wasm', () => 10),
      ),
      subject(
        'wasm-mt',
        'attnkit',
        at('wasm-mt', () => 5),
        2,
      ),
      subject(
        'cpu',
        'attnkit',
        at('cpu', () => 10),
      ),
      subject(
        'cpu-stateless',
        'attnkit',
        at('cpu-stateless', () => 20),
      ),
      subject(
        'ort-web-1t-gqa',
        'peer',
        at('ort-web-1t-gqa', () => 25),
      ),
      // onnxruntime-node: faster than wasm at 32768, absent at 8192
      subject(
        'ort-node-gqa',
        'peer',
        at('ort-node-gqa', (n) => (n === 32768 ? 9 : 11)).filter((x) => x.workload.n !== 8192),
      ),
    ]);
    const lines = decodeGoalLines(r);
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(
      /onnxruntime-web 1t.*Lk=4096 2\.50x, Lk=8192 2\.50x, Lk=32768 2\.50x: bar >= 2x met/,
    );
    expect(lines[1]).toMatch(/Lk=8192 not measured.*Lk=32768 0\.90x: bar >= 1x not met/);
    expect(lines[2]).toMatch(/wasm-mt \(2 threads\).*Lk=4096 2\.00x.*bar >= 1\.7x met/);
    expect(lines[3]).toMatch(/cpu cache vs cpu stateless.*Lk=8192 2\.00x: bar >= 3x not met$/);
    // with the plain-JS ceiling of the same run: 1e6 useful FLOP in 10 ms (cache) and 20 ms
    // (stateless) are 0.1 and 0.05 GFLOP/s; 3x the stateless is 0.15, against a ceiling of 0.2
    const withCeiling = { ...r, ceilings: { simdGflops: 50, jsGflops: 0.2, copyGBps: 20, method: 'test' } };
    expect(decodeGoalLines(withCeiling)[3]).toMatch(
      /bar >= 3x not met \(the cache runs at 0\.100 useful GFLOP\/s, 50% of this run's plain-JS multiply-add ceiling of 0\.200; 3x would need 0\.150, 75%\)$/,
    );
    expect(decodeGoalLines(results([]))).toEqual([]);
    expect(renderHtml(r)).toContain("Issue 12's bars");
  });

  it('WRONG and fallback rows count in no ratio and no bar, and say so in their cells', () => {
    const wrong = row('ort-web-1t-gqa', 4096, 1000, { pass: false });
    const fallback = row('ort-web-1t-gqa', 8192, 1000, { fallback: 'JsExecutionProvider' });
    expect(usable(wrong)).toBe(false);
    expect(usable(fallback)).toBe(false);
    expect(usable(row('x', 4096, 1))).toBe(true);
    expect(cellText(fallback)).toMatch(/fallback: JsExecutionProvider/);
    expect(cellText(wrong)).toMatch(/WRONG/);
    const r = results([
      subject(
        'wasm',
        'attnkit',
        at('wasm', () => 10),
      ),
      subject('ort-web-1t-gqa', 'peer', [wrong, fallback, row('ort-web-1t-gqa', 32768, 1000)]),
    ]);
    expect(decodeGoalLines(r)[0]).toMatch(
      /Lk=4096 not measured, Lk=8192 not measured, Lk=32768 100x: bar >= 2x not met/,
    );
    const ratios = ratioTable(r, SERIES).rows.filter((x) => x.backend === 'wasm');
    expect(ratios.map((x) => x.cells['ort-web-1t'].ratio)).toEqual([null, null, 100]);
    expect(decodeRows(r, SERIES).map((x) => [x.n, x.wrong, x.fallback])).toContainEqual([
      8192,
      false,
      'JsExecutionProvider',
    ]);
  });
});
