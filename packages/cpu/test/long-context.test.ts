import { randomAttentionInputs } from '@attnkit/conformance';
import { expectClose } from '@attnkit/conformance/vitest';
import { describe, expect, it } from 'vitest';
import { CPU_TOLERANCE, createCpuBackend } from '../src/index.js';

const N = 65536;
const D = 64;
const MiB = 1024 * 1024;

/**
 * Row `i` of causal attention, in float64, from its definition: softmax over keys `0..i` of
 * `dot(q_i, k_j) / sqrt(D)`, then the weighted sum of values. Hand-derived rather than the full
 * reference, which would need an N x N pass.
 */
function causalRow64(q: Float32Array, k: Float32Array, v: Float32Array, i: number): Float64Array {
  const scale = 1 / Math.sqrt(D);
  const logits = new Float64Array(i + 1);
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j <= i; j++) {
    let dot = 0;
    for (let d = 0; d < D; d++) dot += q[i * D + d] * k[j * D + d];
    logits[j] = scale * dot;
    max = Math.max(max, logits[j]);
  }
  let sum = 0;
  for (let j = 0; j <= i; j++) sum += Math.exp(logits[j] - max);
  const out = new Float64Array(D);
  for (let j = 0; j <= i; j++) {
    const w = Math.exp(logits[j] - max) / sum;
    for (let d = 0; d < D; d++) out[d] += w * v[j * D + d];
  }
  return out;
}

describe('long context', () => {
  it(
    `causal N = ${N}, D = ${D}, one head runs with memory far below an N x N buffer (16 GiB)`,
    async () => {
      const inputs = randomAttentionInputs({ batch: 1, queryHeads: 1, queryLength: N, headDim: D }, 7);
      const backend = createCpuBackend();
      const before = process.memoryUsage();
      const started = performance.now();
      const cpuBefore = process.cpuUsage();
      const { output } = await backend.attention(inputs, { causal: true });
      const cpu = process.cpuUsage(cpuBefore);
      const seconds = (performance.now() - started) / 1000;
      // CPU time too: on a shared machine the wall clock says more about the neighbours than the kernel
      const cpuSeconds = (cpu.user + cpu.system) / 1e6;
      const after = process.memoryUsage();
      // The call is synchronous, so nothing can sample during it; the process's peak RSS (maxRSS,
      // KiB) after it, minus the RSS before it, bounds the peak growth from above. Arrays the call
      // dropped are very likely not collected yet, so the after-sample of arrayBuffers still counts them.
      const peakRss = process.resourceUsage().maxRSS * 1024;
      const rssGrowth = (peakRss - before.rss) / MiB;
      const arrayBufferGrowth = (after.arrayBuffers - before.arrayBuffers) / MiB;
      console.log(
        `causal N=${N} D=${D}: ${seconds.toFixed(1)} s wall, ${cpuSeconds.toFixed(1)} s CPU, rss +${rssGrowth.toFixed(1)} MiB, ` +
          `arrayBuffers +${arrayBufferGrowth.toFixed(1)} MiB, scratch ${backend.memory().hostBytes} B`,
      );
      // The output itself is N * D * 4 B = 16 MiB; an N x N float32 buffer would be 16 GiB
      expect(arrayBufferGrowth).toBeLessThan(256);
      expect(rssGrowth).toBeLessThan(256);
      expect(backend.memory().hostBytes).toBeLessThan(4 * MiB);
      for (const i of [0, 1, 63, 64, 4097, 40000, N - 2, N - 1]) {
        const expected = causalRow64(inputs.q, inputs.k, inputs.v, i);
        expectClose(output.subarray(i * D, (i + 1) * D), expected, CPU_TOLERANCE, `row ${i}`);
      }
      await backend.dispose();
    },
    15 * 60 * 1000,
  );
});
