import { rowAt, seriesSizes, usable } from './analysis.js';
import type { BenchResults } from './results.js';

/** A JSON-safe echarts option (no functions), so Node can embed it in the report or render it to SVG. */
export type ChartOption = Record<string, unknown>;

/** What a chart plots for one subject at one size; `null` hides the point. */
type Metric = (results: BenchResults, subject: number, series: string, n: number) => number | null;

const PALETTE = [
  '#d62728',
  '#1f77b4',
  '#2ca02c',
  '#9467bd',
  '#ff7f0e',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
  '#393b79',
  '#637939',
  '#8c6d31',
  '#843c39',
  '#7b4173',
  '#3182bd',
  '#31a354',
  '#756bb1',
  '#636363',
  '#e6550d',
];

function lineChart(
  results: BenchResults,
  series: string,
  title: string,
  yName: string,
  yLog: boolean,
  metric: Metric,
): ChartOption {
  const sizes = seriesSizes(results, series);
  const lines = results.subjects
    .map((s, index) => ({
      name: s.kind === 'attnkit' ? `attnkit ${s.id}` : s.id,
      type: 'line',
      symbolSize: 6,
      // attnkit backends drawn solid and thick, peers dashed: the comparison reads at a glance
      lineStyle: { width: s.kind === 'attnkit' ? 3 : 1.5, type: s.kind === 'attnkit' ? 'solid' : 'dashed' },
      data: sizes
        .map((n) => [n, metric(results, index, series, n)])
        .filter((point): point is [number, number] => point[1] !== null && point[1] > 0),
    }))
    .filter((line) => line.data.length > 0);
  return {
    animation: false,
    color: PALETTE,
    title: { text: title, subtext: series, left: 'center', textStyle: { fontSize: 14 } },
    tooltip: { trigger: 'item' },
    // A plain (wrapping) legend: the SVG in the README is static, so a scrolling legend would hide names.
    legend: { type: 'plain', bottom: 0, textStyle: { fontSize: 10 } },
    grid: { left: 70, right: 30, top: 60, bottom: 130 },
    xAxis: {
      type: 'log',
      logBase: 2,
      name: 'context N',
      nameLocation: 'middle',
      nameGap: 28,
      min: sizes[0],
      max: sizes[sizes.length - 1],
    },
    yAxis: { type: yLog ? 'log' : 'value', name: yName, nameLocation: 'middle', nameGap: 50 },
    series: lines,
  };
}

/** Median latency against context size, log-log, one line per backend and peer. */
export function latencyChart(results: BenchResults, series: string): ChartOption {
  return lineChart(results, series, 'Latency (median)', 'ms', true, (r, i, s, n) => {
    const row = rowAt(r.subjects[i], s, n);
    return row !== undefined && usable(row) && row.timing ? row.timing.median : null;
  });
}

/** Useful GFLOP/s (visible pairs only) against context size. */
export function gflopsChart(results: BenchResults, series: string): ChartOption {
  return lineChart(results, series, 'Throughput (useful GFLOP/s)', 'GFLOP/s', true, (r, i, s, n) => {
    const row = rowAt(r.subjects[i], s, n);
    return row !== undefined && usable(row) && row.gflops ? row.gflops.useful : null;
  });
}

/**
 * Peak memory against context size: the process's peak RSS where measurable (Node, one process per
 * subject, so it is the subject's own), else the bytes the backend reports holding (wasm memory,
 * GPU buffers) as in the browser.
 */
export function memoryChart(results: BenchResults, series: string): ChartOption {
  return lineChart(
    results,
    series,
    'Peak memory (process RSS; browser: backend bytes)',
    'MiB',
    true,
    (r, i, s, n) => {
      const row = rowAt(r.subjects[i], s, n);
      if (row === undefined || row.status !== 'ok' || row.memory === undefined) return null;
      const m = row.memory;
      const own = (m.hostBytes ?? 0) + (m.deviceBytes ?? 0);
      const bytes = m.rssPeakBytes ?? (own > 0 ? own : null);
      return bytes === null ? null : bytes / 2 ** 20;
    },
  );
}
