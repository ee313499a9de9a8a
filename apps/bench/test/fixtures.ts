// What the bench tests that build results by hand share: the results envelope around their subjects.
// Each test keeps its own rows and subjects (their fields are what it checks).
import type { BenchResults } from '../src/results.js';

/** A machine record for hand-made results: nothing a table reads from it is under test. */
export const TEST_MACHINE: BenchResults['machine'] = {
  cpu: 'test',
  cores: 2,
  memoryBytes: 0,
  platform: 'linux',
  arch: 'x64',
  node: 'v20',
  browser: null,
  gpuAdapter: null,
};

/** Hand-made results: `subjects` on `grid` run with `options`, the rest of the envelope fixed. */
export function handMadeResults(
  subjects: BenchResults['subjects'],
  grid: BenchResults['grid'],
  options: BenchResults['options'],
  extra: Partial<BenchResults> = {},
): BenchResults {
  return {
    schema: 'attnkit-bench/1',
    startedAt: '2026-12-03T00:00:00Z',
    finishedAt: '2026-12-03T00:01:00Z',
    quick: false,
    grid,
    options,
    machine: TEST_MACHINE,
    versions: {},
    subjects,
    ...extra,
  };
}
