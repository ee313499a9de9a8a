import type { BackendFactory } from '@attnkit/spec';
import { afterAll, beforeAll, describe, it } from 'vitest';
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
