import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as echarts from 'echarts';
import { seriesIds } from './analysis.js';
import { backwardTableHtml, probeTableHtml } from './backward-tables.js';
import { type ChartOption, gflopsChart, latencyChart, memoryChart } from './charts.js';
import { decodeGoalLines, decodeTableHtml } from './decode-tables.js';
import type { BenchResults } from './results.js';
import {
  escapeHtml,
  latencyTableHtml,
  ratioTableHtml,
  rooflineTableHtml,
  subjectsHtml,
} from './tables-html.js';

const require = createRequire(import.meta.url);

/** Renders an echarts option to an SVG string in Node (server-side rendering, no DOM). */
export function renderSvg(option: ChartOption, width = 900, height = 600): string {
  const chart = echarts.init(null, null, { renderer: 'svg', ssr: true, width, height });
  chart.setOption({ backgroundColor: '#ffffff', ...option });
  const svg = chart.renderToSVGString();
  chart.dispose();
  return svg;
}

/**
 * The self-contained HTML report: echarts inlined (works offline, one file), chart options computed
 * here and embedded as JSON, a selector to switch series, the ratio and latency tables, machine info.
 */
export function renderHtml(results: BenchResults): string {
  const echartsSource = readFileSync(require.resolve('echarts/dist/echarts.min.js'), 'utf8');
  const series = seriesIds(results);
  const charts: Record<string, { latency: ChartOption; gflops: ChartOption; memory: ChartOption }> = {};
  const tables: Record<
    string,
    { ratio: string; latency: string; roofline: string; backward: string; decode: string }
  > = {};
  for (const id of series) {
    charts[id] = {
      latency: latencyChart(results, id),
      gflops: gflopsChart(results, id),
      memory: memoryChart(results, id),
    };
    tables[id] = {
      ratio: ratioTableHtml(results, id),
      latency: latencyTableHtml(results, id),
      roofline: rooflineTableHtml(results, id),
      backward: backwardTableHtml(results, id),
      decode: decodeTableHtml(results, id),
    };
  }
  const m = results.machine;
  const machine = [
    `CPU: ${m.cpu} (${m.cores} logical cores)`,
    `memory: ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB`,
    `${m.platform} ${m.arch}`,
    `Node ${m.node ?? 'n/a'}`,
    `browser: ${m.browser ?? 'not run'}`,
    `GPU adapter: ${m.gpuAdapter ?? 'none found'}`,
  ]
    .map(escapeHtml)
    .join(' &middot; ');
  const versions = Object.entries(results.versions)
    .map(([name, version]) => escapeHtml(`${name} ${version}`))
    .join(' &middot; ');
  // "</script" inside embedded JSON would end the script element early
  const data = JSON.stringify({ charts, tables, series }).replace(/<\/(script)/gi, '<\\/$1');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>attnkit bench report</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:20px;color:#222;background:#fff}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px}
.chart{height:520px;border:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3}td.win{background:#e6f4e6}td.lose{background:#fbe9e9}td.na{color:#999}
.meta{color:#555;font-size:12px}
</style></head><body>
<h1>attnkit bench report${results.quick ? ' (quick)' : ''}</h1>
<p class="meta">${machine}<br>${versions.length > 0 ? `peers: ${versions}<br>` : ''}started ${escapeHtml(results.startedAt)}, finished ${escapeHtml(results.finishedAt)}.${results.passes === undefined ? '' : ` ${results.passes} passes, the subject order reversed every other pass: each row is its fastest pass's.`}
Ratios are peer median / attnkit median (above 1: attnkit is faster), against each peer family's best variant that passed the reference check.</p>
<label>Series: <select id="series"></select></label>
<div class="charts">
<div class="chart" id="chart-latency"></div>
<div class="chart" id="chart-gflops"></div>
<div class="chart" id="chart-memory"></div>
</div>
<h2>Ratio table (attnkit over each peer)</h2><div id="ratio"></div>
<h2>Latency, median ms ("budget": stopped by the time budget)</h2><div id="latency"></div>
<h2>CPU results against this machine's ceilings (useful GFLOP/s, least-traffic GB/s)</h2><div id="roofline"></div>
<div id="backward-section"><h2>Backward: forward and backward apart, ratio, GFLOP/s, peak memory</h2><div id="backward"></div></div>
<div id="decode-section"><h2>Decode with a resident cache: per-step latency, cache vs stateless</h2><div id="decode"></div></div>
${decodeBarsHtml(results)}
${results.rssProbe ? `<h2>Backward RSS probe</h2>${probeTableHtml(results.rssProbe)}` : ''}
<h2>Subjects</h2>${subjectsHtml(results)}
<script>${echartsSource}</script>
<script>
const DATA = ${data};
const select = document.getElementById('series');
for (const id of DATA.series) { const o = document.createElement('option'); o.value = id; o.textContent = id; select.appendChild(o); }
// SVG, not canvas: text and lines stay sharp when zoomed or printed, and are elements a test can measure
const init = (id) => echarts.init(document.getElementById(id), null, { renderer: 'svg' });
const charts = { latency: init('chart-latency'), gflops: init('chart-gflops'), memory: init('chart-memory') };
function show(id) {
  for (const key of Object.keys(charts)) charts[key].setOption(DATA.charts[id][key], true);
  document.getElementById('ratio').innerHTML = DATA.tables[id].ratio;
  document.getElementById('latency').innerHTML = DATA.tables[id].latency;
  document.getElementById('roofline').innerHTML = DATA.tables[id].roofline;
  document.getElementById('backward').innerHTML = DATA.tables[id].backward;
  document.getElementById('backward-section').style.display = DATA.tables[id].backward ? '' : 'none';
  document.getElementById('decode').innerHTML = DATA.tables[id].decode;
  document.getElementById('decode-section').style.display = DATA.tables[id].decode ? '' : 'none';
}
select.addEventListener('change', () => show(select.value));
window.addEventListener('resize', () => { for (const c of Object.values(charts)) c.resize(); });
if (DATA.series.length > 0) show(DATA.series[0]);
window.__chartsReady = true;
</script>
</body></html>
`;
}

/** Issue 12's bars as a list; '' for a run without decode-cache rows. */
function decodeBarsHtml(results: BenchResults): string {
  const lines = decodeGoalLines(results);
  if (lines.length === 0) return '';
  return `<h2>Issue 12's bars, this run</h2><ul>${lines.map((l) => `<li>${escapeHtml(l)}</li>`).join('')}</ul>`;
}
