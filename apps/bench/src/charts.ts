import { rowAt, seriesSizes, usable } from './analysis.js';
import type { BenchResults } from './results.js';

/** A JSON-safe echarts option (no functions), so Node can embed it in the report or render it to SVG. */
export type ChartOption = Record<string, unknown>;

/** What a chart plots for one subject at one size; `null` hides the point. */
type Metric = (results: BenchResults, subject: number, series: string, n: number) => number | null;

/** A line's look: colour and marker, fixed per subject so a subject looks the same in every chart. */
export interface SeriesStyle {
  color: string;
  symbol: string;
}

/**
 * One colour and one marker per known subject (27, the decode-cache mode's stateless baselines and
 * GroupQueryAttention peers included). The colours are far apart (a test checks the
 * distance) and dark enough for thin lines on white; the markers differ too, so two lines stay
 * apart for a reader who cannot tell two of the colours apart. No `pin` or `arrow`: echarts draws
 * those larger than the rest, and they crowded the legend.
 */
export const SUBJECT_STYLES: Readonly<Record<string, SeriesStyle>> = {
  cpu: { color: '#e6194b', symbol: 'circle' },
  wasm: { color: '#4363d8', symbol: 'rect' },
  'wasm-mt': { color: '#3cb44b', symbol: 'triangle' },
  'webgpu-dawn': { color: '#911eb4', symbol: 'diamond' },
  webgpu: { color: '#f58231', symbol: 'path://M0,0H20L10,20Z' },
  webgl: { color: '#000000', symbol: 'path://M10,0L20,7.6L16.2,20H3.8L0,7.6Z' },
  'naive-js': { color: '#606060', symbol: 'emptyCircle' },
  'tfjs-cpu': { color: '#9a6324', symbol: 'emptyRect' },
  'tfjs-wasm': { color: '#c9a800', symbol: 'emptyTriangle' },
  'ort-web-1t-attention': { color: '#19b5d8', symbol: 'emptyDiamond' },
  'ort-web-1t-mha': { color: '#f032e6', symbol: 'path://M0,5H20V15H0Z' },
  'ort-web-1t-matmul': { color: '#469990', symbol: 'path://M5,0H15V20H5Z' },
  'ort-web-mt-attention': { color: '#800000', symbol: 'roundRect' },
  'ort-web-mt-mha': { color: '#006400', symbol: 'emptyRoundRect' },
  'ort-web-mt-matmul': { color: '#000075', symbol: 'path://M0,10L10,0L20,10L10,20Z M10,4L16,10L10,16L4,10Z' },
  'ort-node-attention': { color: '#ff8fb0', symbol: 'path://M0,8H8V0H12V8H20V12H12V20H8V12H0Z' },
  'ort-node-mha': {
    color: '#a4d65e',
    symbol: 'path://M0,3L3,0L10,7L17,0L20,3L13,10L20,17L17,20L10,13L3,20L0,17L7,10Z',
  },
  'ort-node-matmul': { color: '#b39ddb', symbol: 'path://M0,0L20,10L0,20Z' },
  'ort-webgpu-attention': {
    color: '#0000e0',
    symbol: 'path://M10,0L13,7H20L14,12L16,20L10,15L4,20L6,12L0,7H7Z',
  },
  'ort-webgpu-matmul': { color: '#5c3a1e', symbol: 'path://M5,0H15L20,10L15,20H5L0,10Z' },
  'ort-webgpu-mha': { color: '#ff0099', symbol: 'path://M0,0H20V8H12V20H8V8H0Z' },
  'ort-webgpu-gqa': { color: '#00ff88', symbol: 'path://M0,20L10,0L20,20H14L10,10L6,20Z' },
  'tfjs-webgl': { color: '#66bbff', symbol: 'path://M0,0H20V20H0Z M6,6V14H14V6Z' },
  // decode-cache only; colours picked by a search for the largest distance from the ones above
  'cpu-stateless': { color: '#bb7777', symbol: 'path://M0,0H20V6H0Z M0,14H20V20H0Z' },
  'wasm-stateless': { color: '#5511ff', symbol: 'path://M0,0H6V20H0Z M14,0H20V20H14Z' },
  'wasm-mt-stateless': { color: '#00cc00', symbol: 'path://M10,0L20,20H0Z M10,8L15,18H5Z' },
  'webgpu-dawn-stateless': { color: '#660066', symbol: 'path://M0,0H20L20,20Z' },
  'ort-web-1t-gqa': { color: '#006666', symbol: 'path://M0,0L20,0L0,20Z' },
  'ort-web-mt-gqa': { color: '#66aa00', symbol: 'path://M0,20L20,20L20,0Z' },
  'ort-node-gqa': { color: '#dd5500', symbol: 'path://M0,0L10,10L20,0V20H0Z' },
};

/** For subjects outside the table (a new peer): cycled, never clashing with a table entry's pair. */
const EXTRA_COLOURS = ['#555555', '#1b7837', '#762a83', '#b2182b', '#2166ac'];
const EXTRA_SYMBOLS = [
  'path://M0,0H20V20H0Z M5,5V15H15V5Z',
  'path://M0,10L10,0L20,10L10,20Z M5,10L10,5L15,10L10,15Z',
];

/** The style of a subject by id; unknown ids get the `index`-th spare style. */
export function subjectStyle(id: string, index: number): SeriesStyle {
  return (
    SUBJECT_STYLES[id] ?? {
      color: EXTRA_COLOURS[index % EXTRA_COLOURS.length],
      symbol: EXTRA_SYMBOLS[index % EXTRA_SYMBOLS.length],
    }
  );
}

/** Room right of the plot for the legend column: the longest id (`ort-webgpu-attention`) at 10 px. */
const LEGEND_WIDTH = 175;

function lineChart(
  results: BenchResults,
  series: string,
  title: string,
  yName: string,
  yLog: boolean,
  metric: Metric,
): ChartOption {
  const sizes = seriesSizes(results, series);
  const unknown = results.subjects.filter((s) => SUBJECT_STYLES[s.id] === undefined).map((s) => s.id);
  const lines = results.subjects
    .map((s, index) => ({ s, index, style: subjectStyle(s.id, unknown.indexOf(s.id)) }))
    .map(({ s, index, style }) => ({
      name: s.kind === 'attnkit' ? `attnkit ${s.id}` : s.id,
      type: 'line',
      symbol: style.symbol,
      symbolSize: 7,
      itemStyle: { color: style.color },
      // attnkit backends drawn solid and thick, peers dashed: the comparison reads at a glance
      lineStyle: {
        color: style.color,
        width: s.kind === 'attnkit' ? 3 : 1.5,
        type: s.kind === 'attnkit' ? 'solid' : 'dashed',
      },
      data: sizes
        .map((n) => [n, metric(results, index, series, n)])
        .filter((point): point is [number, number] => point[1] !== null && point[1] > 0),
    }))
    .filter((line) => line.data.length > 0);
  return {
    animation: false,
    title: { text: title, subtext: series, left: 'center', textStyle: { fontSize: 14 } },
    tooltip: { trigger: 'item' },
    // A plain legend in its own column right of the plot: the SVG in the README is static, so a
    // scrolling legend would hide names, and a wrapping one under the plot ran into the axis title
    // (its height depends on the width, which the option cannot know).
    legend: {
      type: 'plain',
      orient: 'vertical',
      right: 8,
      top: 56,
      itemGap: 5,
      itemWidth: 22,
      itemHeight: 10,
      textStyle: { fontSize: 10 },
    },
    grid: { left: 70, right: LEGEND_WIDTH, top: 60, bottom: 56 },
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
