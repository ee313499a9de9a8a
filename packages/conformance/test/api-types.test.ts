// Type-level tests of @attnkit/conformance's public API (the runner, the vitest adapter, the report),
// checked by tsc (`pnpm typecheck` covers test/). The runtime assertion pins the report's totals.
import type { BackendCapabilities, BackendFactory, Tolerance } from '@attnkit/spec';
import { createReferenceBackend } from '@attnkit/spec';
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  type CaseResult,
  type CaseStatus,
  type ConformanceCase,
  type ConformanceOptions,
  type ConformanceReport,
  listCases,
  runConformance,
  summaryLine,
} from '../src/index.js';
import { describeConformance } from '../src/vitest.js';

describe('@attnkit/conformance public API', () => {
  it('runs over a BackendFactory and resolves to a JSON report', () => {
    expectTypeOf(runConformance).toEqualTypeOf<
      (factory: BackendFactory, options?: ConformanceOptions) => Promise<ConformanceReport>
    >();
    expectTypeOf(describeConformance).toEqualTypeOf<
      (factory: BackendFactory, options?: ConformanceOptions) => void
    >();
    expectTypeOf(listCases).returns.toEqualTypeOf<ConformanceCase[]>();
  });

  it('takes only optional options', () => {
    expectTypeOf<Record<string, never>>().toExtend<ConformanceOptions>();
    expectTypeOf<ConformanceOptions['seed']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<ConformanceOptions['maxWork']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<ConformanceOptions['timeoutMs']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<ConformanceOptions['filter']>().toEqualTypeOf<string | RegExp | undefined>();
    expectTypeOf<ConformanceOptions['onCaseDone']>().toEqualTypeOf<
      ((result: CaseResult) => void) | undefined
    >();
  });

  it('reports totals, cases, tolerance and seed', () => {
    expectTypeOf<ConformanceReport['totals']>().toEqualTypeOf<{
      cases: number;
      passed: number;
      failed: number;
      omitted: number;
      reduced: number;
    }>();
    expectTypeOf<ConformanceReport['cases']>().toEqualTypeOf<CaseResult[]>();
    expectTypeOf<ConformanceReport['tolerance']>().toEqualTypeOf<Tolerance | null>();
    expectTypeOf<ConformanceReport['seed']>().toEqualTypeOf<number>();
    expectTypeOf<ConformanceReport['backend']['capabilities']>().toEqualTypeOf<BackendCapabilities | null>();
    expectTypeOf<CaseStatus>().toEqualTypeOf<'passed' | 'failed' | 'omitted'>();
    expectTypeOf<CaseResult['id']>().toEqualTypeOf<string>();
    expectTypeOf<CaseResult['status']>().toEqualTypeOf<CaseStatus>();
  });

  it('ends its summary with the "N passed, M failed" line the CLI prints', async () => {
    const report = await runConformance(createReferenceBackend, { filter: 'options/causal', seed: 1 });
    expect(report.totals.cases).toBeGreaterThan(0);
    expect(report.totals.failed).toBe(0);
    expectTypeOf(summaryLine).parameter(0).toEqualTypeOf<ConformanceReport>();
    expect(summaryLine(report)).toMatch(new RegExp(`${report.totals.passed} passed, 0 failed$`));
  });
});
