import { createReferenceBackend } from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { listCases, runConformance } from '../src/index.js';

describe('the reference backend', () => {
  it('passes every case, none omitted or reduced', async () => {
    const report = await runConformance(createReferenceBackend, { seed: 1234 });
    const failures = report.cases.filter((c) => c.status === 'failed').map((c) => `${c.id}: ${c.message}`);
    expect(failures).toEqual([]);
    expect(report.totals.passed).toBeGreaterThanOrEqual(150);
    expect(report.totals.omitted).toBe(0);
    // no limits declared: the limit cases run large shapes against the reference
    const limit = report.cases.find((c) => c.id === 'limits/headDim');
    expect(limit).toMatchObject({ status: 'passed', expectation: 'match-reference' });
    expect(report.totals.cases).toBe(listCases().length);
    expect(report.totals.reduced).toBe(0);
    expect(report.backend).toMatchObject({ name: 'reference', error: null });
    expect(report.seed).toBe(1234);
    expect(report.tolerance).toEqual({ atol: 1e-7, rtol: 1e-6 });
    // JSON-serialisable as is: nothing lost on a round trip.
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
  });

  it('covers every group the brief names', () => {
    const groups = new Set(listCases().map((c) => c.group));
    for (const group of [
      'options',
      'combos',
      'sizes',
      'stability',
      'rounding',
      'longkeys',
      'masked',
      'positions',
      'heads',
      'cross',
      'nonfinite',
      'layer',
      'matmul',
      'invalid',
      'lifecycle',
      'limits',
      'determinism',
      'memory',
      'concurrency',
      'random',
    ]) {
      expect(groups.has(group), group).toBe(true);
    }
    const ids = listCases().map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.filter((id) => id.startsWith('options/bias-'))).toHaveLength(16);
  });

  it('records worst errors that are small but real (float32 rounding of the float64 result)', async () => {
    const report = await runConformance(createReferenceBackend, { filter: 'options/default-scale' });
    const [result] = report.cases;
    expect(result.status).toBe('passed');
    expect(result.worstAbsError).toBeGreaterThan(0);
    expect(result.worstAbsError).toBeLessThan(1e-7);
    expect(result.errorRatio).toBeLessThan(1);
  });
});
