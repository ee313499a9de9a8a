/**
 * Timings of @attnkit/webgl next to @attnkit/cpu (resolved from the workspace root's dev dependencies)
 * in the same headless Chromium page: one head, d = 64, causal, f32, median of a few runs after a
 * warm-up. Logs a table; asserts only that both backends agree, never speed.
 */
import type { AttentionBackend } from '@attnkit/spec';
import { expect, test } from 'vitest';
import { createWebglBackend } from '../src/index.js';
import { makeInputs } from '../test/helpers.js';

declare const __WEBGL_OPTIONS__: string;

const SIZES = [128, 256, 512, 1024];
const RUNS = 5;

async function median(backend: AttentionBackend, n: number): Promise<{ ms: number; output: Float32Array }> {
  const inputs = makeInputs({ batch: 1, queryHeads: 1, queryLength: n, headDim: 64 }, n);
  let output = (await backend.attention(inputs, { causal: true })).output;
  const times: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const t0 = performance.now();
    output = (await backend.attention(inputs, { causal: true })).output;
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(RUNS / 2)], output };
}

test('webgl vs cpu, N = 128..1024, d = 64, causal', async () => {
  // `as string` keeps tsc from resolving @attnkit/cpu (not a dependency of this package; the bench
  // finds it through the workspace root), while vite still sees a literal specifier to rewrite.
  const cpuModule = (await import('@attnkit/cpu' as string)) as { default: () => AttentionBackend };
  const webgl = createWebglBackend(JSON.parse(__WEBGL_OPTIONS__));
  const cpu = cpuModule.default();
  await webgl.init();
  const lines = [
    `engine: ${webgl.capabilities.engine}`,
    '| N | webgl ms | cpu ms | webgl/cpu |',
    '|---|---|---|---|',
  ];
  for (const n of SIZES) {
    const g = await median(webgl, n);
    const c = await median(cpu, n);
    let diff = 0;
    for (let i = 0; i < g.output.length; i++) diff = Math.max(diff, Math.abs(g.output[i] - c.output[i]));
    expect(diff).toBeLessThan(1e-4);
    lines.push(`| ${n} | ${g.ms.toFixed(1)} | ${c.ms.toFixed(1)} | ${(g.ms / c.ms).toFixed(2)} |`);
  }
  console.log(lines.join('\n'));
  await webgl.dispose();
  await cpu.dispose();
});
