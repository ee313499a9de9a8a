import {
  BACKWARD_GRID,
  BACKWARD_QUICK_GRID,
  BACKWARD_RUN,
  DECODE_CACHE_GRID,
  DECODE_CACHE_QUICK_GRID,
  DECODE_CACHE_RUN,
  expandGrid,
  FULL_GRID,
  FULL_RUN,
  type GridSpec,
  QUICK_BACKWARD_RUN,
  QUICK_DECODE_CACHE_RUN,
  QUICK_GRID,
  QUICK_RUN,
  type RunOptions,
} from '@attnkit/benchmarks';
import * as echarts from 'echarts';
import { seriesIds } from '../src/analysis.js';
import { backwardTableHtml } from '../src/backward-tables.js';
import { gflopsChart, latencyChart, memoryChart } from '../src/charts.js';
import type { BenchResults } from '../src/results.js';
import { latencyTableHtml, ratioTableHtml, subjectsHtml } from '../src/tables-html.js';
import { PAGE_SUBJECTS, runInPage } from './suite.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const charts = {
  latency: echarts.init($('chart-latency')),
  gflops: echarts.init($('chart-gflops')),
  memory: echarts.init($('chart-memory')),
};
window.addEventListener('resize', () => {
  for (const chart of Object.values(charts)) chart.resize();
});

function show(results: BenchResults, series: string): void {
  charts.latency.setOption(latencyChart(results, series), true);
  charts.gflops.setOption(gflopsChart(results, series), true);
  charts.memory.setOption(memoryChart(results, series), true);
  $('ratio').innerHTML = ratioTableHtml(results, series);
  $('latency').innerHTML = latencyTableHtml(results, series);
  const backward = backwardTableHtml(results, series);
  $('backward').innerHTML = backward;
  $('backward-section').hidden = backward === '';
  $('subjects-table').innerHTML = subjectsHtml(results);
}

function render(results: BenchResults): void {
  const select = $<HTMLSelectElement>('series');
  select.innerHTML = '';
  for (const id of seriesIds(results)) select.add(new Option(id, id));
  select.onchange = () => show(results, select.value);
  if (select.options.length > 0) show(results, select.options[0].value);
  const blob = new Blob([JSON.stringify(results, null, 1)], { type: 'application/json' });
  const link = $<HTMLAnchorElement>('download');
  link.href = URL.createObjectURL(blob);
  link.hidden = false;
}

for (const s of PAGE_SUBJECTS) {
  const label = document.createElement('label');
  label.innerHTML = `<input type="checkbox" name="subject" value="${s.id}" ${s.id === 'cpu' ? '' : 'checked'} /> ${s.label}<br />`;
  $('subjects').appendChild(label);
}

window.runBench = (request) => {
  let done = 0;
  const total = request.series.flat().length * request.subjects.length;
  const progress = $<HTMLProgressElement>('progress');
  progress.max = total;
  return runInPage(request, (subject, workload) => {
    done++;
    progress.value = done;
    $('progress-text').textContent = `${done}/${total} ${subject} ${workload}`;
    window.__benchProgress?.(subject, workload);
  });
};

/** The page's grid choices: the CLI's quick and full grids, and its backward and decode-cache modes'. */
const GRIDS: Record<string, { grid: GridSpec; options: RunOptions }> = {
  quick: { grid: QUICK_GRID, options: QUICK_RUN },
  full: { grid: FULL_GRID, options: FULL_RUN },
  'backward-quick': { grid: BACKWARD_QUICK_GRID, options: QUICK_BACKWARD_RUN },
  backward: { grid: BACKWARD_GRID, options: BACKWARD_RUN },
  'decode-cache-quick': { grid: DECODE_CACHE_QUICK_GRID, options: QUICK_DECODE_CACHE_RUN },
  'decode-cache': { grid: DECODE_CACHE_GRID, options: DECODE_CACHE_RUN },
};

$<HTMLFormElement>('form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = $<HTMLButtonElement>('run');
  button.disabled = true;
  const choice = (document.querySelector('input[name=grid]:checked') as HTMLInputElement).value;
  const subjects = [...document.querySelectorAll<HTMLInputElement>('input[name=subject]:checked')].map(
    (i) => i.value,
  );
  const { grid, options } = GRIDS[choice] ?? GRIDS.quick;
  const full = choice === 'full' || choice === 'backward' || choice === 'decode-cache';
  const startedAt = new Date().toISOString();
  try {
    const result = await window.runBench({ subjects, series: expandGrid(grid), options });
    const nav = navigator as Navigator & { deviceMemory?: number };
    render({
      schema: 'attnkit-bench/1',
      startedAt,
      finishedAt: new Date().toISOString(),
      quick: !full,
      grid,
      options,
      machine: {
        cpu: 'unknown (browser)',
        cores: navigator.hardwareConcurrency,
        memoryBytes: (nav.deviceMemory ?? 0) * 2 ** 30,
        platform: navigator.platform,
        arch: '',
        node: null,
        browser: result.userAgent,
        gpuAdapter: result.adapter,
      },
      versions: {},
      subjects: result.reports,
    });
    $('progress-text').textContent = 'done';
  } catch (error) {
    $('progress-text').textContent = `failed: ${error instanceof Error ? error.message : String(error)}`;
  } finally {
    button.disabled = false;
  }
});

window.__benchReady = true;
