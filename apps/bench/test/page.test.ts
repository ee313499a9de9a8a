import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeWorkload, QUICK_BACKWARD_RUN, QUICK_RUN } from '@attnkit/benchmarks';
import { chromium } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { CHROMIUM, CHROMIUM_FLAGS, servePage } from '../src/browser.js';

/** The tests check the page's plumbing: no budget may stop a size on a loaded machine. */
const NO_BUDGETS = { seriesBudgetMs: 1e6, headlineBudgetMs: 1e6, maxRunMs: 1e6 };

const pageDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'web');

describe('bench page (built dist/web) in headless Chromium', () => {
  it('is built', () => {
    expect(existsSync(path.join(pageDir, 'index.html'))).toBe(true);
  });

  it('runs a subject with the shared runner and checks it against the reference in the page', async () => {
    const { server, url } = await servePage(pageDir);
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(error.message));
      await page.goto(url);
      await page.waitForFunction(() => window.__benchReady === true);
      const request = {
        subjects: ['cpu', 'no-such-subject'],
        series: [[makeWorkload('prefill', true, 16, 'h1', 32), makeWorkload('prefill', true, 16, 'h1', 64)]],
        // No budgets: the test checks the page's plumbing, and on a loaded machine a budget stop would
        // skip a row at random.
        options: { ...QUICK_RUN, ...NO_BUDGETS, minTimeMs: 5, maxReps: 3 },
      };
      const result = await page.evaluate((r) => window.runBench(r), request);
      expect(result.userAgent).toContain('Chrome');
      const [cpu, unknown] = result.reports;
      expect(cpu.status).toBe('ok');
      expect(cpu.environment).toMatch(/^browser/);
      expect(cpu.rows.map((r) => [r.status, r.check?.pass])).toEqual([
        ['ok', true],
        ['ok', true],
      ]);
      expect(unknown).toMatchObject({ id: 'no-such-subject', status: 'unavailable' });
      expect(unknown.reason).toContain('unknown browser subject');
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
      server.close();
    }
  });

  it('runs the backward mode in the page: cpu gradients gated against the float64 reference there', async () => {
    const { server, url } = await servePage(pageDir);
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(error.message));
      await page.goto(url);
      await page.waitForFunction(() => window.__benchReady === true);
      const request = {
        subjects: ['cpu', 'ort-webgpu-matmul'],
        series: [[makeWorkload('backward', true, 16, 'h1', 32)]],
        options: { ...QUICK_BACKWARD_RUN, ...NO_BUDGETS, minTimeMs: 5, maxReps: 2, backwardGateSize: 24 },
      };
      const result = await page.evaluate((r) => window.runBench(r), request);
      const [cpu, ort] = result.reports;
      expect(cpu.rows.map((r) => [r.status, r.check?.pass, r.phases?.derived])).toEqual([
        ['ok', true, false],
      ]);
      // onnxruntime has no backward: not applicable (or unavailable where the page has no WebGPU)
      if (ort.status === 'ok') expect(ort.rows[0].status).toBe('not-applicable');
      else expect(ort.status).toBe('unavailable');
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
      server.close();
    }
  });
});
