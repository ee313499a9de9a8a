/**
 * The decode-cache mode's own tables: per-step latency (median, p10, p90) of every subject at every
 * cache length, the cache against the same backend's stateless call, and issue 12's bars read off a
 * run. Browser-safe (the report draws these); the terminal versions are in `decode-text.ts`.
 */
import { DECODE_CACHE_HEADLINE_SERIES, type ResultRow, type SubjectReport } from '@attnkit/benchmarks';
import { formatMs, formatRatio, rowAt, seriesSizes, usable } from './analysis.js';
import type { BenchResults } from './results.js';
import { escapeHtml } from './tables-html.js';

/** One subject at one cache length of a decode-cache series. */
export interface DecodeRow {
  subject: string;
  n: number;
  medianMs: number;
  p10Ms: number;
  p90Ms: number;
  steps: number;
  /** Failed the float64 reference check (at the gate or at this size). */
  wrong: boolean;
  /** The other execution provider(s) an onnxruntime session put nodes on, or null. */
  fallback: string | null;
  /** `<id>-stateless` median / this median, for an attnkit cache subject with a usable baseline. */
  vsStateless: number | null;
}

/** The `-stateless` baseline id of an attnkit backend, e.g. `cpu` -> `cpu-stateless`. */
export function statelessId(id: string): string {
  return `${id}-stateless`;
}

function ordered(results: BenchResults): SubjectReport[] {
  const ok = results.subjects.filter((s) => s.status === 'ok');
  return [...ok.filter((s) => s.kind === 'attnkit'), ...ok.filter((s) => s.kind === 'peer')];
}

function usableAt(s: SubjectReport | undefined, series: string, n: number): ResultRow | null {
  if (s === undefined || s.status !== 'ok') return null;
  const row = rowAt(s, series, n);
  return row !== undefined && usable(row) ? row : null;
}

/** Every timed subject at every cache length of a decode-cache series (empty for another series). */
export function decodeRows(results: BenchResults, series: string): DecodeRow[] {
  const byId = new Map(results.subjects.map((s) => [s.id, s]));
  const rows: DecodeRow[] = [];
  for (const s of ordered(results))
    for (const n of seriesSizes(results, series)) {
      const row = rowAt(s, series, n);
      if (row === undefined || row.workload.mode !== 'decode-cache' || row.status !== 'ok') continue;
      const t = row.timing;
      if (t === undefined) continue;
      const baseline = s.id.endsWith('-stateless') ? null : usableAt(byId.get(statelessId(s.id)), series, n);
      rows.push({
        subject: s.id,
        n,
        medianMs: t.median,
        p10Ms: t.p10,
        p90Ms: t.p90,
        steps: t.reps,
        wrong: row.check != null && !row.check.pass,
        fallback: row.placement?.fallback ?? null,
        vsStateless: baseline?.timing !== undefined && usable(row) ? baseline.timing.median / t.median : null,
      });
    }
  return rows;
}

export const DECODE_HEAD = [
  'subject',
  'Lk',
  'median ms',
  'p10 ms',
  'p90 ms',
  'steps',
  'vs stateless',
  'check',
];

export function decodeCells(r: DecodeRow): string[] {
  return [
    r.subject,
    String(r.n),
    formatMs(r.medianMs),
    formatMs(r.p10Ms),
    formatMs(r.p90Ms),
    String(r.steps),
    r.vsStateless === null ? '' : formatRatio(r.vsStateless),
    r.wrong ? 'WRONG' : r.fallback !== null ? `fallback: ${r.fallback}` : 'ok',
  ];
}

export const DECODE_FOOTNOTE =
  "A step: append the new token's K/V, attend with its query, read the output back (onnxruntime: one GroupQueryAttention session.run with past/present K/V). " +
  '"vs stateless": the same backend\'s stateless attention over the whole K/V per step / the cache step (above 1: the cache is faster). ' +
  "WRONG (float64 reference) and fallback (a node off its label's execution provider) rows count in no ratio.";

/** The same table as HTML for the report; '' for a series without decode-cache rows. */
export function decodeTableHtml(results: BenchResults, series: string): string {
  const rows = decodeRows(results, series);
  if (rows.length === 0) return '';
  const head = `<tr>${DECODE_HEAD.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr>`;
  const body = rows
    .map(
      (r) =>
        `<tr>${decodeCells(r)
          .map((c) => `<td>${escapeHtml(c)}</td>`)
          .join('')}</tr>`,
    )
    .join('\n');
  return `<table class="decode"><thead>${head}</thead><tbody>${body}</tbody></table><p class="meta">${escapeHtml(DECODE_FOOTNOTE)}</p>`;
}

