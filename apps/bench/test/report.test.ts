import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  backendSubject,
  expandGrid,
  naivePeer,
  QUICK_RUN,
  referenceFor,
  runSubject,
} from '@attnkit/benchmarks';
import createCpuBackend from '@attnkit/cpu';
import { chromium } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { ratioTable } from '../src/analysis.js';
import { latencyChart } from '../src/charts.js';
import { renderHtml, renderSvg } from '../src/report.js';
import type { BenchResults } from '../src/results.js';
import { colourCount, decodePng, inkedPixels } from './png.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = path.join(here, '..', 'test-output');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const FLAGS = [
  '--no-sandbox',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
];

/** A real (tiny) run: the cpu backend and the naive peer on two sizes, checked against the reference. */
async function tinyRun(): Promise<BenchResults> {
  const grid = {
    sizes: [32, 64, 128],
    headDims: [16],
    heads: ['h1' as const],
    causal: [true],
    modes: ['prefill' as const],
  };
  const series = expandGrid(grid);
  const hooks = {
    now: () => performance.now(),
    rss: () => process.memoryUsage.rss(),
    reference: async (w: Parameters<typeof referenceFor>[0], inputs: Parameters<typeof referenceFor>[1]) =>
      referenceFor(w, inputs),
  };
  const options = { ...QUICK_RUN, minTimeMs: 5, maxReps: 3 };
  const cpu = await runSubject(
    backendSubject('cpu', 'cpu', createCpuBackend),
    'node',
    series,
    options,
    hooks,
  );
  const naive = await runSubject(naivePeer(), 'node', series, options, hooks);
  return {
    schema: 'attnkit-bench/1',
    startedAt: new Date().toISOString(),
    finishedAt: new Date().toISOString(),
    quick: true,
    grid,
    options,
    machine: {
      cpu: 'test',
      cores: 1,
      memoryBytes: 0,
      platform: 'test',
      arch: 'x64',
      node: process.version,
      browser: null,
      gpuAdapter: null,
    },
    versions: {},
    subjects: [cpu, naive],
  };
}

describe('report', () => {
  it('ratios are peer median over attnkit median', async () => {
    const results = await tinyRun();
    const { rows } = ratioTable(results, 'prefill-causal-d16-h1');
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      const cpu = results.subjects[0].rows.find((r) => r.workload.n === row.n);
      const naive = results.subjects[1].rows.find((r) => r.workload.n === row.n);
      expect(cpu?.check?.pass).toBe(true);
      expect(naive?.check?.pass).toBe(true);
      expect(row.cells['naive-js'].ratio).toBeCloseTo(
        (naive?.timing?.median ?? 0) / (cpu?.timing?.median ?? 1),
        10,
      );
    }
  });

  it('renders an SVG chart with one line per subject', async () => {
    const results = await tinyRun();
    const svg = renderSvg(latencyChart(results, 'prefill-causal-d16-h1'));
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('attnkit cpu');
    expect(svg).toContain('naive-js');
    expect((svg.match(/<path/g) ?? []).length).toBeGreaterThan(10);
  });

  it('the HTML report draws its charts in headless Chromium', async () => {
    const results = await tinyRun();
    mkdirSync(outDir, { recursive: true });
    const file = path.join(outDir, 'report.html');
    writeFileSync(file, renderHtml(results));
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
    try {
      const page = await browser.newPage({ viewport: { width: 1300, height: 1400 } });
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(error.message));
      await page.goto(`file://${file}`);
      await page.waitForFunction(
        () => (window as unknown as { __chartsReady?: boolean }).__chartsReady === true,
      );
      await page.waitForTimeout(300);
      writeFileSync(path.join(outDir, 'report.png'), await page.screenshot({ fullPage: true }));
      for (const id of ['chart-latency', 'chart-gflops', 'chart-memory']) {
        const shot = await page.locator(`#${id}`).screenshot();
        writeFileSync(path.join(outDir, `${id}.png`), shot);
        const image = decodePng(shot);
        expect(image.width).toBeGreaterThan(400);
        // lines, axes, labels and legend: thousands of inked pixels in many colours
        expect(inkedPixels(image), id).toBeGreaterThan(3000);
        expect(colourCount(image), id).toBeGreaterThan(8);
      }
      // the same measure on an element without a chart stays near zero, so the check above can fail
      await page.evaluate(() => {
        const blank = document.createElement('div');
        blank.id = 'blank';
        blank.style.cssText = 'width:600px;height:400px;background:#fff';
        document.body.prepend(blank);
      });
      const blank = decodePng(await page.locator('#blank').screenshot());
      expect(inkedPixels(blank)).toBe(0);
      expect(await page.locator('table.ratio td').count()).toBeGreaterThan(0);
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 120_000);
});
