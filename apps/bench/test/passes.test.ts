// fastestOfPasses (--passes): each row from the pass where it ran fastest, hand-made reports.
import type { ResultRow, SubjectReport, Workload } from '@attnkit/benchmarks';
import { describe, expect, it } from 'vitest';
import { type CliOptions, defaultPasses, program } from '../src/options.js';
import { fastestOfPasses } from '../src/results.js';

const workload = (n: number) => ({ series: 's', n }) as unknown as Workload;

function row(n: number, median: number | null, status: ResultRow['status'] = 'ok'): ResultRow {
  return {
    subject: 'x',
    workload: workload(n),
    status,
    ...(median !== null && {
      timing: {
        median,
        p10: median,
        p90: median,
        mean: median,
        min: median,
        max: median,
        reps: 3,
        warmup: 1,
      },
    }),
    ...(status === 'skipped' && { reason: `over budget at ${n}` }),
    flops: { dense: 1, useful: 1 },
  };
}

function report(id: string, rows: ResultRow[], status: SubjectReport['status'] = 'ok'): SubjectReport {
  const skipped = rows.find((r) => r.status === 'skipped');
  return {
    id,
    kind: 'attnkit',
    family: id,
    label: id,
    environment: 'node',
    status,
    rows,
    stopped: skipped === undefined ? {} : { s: { n: skipped.workload.n, reason: skipped.reason ?? '' } },
    elapsedMs: 10,
  };
}

describe('fastestOfPasses', () => {
  it('keeps each row of its fastest pass, in the first pass order, and sums the time spent', () => {
    const first = [report('a', [row(1, 5), row(2, 40)]), report('b', [row(1, 7), row(2, 30)])];
    const second = [report('b', [row(1, 6), row(2, 35)]), report('a', [row(1, 6), row(2, 20)])];
    const merged = fastestOfPasses([first, second]);
    expect(merged.map((s) => s.id)).toEqual(['a', 'b']);
    expect(merged[0].rows.map((r) => r.timing?.median)).toEqual([5, 20]);
    expect(merged[1].rows.map((r) => r.timing?.median)).toEqual([6, 30]);
    expect(merged[0].elapsedMs).toBe(20);
  });

  it('prefers a timed row to a skipped one, and a series stops where every pass skipped', () => {
    const first = [report('a', [row(1, 5), row(2, null, 'skipped'), row(3, null, 'skipped')])];
    const second = [report('a', [row(1, 9), row(2, 50), row(3, null, 'skipped')])];
    const [merged] = fastestOfPasses([first, second]);
    expect(merged.rows.map((r) => r.status)).toEqual(['ok', 'ok', 'skipped']);
    expect(merged.rows[1].timing?.median).toBe(50);
    expect(merged.stopped).toEqual({ s: { n: 3, reason: 'over budget at 3' } });
  });

  it('a subject unavailable in one pass keeps the other pass; one pass is returned as is', () => {
    const up = [report('a', [row(1, 5)])];
    const down = [report('a', [], 'unavailable')];
    expect(fastestOfPasses([down, up])[0].rows.map((r) => r.timing?.median)).toEqual([5]);
    expect(fastestOfPasses([up])).toEqual(up);
  });
});

describe('defaultPasses', () => {
  const parse = (args: string[]) => {
    const cmd = program();
    cmd.parse(args, { from: 'user' });
    return cmd.opts<CliOptions>();
  };

  it('runs the published tables (--update-committed) twice and any other run once', () => {
    expect(defaultPasses(parse(['--update-committed']))).toBe(2);
    expect(defaultPasses(parse([]))).toBe(1);
    expect(defaultPasses(parse(['--quick']))).toBe(1);
  });

  it('takes --passes as given, with or without --update-committed', () => {
    expect(defaultPasses(parse(['--update-committed', '--passes', '1']))).toBe(1);
    expect(defaultPasses(parse(['--passes', '3']))).toBe(3);
  });
});
