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
import { ortWebNodePeer, peerVersions } from '@attnkit/benchmarks/node';
import createCpuBackend from '@attnkit/cpu';
import { chromium } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import {
  CROSS_ENVIRONMENT_MARK,
  CROSS_ENVIRONMENT_NOTE,
  ratioCellText,
  ratioTable,
} from '../src/analysis.js';
import { latencyChart, SUBJECT_STYLES } from '../src/charts.js';
import { renderHtml, renderSvg } from '../src/report.js';
import type { BenchResults } from '../src/results.js';
import { minimumBytes, rooflineRows } from '../src/roofline.js';
import { ALL_SUBJECTS } from '../src/subjects.js';
import { ratioTableMarkdown, ratioTableText, rooflineTableText } from '../src/table.js';
import { escapeHtml, ratioTableHtml } from '../src/tables-html.js';
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
  // No budgets: these tests check the report, and on a loaded machine a budget stop would skip a
  // row at random (it did: 'ratios are peer median...' once found 2 rows instead of 3).
  const options = {
    ...QUICK_RUN,
    seriesBudgetMs: 1e6,
    headlineBudgetMs: 1e6,
    maxRunMs: 1e6,
    minTimeMs: 5,
    maxReps: 3,
  };
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

  it('a ratio whose peer ran in the other environment is marked, with its footnote, in every table', async () => {
    const results = await tinyRun();
    const series = 'prefill-causal-d16-h1';
    // Same environment (both in Node): no mark, no footnote.
    expect(
      ratioTable(results, series).rows.every((r) => r.cells['naive-js'].peerEnvironment === undefined),
    ).toBe(true);
    expect(ratioTableText(results, series)).not.toContain(CROSS_ENVIRONMENT_MARK);
    expect(ratioTableMarkdown(results, series)).not.toContain(CROSS_ENVIRONMENT_NOTE);
    // The peer as if it had run in the Chromium page, the cpu backend still in Node.
    const [cpu, naive] = results.subjects;
    const across: BenchResults = { ...results, subjects: [cpu, { ...naive, environment: 'browser' }] };
    const { rows } = ratioTable(across, series);
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      const cell = row.cells['naive-js'];
      expect(cell.peerEnvironment).toBe('browser');
      expect(cell.ratio).toBe(
        ratioTable(results, series).rows.find((r) => r.n === row.n)?.cells['naive-js'].ratio,
      );
      expect(ratioCellText(cell)).toMatch(/^\d+\.\d+x†$/);
    }
    const text = ratioTableText(across, series);
    expect(text.split('†').length - 1).toBe(1 + 3); // the footnote's mark and one per row
    expect(text).toContain(CROSS_ENVIRONMENT_NOTE);
    expect(ratioTableMarkdown(across, series)).toContain(`x† |`);
    expect(ratioTableMarkdown(across, series)).toContain(CROSS_ENVIRONMENT_NOTE);
    const html = ratioTableHtml(across, series);
    expect(html).toContain('peer in the browser');
    expect(html).toContain(escapeHtml(CROSS_ENVIRONMENT_NOTE));
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

  it('every known subject has its own colour (far from every other) and its own marker', () => {
    const ids = ALL_SUBJECTS.map((e) => e.id);
    expect(Object.keys(SUBJECT_STYLES).sort()).toEqual([...ids].sort());
    const styles = ids.map((id) => SUBJECT_STYLES[id]);
    expect(new Set(styles.map((st) => st.symbol)).size).toBe(ids.length);
    const rgb = (hex: string) => [1, 3, 5].map((i) => Number.parseInt(hex.slice(i, i + 2), 16));
    for (let i = 0; i < ids.length; i++)
      for (let j = i + 1; j < ids.length; j++) {
        const [a, b] = [rgb(styles[i].color), rgb(styles[j].color)];
        const distance = Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
        expect(distance, `${ids[i]} ${styles[i].color} vs ${ids[j]} ${styles[j].color}`).toBeGreaterThan(70);
      }
  });

  it('the report of a full subject list: real line breaks, real versions, distinct series, legend clear of the axis titles', async () => {
    const tiny = await tinyRun();
    const template = tiny.subjects[0];
    const ortWeb = ortWebNodePeer('matmul', 1);
    // every subject the bench knows, with the cpu's rows (the layout, not the numbers, is under test)
    const results: BenchResults = {
      ...tiny,
      versions: peerVersions(),
      subjects: ALL_SUBJECTS.map((entry, i) => ({
        ...template,
        id: entry.id,
        kind: entry.kind,
        family: entry.id,
        label: entry.id.startsWith('ort-web-') ? ortWeb.label : entry.label,
        rows: template.rows.map((r) => ({
          ...r,
          subject: entry.id,
          timing: r.timing ? { ...r.timing, median: r.timing.median * (1 + i / 4) } : r.timing,
        })),
        info: {
          engine: entry.id.startsWith('ort-web-') ? ortWeb.label : entry.label,
          threads: 1,
          notes: [],
        },
        // two stops: the Subjects table must show them on two lines
        stopped: {
          'prefill-causal-d16-h1': { n: 256, reason: 'over budget' },
          'decode-causal-d16-h1': { n: 512, reason: 'too slow' },
        },
      })),
    };
    mkdirSync(outDir, { recursive: true });
    const file = path.join(outDir, 'report-all.html');
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
      writeFileSync(path.join(outDir, 'report-all.png'), await page.screenshot({ fullPage: true }));
      // biome-ignore lint/performance/useDomNodeTextContent: the rendered text; textContent includes the inlined echarts source
      const text = await page.locator('body').innerText();
      expect(text).not.toContain('<br>');
      expect(text).not.toMatch(/\bunknown\b/i);
      expect(text).toContain(`onnxruntime-web ${results.versions['onnxruntime-web']}`);
      // the two stops of a subject are two lines of its cell
      expect(await page.locator('table tr:has(td:text-is("cpu")) td br').count()).toBeGreaterThan(0);

      type Box = { x: number; y: number; width: number; height: number };
      const layout = await page.evaluate(() => {
        type EchartsLike = {
          getInstanceByDom(el: Element): {
            getOption(): { series: { name: string; symbol: string; lineStyle: { color: string } }[] };
          };
        };
        const ec = (window as unknown as { echarts: EchartsLike }).echarts;
        return ['chart-latency', 'chart-gflops', 'chart-memory'].map((id) => {
          const el = document.getElementById(id) as HTMLElement;
          const series = ec.getInstanceByDom(el).getOption().series;
          const box = (t: Element) => {
            const r = t.getBoundingClientRect();
            return { x: r.x, y: r.y, width: r.width, height: r.height };
          };
          const texts = [...el.querySelectorAll('svg text')].map((t) => ({
            text: t.textContent ?? '',
            box: box(t),
          }));
          return {
            id,
            container: box(el),
            series: series.map((s) => ({ name: s.name, symbol: s.symbol, color: s.lineStyle.color })),
            texts,
          };
        });
      });
      const overlap = (a: Box, b: Box) =>
        a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
      const inside = (a: Box, c: Box) =>
        a.x >= c.x - 0.5 &&
        a.y >= c.y - 0.5 &&
        a.x + a.width <= c.x + c.width + 0.5 &&
        a.y + a.height <= c.y + c.height + 0.5;
      for (const chart of layout) {
        expect(chart.series, chart.id).toHaveLength(ALL_SUBJECTS.length);
        expect(new Set(chart.series.map((s) => s.color)).size, chart.id).toBe(ALL_SUBJECTS.length);
        expect(new Set(chart.series.map((s) => s.symbol)).size, chart.id).toBe(ALL_SUBJECTS.length);
        const names = new Set(chart.series.map((s) => s.name));
        const legend = chart.texts.filter((t) => names.has(t.text));
        expect(legend, chart.id).toHaveLength(ALL_SUBJECTS.length);
        const titles = chart.texts.filter(
          (t) => t.text === 'context N' || ['ms', 'GFLOP/s', 'MiB'].includes(t.text),
        );
        expect(titles.length, chart.id).toBe(2);
        for (const [i, item] of legend.entries())
          for (const other of legend.slice(i + 1))
            expect(
              overlap(item.box, other.box),
              `${chart.id}: legend "${item.text}" over "${other.text}"`,
            ).toBe(false);
        for (const item of legend) {
          expect(inside(item.box, chart.container), `${chart.id}: ${item.text} clipped`).toBe(true);
          for (const title of titles)
            expect(
              overlap(item.box, title.box),
              `${chart.id}: legend "${item.text}" over "${title.text}"`,
            ).toBe(false);
        }
      }
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 120_000);

  it('CPU results are shown as shares of the ceilings measured in the same run', async () => {
    const results: BenchResults = {
      ...(await tinyRun()),
      ceilings: { simdGflops: 50, copyGBps: 20, method: 'test' },
    };
    const rows = rooflineRows(results, 'prefill-causal-d16-h1');
    expect(rows.map((r) => r.subject)).toEqual(['cpu', 'cpu', 'cpu', 'naive-js', 'naive-js', 'naive-js']);
    for (const r of rows) {
      const row = results.subjects.find((s) => s.id === r.subject)?.rows.find((x) => x.workload.n === r.n);
      const ms = row?.timing?.median ?? Number.NaN;
      expect(r.gflops).toBeCloseTo((row?.flops.useful ?? 0) / ms / 1e6, 10);
      expect(r.simdPercent).toBeCloseTo((100 * r.gflops) / 50, 10);
      // q, k, v and the output of one head, D 16, f32
      expect(minimumBytes(row?.workload ?? results.subjects[0].rows[0].workload)).toBe(4 * 4 * r.n * 16);
      expect(r.copyPercent).toBeCloseTo((100 * r.gbps) / 20, 10);
    }
    const text = rooflineTableText(results, 'prefill-causal-d16-h1');
    expect(text).toContain('wasm SIMD128 50.0 GFLOP/s per thread, memory copy 20.0 GB/s');
    expect(text).toContain('% SIMD128');
    // an older file without ceilings has no such table rather than a wrong one
    expect(rooflineRows({ ...results, ceilings: undefined }, 'prefill-causal-d16-h1')).toEqual([]);
    expect(renderHtml(results)).toContain('% of SIMD128 ceiling');
  });
});