/** Issue 12's cache lengths for the peer bars (GQA 32/8, D 128). */
export const DECODE_BAR_SIZES: readonly number[] = [4096, 8192, 32768];
/** wasm 1 thread against onnxruntime-web 1 thread, and against onnxruntime-node 1 thread. */
export const DECODE_BAR_WEB = 2;
export const DECODE_BAR_NODE = 1;
/** wasm all cores (2 on these machines) against wasm 1 thread, at every Lk >= 4096. */
export const DECODE_BAR_THREADS = 1.7;
export const DECODE_BAR_THREADS_FROM = 4096;
/** cpu's cache step against cpu's stateless call at Lk 8192. */
export const DECODE_BAR_CPU = 3;
export const DECODE_BAR_CPU_AT = 8192;

/**
 * `peer / ours` at each size (the faster-is-above-1 ratio), "not measured" where a side has no
 * usable row; `met` only when every size was measured and reached `bar`.
 */
function barLine(
  title: string,
  ours: SubjectReport | undefined,
  theirs: SubjectReport | undefined,
  series: string,
  sizes: readonly number[],
  bar: number,
): string {
  if (sizes.length === 0) return `${title} (${series}): no such Lk in this run: not measured`;
  const parts: string[] = [];
  let met = true;
  for (const n of sizes) {
    const a = usableAt(ours, series, n);
    const b = usableAt(theirs, series, n);
    if (a?.timing === undefined || b?.timing === undefined) {
      parts.push(`Lk=${n} not measured`);
      met = false;
      continue;
    }
    const ratio = b.timing.median / a.timing.median;
    if (ratio < bar) met = false;
    parts.push(`Lk=${n} ${formatRatio(ratio)}`);
  }
  return `${title} (${series}): ${parts.join(', ')}: bar >= ${bar}x ${met ? 'met' : 'not met'}`;
}

/**
 * Issue 12's bars, one line each ("met", "not met", or "not measured" per size): wasm 1t >= 2x
 * onnxruntime-web 1t GQA and >= onnxruntime-node 1t GQA at Lk 4096, 8192, 32768 (GQA 32/8, D 128);
 * wasm on all cores >= 1.7x wasm 1t at every Lk >= 4096 of the series; cpu's cache >= 3x cpu's
 * stateless call at Lk 8192. Empty for a run without decode-cache rows.
 */
export function decodeGoalLines(results: BenchResults, series = DECODE_CACHE_HEADLINE_SERIES): string[] {
  const has = results.subjects.some((s) => s.rows.some((r) => r.workload.mode === 'decode-cache'));
  if (!has) return [];
  const byId = new Map(results.subjects.map((s) => [s.id, s]));
  const wasm = byId.get('wasm');
  const mt = byId.get('wasm-mt');
  const threads = mt?.info?.threads;
  const threadSizes = seriesSizes(results, series).filter((n) => n >= DECODE_BAR_THREADS_FROM);
  return [
    barLine(
      'wasm 1t vs onnxruntime-web 1t GQA',
      wasm,
      byId.get('ort-web-1t-gqa'),
      series,
      DECODE_BAR_SIZES,
      DECODE_BAR_WEB,
    ),
    barLine(
      'wasm 1t vs onnxruntime-node 1t GQA',
      wasm,
      byId.get('ort-node-gqa'),
      series,
      DECODE_BAR_SIZES,
      DECODE_BAR_NODE,
    ),
    barLine(
      `wasm-mt (${threads ?? '?'} threads) vs wasm 1t`,
      mt,
      wasm,
      series,
      threadSizes,
      DECODE_BAR_THREADS,
    ),
    barLine(
      'cpu cache vs cpu stateless',
      byId.get('cpu'),
      byId.get('cpu-stateless'),
      series,
      [DECODE_BAR_CPU_AT],
      DECODE_BAR_CPU,
    ) + cpuCeilingNote(results, byId.get('cpu'), byId.get('cpu-stateless'), series),
  ];
}

/**
 * What the cpu bar asks of plain JavaScript: `DECODE_BAR_CPU` times the stateless call's useful
 * GFLOP/s, as a share of the plain-JS multiply-add ceiling measured in the same run (a share above
 * 100% cannot be reached by any pure-JS kernel on this machine). Empty without the ceiling or rows.
 */
function cpuCeilingNote(
  results: BenchResults,
  cache: SubjectReport | undefined,
  stateless: SubjectReport | undefined,
  series: string,
): string {
  const ceiling = results.ceilings?.jsGflops;
  const ours = usableAt(cache, series, DECODE_BAR_CPU_AT);
  const base = usableAt(stateless, series, DECODE_BAR_CPU_AT);
  if (ceiling === undefined || ours?.timing === undefined || base?.timing === undefined) return '';
  const gflops = (row: ResultRow, ms: number) => row.flops.useful / ms / 1e6;
  const now = gflops(ours, ours.timing.median);
  const needed = DECODE_BAR_CPU * gflops(base, base.timing.median);
  const share = (x: number) => `${((100 * x) / ceiling).toFixed(0)}%`;
  return ` (the cache runs at ${now.toPrecision(3)} useful GFLOP/s, ${share(now)} of this run's plain-JS multiply-add ceiling of ${ceiling.toPrecision(3)}; ${DECODE_BAR_CPU}x would need ${needed.toPrecision(3)}, ${share(needed)})`;
}
