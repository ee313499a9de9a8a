import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  makeWorkload,
  QUICK_BACKWARD_RUN,
  QUICK_RUN,
  type RunOptions,
  type Workload,
} from '@attnkit/benchmarks';
import { chromium } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { usable } from '../src/analysis.js';
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
        subjects: ['cpu'],
        series: [[makeWorkload('backward', true, 16, 'h1', 32)]],
        options: { ...QUICK_BACKWARD_RUN, ...NO_BUDGETS, minTimeMs: 5, maxReps: 2, backwardGateSize: 24 },
      };
      const result = await page.evaluate((r) => window.runBench(r), request);
      const [cpu] = result.reports;
      expect(cpu.rows.map((r) => [r.status, r.check?.pass, r.phases?.derived])).toEqual([
        ['ok', true, false],
      ]);
      // onnxruntime's backward rows ("not applicable") are checked in the peers' test below, which
      // pays for loading onnxruntime in a page once
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
      server.close();
    }
  });

  // GQA's prefill (the same op and graph builder as its decode, checked on onnxruntime-node in
  // benchmarks/test) is left out here: its shaders take SwiftShader 25 s to compile at any size
  it('runs the WebGPU and WebGL peers: onnxruntime WebGPU MHA and GQA decode (cache on the GPU) placed on WebGPU and correct, its Attention op a fallback, TF.js WebGL', async () => {
    const { server, url } = await servePage(pageDir);
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(error.message));
      await page.goto(url);
      await page.waitForFunction(() => window.__benchReady === true);
      const options = { ...QUICK_RUN, ...NO_BUDGETS, minTimeMs: 0, minReps: 1, maxReps: 1 };
      const run = (subjects: string[], series: Workload[][], extra: Partial<RunOptions> = {}) =>
        page.evaluate((r) => window.runBench(r), { subjects, series, options: { ...options, ...extra } });
      const prefill = await run(
        ['tfjs-webgl', 'ort-webgpu-attention', 'ort-webgpu-mha'],
        [[makeWorkload('prefill', true, 16, 'gqa', 16)]],
      );
      const byId = Object.fromEntries(prefill.reports.map((r) => [r.id, r]));
      for (const report of prefill.reports) {
        expect(report.status, `${report.id}: ${report.reason}`).toBe('ok');
        expect(report.rows[0].status, `${report.id}: ${report.rows[0].reason}`).toBe('ok');
        // every peer's output is checked against the float64 reference in the page
        expect(report.rows[0].check?.pass, report.id).toBe(true);
      }
      expect(byId['tfjs-webgl'].info?.engine).toMatch(/webgl \(WebGL 2, float32 textures\)/);
      const onWebGpu = {
        expected: 'WebGpuExecutionProvider',
        nodes: { WebGpuExecutionProvider: 1 },
        fallback: null,
      };
      expect(byId['ort-webgpu-mha'].rows[0].placement).toEqual(onWebGpu);
      expect(usable(byId['ort-webgpu-mha'].rows[0])).toBe(true);
      // onnxruntime-web has no WebGPU kernel for the standard Attention op: it runs on the wasm
      // CPU EP, and the row says so and stays out of every ratio
      const attention = byId['ort-webgpu-attention'].rows[0];
      expect(attention.placement?.fallback).toBe('CPUExecutionProvider');
      expect(usable(attention)).toBe(false);
      // decode with the cache resident on onnxruntime's device (past_* GPU tensors, present_* left there)
      const decode = await run(['ort-webgpu-gqa'], [[makeWorkload('decode-cache', true, 16, 'gqa', 24)]], {
        warmup: 1,
        decodeGateSize: 16,
      });
      const [gqaDecode] = decode.reports[0].rows;
      expect([gqaDecode.status, gqaDecode.check?.pass]).toEqual(['ok', true]);
      expect(gqaDecode.placement).toEqual(onWebGpu);
      // onnxruntime has no backward: not applicable
      const backward = await run(['ort-webgpu-matmul'], [[makeWorkload('backward', true, 16, 'h1', 32)]]);
      expect(backward.reports[0].rows[0].status).toBe('not-applicable');
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
      server.close();
    }
  });
});
