// The ratio pass by pass (--passes): hand-made reports whose per-pass ratios are known by hand.
import type { ResultRow, SubjectReport, Workload } from '@attnkit/benchmarks';
import { describe, expect, it } from 'vitest';
import {
  formatSpread,
  mergeSpreads,
  passRatioSpread,
  spreadTableMarkdown,
  summarizeSpread,
} from '../src/pass-spread.js';
import { type BenchResults, serializeResults } from '../src/results.js';
import { spreadTableText } from '../src/table.js';
import { ratioTableHtml } from '../src/tables-html.js';
import { handMadeResults } from './fixtures.js';

const workload = (n: number) => ({ series: 's', n, id: `s-n${n}` }) as unknown as Workload;

function row(n: number, median: number, wrong = false): ResultRow {
  return {
    subject: 'x',
    workload: workload(n),
    status: 'ok',
    timing: { median, p10: median, p90: median, mean: median, min: median, max: median, reps: 3, warmup: 1 },
    ...(wrong && { check: { pass: false, maxAbsError: 1, tolerance: 0.01 } }),
    flops: { dense: 1, useful: 1 },
  } as ResultRow;
}

function subject(id: string, kind: 'attnkit' | 'peer', family: string, rows: ResultRow[]): SubjectReport {
  return { id, kind, family, label: id, environment: 'node', status: 'ok', rows, stopped: {}, elapsedMs: 1 };
}

function results(subjects: SubjectReport[]): BenchResults {
  const grid: BenchResults['grid'] = {
    sizes: [1, 2],
    headDims: [64],
    heads: ['h1'],
    causal: [true],
    modes: ['prefill'],
  };
  return handMadeResults(subjects, grid, {} as BenchResults['options']);
}

// three passes; the peer family 'fam' has two variants, of which each pass takes its faster one
const passes: SubjectReport[][] = [
  [
    subject('a', 'attnkit', 'a', [row(1, 10), row(2, 40)]),
    subject('fam-1', 'peer', 'fam', [row(1, 12), row(2, 30)]),
    subject('fam-2', 'peer', 'fam', [row(1, 15), row(2, 36)]),
    subject('q', 'peer', 'q', [row(1, 20), row(2, 80)]),
  ],
  [
    subject('q', 'peer', 'q', [row(1, 5, true), row(2, 60)]),
    subject('fam-2', 'peer', 'fam', [row(1, 8), row(2, 50)]),
    subject('fam-1', 'peer', 'fam', [row(1, 9), row(2, 44)]),
    subject('a', 'attnkit', 'a', [row(1, 10), row(2, 40)]),
  ],
  [
    subject('a', 'attnkit', 'a', [row(1, 8), row(2, 50)]),
    subject('fam-1', 'peer', 'fam', [row(1, 10), row(2, 40)]),
    subject('fam-2', 'peer', 'fam', [row(1, 16), row(2, 45)]),
  ],
];

describe('passRatioSpread', () => {
  const base = results(passes[0]);
  const spread = passRatioSpread(base, passes);
  const at = (n: number, family: string) => spread.find((s) => s.n === n && s.family === family)?.perPass;

  it('takes each pass alone: the best usable variant of the family over attnkit, in that pass', () => {
    // N 1: fam 12/10, 8/10, 10/8; N 2: fam 30/40, 44/40, 40/50
    expect(at(1, 'fam')).toEqual([1.2, 0.8, 1.25]);
    expect(at(2, 'fam')).toEqual([0.75, 1.1, 0.8]);
  });

  it('leaves a gap where a side has no usable time: a wrong row, a subject missing from a pass', () => {
    // pass 2's q row at N 1 is wrong; pass 3 has no q at all
    expect(at(1, 'q')).toEqual([2, null, null]);
    expect(at(2, 'q')).toEqual([2, 1.5, null]);
    expect(spread.every((s) => s.backend === 'a' && s.series === 's')).toBe(true);
    expect(spread).toHaveLength(4);
  });
});

describe('summarizeSpread', () => {
  it('median, range and passes at least 1, over the passes with a ratio', () => {
    expect(summarizeSpread([1.2, 0.8, 1.25])).toEqual({
      median: 1.2,
      min: 0.8,
      max: 1.25,
      ahead: 2,
      passes: 3,
    });
    // an even count: the mean of the middle two; exactly 1 counts as at least as fast
    expect(summarizeSpread([2, null, 1, 0.5, 1.5])).toEqual({
      median: 1.25,
      min: 0.5,
      max: 2,
      ahead: 3,
      passes: 4,
    });
    expect(summarizeSpread([null, null])).toBeNull();
    expect(formatSpread({ median: 1.2, min: 0.8, max: 1.25, ahead: 2, passes: 3 })).toBe(
      '1.20x (0.80x-1.25x, 2/3 >= 1)',
    );
  });
});

describe('the spread tables', () => {
  const withSpread: BenchResults = { ...results(passes[0]), passes: 3 };
  withSpread.ratioSpread = passRatioSpread(withSpread, passes);

  it('text, markdown and the HTML ratio cell say the per-pass figures; a one-pass run has none', () => {
    const text = spreadTableText(withSpread, 's') ?? '';
    expect(text).toContain('s: ratio per pass: median (range, passes with attnkit at least as fast)');
    expect(text).toContain('1.20x (0.80x-1.25x, 2/3 >= 1)');
    expect(text).toContain('0.80x (0.75x-1.10x, 1/3 >= 1)');
    const md = spreadTableMarkdown(withSpread, 's') ?? '';
    expect(md).toContain('| 1 | a | 1.20x (0.80x-1.25x, 2/3 >= 1) | 2.00x (2.00x-2.00x, 1/1 >= 1) |');
    expect(ratioTableHtml(withSpread, 's')).toContain('per pass: 1.20x (0.80x-1.25x, 2/3 &#62;= 1)');
    expect(spreadTableText(results(passes[0]), 's')).toBeNull();
    expect(spreadTableMarkdown(results(passes[0]), 's')).toBeNull();
  });

  it('survives the result file (nulls kept, numbers to 4 digits)', () => {
    const back = JSON.parse(serializeResults(withSpread)) as BenchResults;
    expect(back.ratioSpread?.find((s) => s.n === 1 && s.family === 'q')?.perPass).toEqual([2, null, null]);
  });

  it('an appended run replaces the spreads of what it measured again and keeps the rest', () => {
    const earlier: BenchResults = {
      ...withSpread,
      ratioSpread: [
        { series: 's', n: 1, backend: 'a', family: 'fam', perPass: [1] },
        { series: 's', n: 1, backend: 'b', family: 'q', perPass: [2] },
        { series: 's', n: 1, backend: 'b', family: 'z', perPass: [3] },
      ],
    };
    const now: BenchResults = {
      ...results([subject('a', 'attnkit', 'a', [row(1, 1)]), subject('q', 'peer', 'q', [row(1, 1)])]),
      ratioSpread: [{ series: 's', n: 1, backend: 'a', family: 'q', perPass: [4, 5] }],
    };
    expect(mergeSpreads(earlier, now)).toEqual([
      { series: 's', n: 1, backend: 'b', family: 'z', perPass: [3] },
      { series: 's', n: 1, backend: 'a', family: 'q', perPass: [4, 5] },
    ]);
    expect(mergeSpreads(results([]), results([]))).toBeUndefined();
  });
});
