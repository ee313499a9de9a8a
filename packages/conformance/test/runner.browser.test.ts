// The core runner and the vitest adapter in a real browser: no Node built-ins, no `process`.
import { createReferenceBackend } from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { runConformance } from '../src/index.js';
import { describeConformance } from '../src/vitest.js';

describe('in the browser', () => {
  it('has no Node process object here (the runner must not need one)', () => {
    expect(typeof (globalThis as { process?: { memoryUsage?: unknown } }).process?.memoryUsage).not.toBe(
      'function',
    );
  });

  it('runConformance passes the reference backend', async () => {
    const report = await runConformance(createReferenceBackend, { seed: 11, repeatCalls: 200 });
    const failures = report.cases.filter((c) => c.status === 'failed').map((c) => `${c.id}: ${c.message}`);
    expect(failures).toEqual([]);
    expect(report.totals.passed).toBeGreaterThanOrEqual(150);
    const memory = report.cases.find((c) => c.id === 'memory/repeated-attention');
    expect(memory?.message).toMatch(/process memory not measured/);
  });
});

describeConformance(createReferenceBackend, { filter: /^(options|heads|random)\//, seed: 12 });
