import type { BackendFactory, Tolerance } from '@attnkit/spec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConformanceSession, listCases, resolveConformanceOptions } from './runner.js';
import type { ConformanceOptions } from './types.js';

/**
 * Registers the conformance suite with vitest: one `describe` named after the suite and one `it` per
 * case (`group/name`), so a failure shows by name with its worst error and the seed. One shared
 * backend is created in `beforeAll` and every backend the suite made is disposed in `afterAll`.
 * Omitted cases (above `maxWork`, or a limit the backend does not declare) are marked skipped with
 * the reason.
 *
 * ```ts
 * import { describeConformance } from '@attnkit/conformance/vitest';
 * import createMyBackend from '../src/index.js';
 * describeConformance(createMyBackend, { maxWork: 5e7 });
 * ```
 */
export function describeConformance(factory: BackendFactory, options: ConformanceOptions = {}): void {
  // Resolve once so every case and every message uses the same seed.
  const resolved = resolveConformanceOptions(options);
  const fixed: ConformanceOptions = { ...options, seed: resolved.seed };
  const cases = listCases(fixed);
  describe(`attnkit conformance (seed ${resolved.seed})`, () => {
    let session: ConformanceSession;
    // The runner bounds the factory and init() by timeoutMs each, and a case may first have to
    // replace a backend retired after a timeout: vitest's own limits sit above those, so that a
    // hang is reported with the runner's message, not vitest's.
    beforeAll(
      async () => {
        session = new ConformanceSession(factory, fixed);
        await session.start();
      },
      2 * resolved.timeoutMs + 5_000,
    );
    afterAll(async () => {
      await session.finish();
    }, resolved.timeoutMs + 5_000);
    for (const testCase of cases) {
      it(
        testCase.id,
        async (context) => {
          const result = await session.runCase(testCase);
          if (result.status === 'omitted') context.skip(result.note ?? 'omitted');
          if (result.status === 'failed') {
            throw new Error(
              `${testCase.id} (${testCase.title}) failed [seed ${resolved.seed}]: ${result.message}` +
                (result.worstAbsError === null
                  ? ''
                  : ` (worst abs ${result.worstAbsError}, worst rel ${result.worstRelError})`),
            );
          }
        },
        3 * resolved.timeoutMs + 5_000,
      );
    }
  });
}

/**
 * Asserts `|actual - expected| <= atol + rtol * |expected|` element by element, for a backend's own
 * unit tests (the suite's cases use their own comparison and report). A non-finite expected value
 * (the float64 reference's IEEE result) must be met exactly: NaN by NaN, an infinity by the same
 * infinity. Fails with the first five offending indices; returns the largest absolute error over the
 * finite elements.
 */
export function expectClose(
  actual: ArrayLike<number> | undefined,
  expected: ArrayLike<number> | undefined,
  tolerance: Tolerance,
  label: string,
): number {
  expect(actual, `${label}: result missing`).toBeDefined();
  expect(expected, `${label}: reference missing`).toBeDefined();
  if (actual === undefined || expected === undefined) return Number.POSITIVE_INFINITY;
  expect(actual.length, `${label}: length`).toBe(expected.length);
  const failures: string[] = [];
  let worst = 0;
  for (let index = 0; index < expected.length; index++) {
    const e = expected[index];
    const a = actual[index];
    if (!Number.isFinite(e)) {
      if (!Object.is(a, e) && !(Number.isNaN(a) && Number.isNaN(e)) && failures.length < 5) {
        failures.push(`${label}[${index}]: expected ${e}, got ${a}`);
      }
      continue;
    }
    const error = Math.abs(a - e);
    const bound = tolerance.atol + tolerance.rtol * Math.abs(e);
    if (!(error <= bound) && failures.length < 5) {
      failures.push(`${label}[${index}]: expected ${e}, got ${a} (|error| ${error}, bound ${bound})`);
    }
    if (error > worst) worst = error;
  }
  if (failures.length > 0) expect.fail(`${label}: outside atol + rtol * |expected|: ${failures.join('; ')}`);
  return worst;
}
