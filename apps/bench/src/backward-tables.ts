/**
 * The backward mode's own tables: forward and backward timed apart with their ratio, GFLOP/s and
 * the peak memory of each subject; the RSS probe; and issue 13's bars read off a run. The latency
 * and ratio tables of a backward series (forward + backward time) are the ordinary ones.
 * Browser-safe (the bench page draws these); the terminal versions are in `backward-text.ts`.
 */
import {
  BACKWARD_HEADLINE_SERIES,
  type ResultRow,
  type RssProbeResult,
  type SubjectReport,
} from '@attnkit/benchmarks';
import { formatMs, formatRatio, rowAt, seriesSizes, usable } from './analysis.js';
import type { BenchResults } from './results.js';
import { escapeHtml } from './tables-html.js';

/** One subject at one size of a backward series. */
export interface BackwardRow {
  subject: string;
  n: number;
  forwardMs: number;
  backwardMs: number;
  totalMs: number;
  /** Median backward / median forward. */
  ratio: number;
  /** The backward is (forward + backward) - forward (tf.grads re-runs the forward). */
  derived: boolean;
  /** Useful GFLOP/s of forward + backward, and of the backward alone (2.5 x the forward's FLOPs). */
  gflops: number;
  backwardGflops: number;
  /** Peak RSS over the size's runs above the RSS before them, when measured as a high-water mark. */
  peakDeltaBytes: number | null;
  /** Failed the float64 reference check (here or at the gate). */
  wrong: boolean;
}

/** The attnkit backends first, then the peers, in run order. */
function ordered(results: BenchResults): SubjectReport[] {
  const ok = results.subjects.filter((s) => s.status === 'ok');
  return [...ok.filter((s) => s.kind === 'attnkit'), ...ok.filter((s) => s.kind === 'peer')];
}

function toBackwardRow(subject: string, row: ResultRow): BackwardRow | null {
  const { phases, timing, memory } = row;
  if (row.status !== 'ok' || phases === undefined || timing === undefined) return null;
  const highWater =
    memory?.rssPeakSource === 'high-water mark' &&
    memory.rssPeakBytes !== null &&
    memory.rssBaselineBytes != null;
  return {
    subject,
    n: row.workload.n,
    forwardMs: phases.forward.median,
    backwardMs: phases.backward.median,
    totalMs: timing.median,
    ratio: phases.ratio,
    derived: phases.derived,
    gflops: row.gflops?.useful ?? 0,
    backwardGflops: phases.gflops.backward.useful,
    peakDeltaBytes: highWater ? (memory.rssPeakBytes as number) - (memory.rssBaselineBytes as number) : null,
    wrong: row.check != null && !row.check.pass,
  };
}

/** Every timed subject at every size of a backward series (empty for a forward series). */
export function backwardRows(results: BenchResults, series: string): BackwardRow[] {
  const rows: BackwardRow[] = [];
  for (const s of ordered(results))
    for (const n of seriesSizes(results, series)) {
      const row = rowAt(s, series, n);
      const b = row === undefined ? null : toBackwardRow(s.id, row);
      if (b !== null) rows.push(b);
    }
  return rows;
}

/** Subjects of the run whose backward rows say "not applicable", with the reason. */
export function notApplicable(results: BenchResults): { subject: string; reason: string }[] {
  const out: { subject: string; reason: string }[] = [];
  for (const s of results.subjects) {
    const row = s.rows.find((r) => r.status === 'not-applicable');
    if (row !== undefined) out.push({ subject: s.id, reason: row.reason ?? '' });
  }
  return out;
}

/** Bytes as MiB for display. */
export function formatMiB(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return 'n/a';
  const mib = bytes / 2 ** 20;
  return mib >= 100 ? mib.toFixed(0) : mib.toFixed(1);
}

export const HEAD = [
  'subject',
  'N',
  'fwd ms',
  'bwd ms',
  'fwd+bwd ms',
  'bwd/fwd',
  'GFLOP/s fwd+bwd',
  'GFLOP/s bwd',
  'peak RSS +MiB',
  'check',
];

export function cells(r: BackwardRow): string[] {
  return [
    r.subject,
    String(r.n),
    formatMs(r.forwardMs),
    `${formatMs(r.backwardMs)}${r.derived ? '*' : ''}`,
    formatMs(r.totalMs),
    formatRatio(r.ratio),
    r.gflops.toPrecision(3),
    r.backwardGflops.toPrecision(3),
    formatMiB(r.peakDeltaBytes),
    r.wrong ? 'WRONG' : 'ok',
  ];
}

export const FOOTNOTE =
  '* derived: tf.grads re-runs the forward, so its backward is (forward + backward) - forward. ' +
  'GFLOP/s: useful (visible pairs), backward = 2.5 x forward FLOPs. Peak RSS: the process high-water mark over the size above the RSS before it.';

/** The same table as HTML for the report; '' for a forward series. */
export function backwardTableHtml(results: BenchResults, series: string): string {
  const rows = backwardRows(results, series);
  const na = notApplicable(results);
  if (rows.length === 0 && na.length === 0) return '';
  const head = `<tr>${HEAD.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr>`;
  const body = rows
    .map(
      (r) =>
        `<tr>${cells(r)
          .map((c) => `<td>${escapeHtml(c)}</td>`)
          .join('')}</tr>`,
    )
    .join('\n');
  const notes = na.map((x) => `<li>${escapeHtml(`${x.subject}: ${x.reason}`)}</li>`).join('');
  return `<table class="backward"><thead>${head}</thead><tbody>${body}</tbody></table><p class="meta">${escapeHtml(FOOTNOTE)}</p>${notes ? `<p>Not applicable:</p><ul>${notes}</ul>` : ''}`;
}

export function probeCells(p: RssProbeResult): string[] {
  const ok = p.status === 'ok';
  return [
    p.subject,
    String(p.workload.n),
    ok ? p.status : `${p.status}: ${p.reason ?? ''}`,
    ok ? formatMiB(p.baselineBytes) : '',
    ok ? formatMiB(p.peakBytes) : '',
    ok ? formatMiB(p.deltaBytes) : '',
    formatMiB(p.scoreBufferBytes),
    ok && p.deltaBytes !== undefined ? `${((100 * p.deltaBytes) / p.scoreBufferBytes).toFixed(1)}%` : '',
    ok && p.forwardMs !== undefined ? formatMs(p.forwardMs) : '',
    ok && p.backwardMs !== undefined ? formatMs(p.backwardMs) : '',
    ok ? (p.finite ? 'yes' : 'NO') : '',
    ok && p.checkedError !== undefined ? p.checkedError.toExponential(1) : '',
  ];
}

export const PROBE_HEAD = [
  'subject',
  'N',
  'status',
  'RSS before MiB',
  'peak MiB',
  'peak - before MiB',
  'one N^2 f32 buffer MiB',
  'delta / N^2',
  'fwd ms (cold)',
  'bwd ms (cold)',
  'finite',
  'last rows vs f64',
];

export const PROBE_NOTE =
  'RSS probe: one causal forward + backward (--mode backward) or one forward (--mode prefill; its last 4 query rows checked against the float64 reference: "last rows vs f64" is the largest |error|) at D 64, one head, in a fresh process per subject; "before" is the RSS after the inputs are made (after a GC), "peak" the kernel high-water mark (VmHWM, reset at "before"). No warm-up (it would hide the first call\'s allocations), so the times are of one cold call.';

/** The RSS probe as HTML; '' when none ran. */
export function probeTableHtml(probes: readonly RssProbeResult[] | undefined): string {
  if (probes === undefined || probes.length === 0) return '';
  const head = `<tr>${PROBE_HEAD.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr>`;
  const body = probes
    .map(
      (p) =>
        `<tr>${probeCells(p)
          .map((c) => `<td>${escapeHtml(c)}</td>`)
          .join('')}</tr>`,
    )
    .join('\n');
  return `<table class="probe"><thead>${head}</thead><tbody>${body}</tbody></table><p class="meta">${escapeHtml(PROBE_NOTE)}</p>`;
}

/** The sizes the speed bar is quoted at (issue 13: N = 1024..4096, causal, D = 64). */
export const BAR_SIZES: readonly number[] = [1024, 2048, 4096];

/** Issue 13's bar for the speed against TF.js wasm, and for the backward/forward ratio. */
export const BAR_SPEEDUP = 10;
export const BAR_RATIO = 3;

function usableRow(s: SubjectReport | undefined, series: string, n: number): ResultRow | null {
  if (s === undefined || s.status !== 'ok') return null;
  const row = rowAt(s, series, n);
  return row !== undefined && usable(row) ? row : null;
}

/**
 * Issue 13's bars read off a run, one line each, saying "met", "not met" or why not measured:
 * `@attnkit/wasm` forward + backward at least 10x TF.js wasm's tf.grads at N = 1024..4096 causal
 * D 64; its backward at most 3x its own forward; and the N = 16384 probe of wasm and cpu against an
 * N^2 buffer. Empty for a run without backward rows.
 */
export function backwardGoalLines(results: BenchResults, series = BACKWARD_HEADLINE_SERIES): string[] {
  const hasBackward = results.subjects.some((s) => s.rows.some((r) => r.workload.mode === 'backward'));
  if (!hasBackward) return [];
  const byId = new Map(results.subjects.map((s) => [s.id, s]));
  const wasm = byId.get('wasm');
  const tfjs = byId.get('tfjs-wasm');
  const lines: string[] = [];
  const wasmNa = wasm?.rows.find((r) => r.workload.series === series && r.status === 'not-applicable');
  if (wasm === undefined || wasm.status !== 'ok') {
    lines.push(`wasm: ${wasm === undefined ? 'not in this run' : `unavailable: ${wasm.reason ?? ''}`}`);
  } else if (wasmNa !== undefined) {
    lines.push(`wasm: not applicable (${wasmNa.reason ?? ''}); the bars wait for its backward`);
  } else {
    const speed: string[] = [];
    let met = true;
    for (const n of BAR_SIZES) {
      const ours = usableRow(wasm, series, n);
      const theirs = usableRow(tfjs, series, n);
      if (ours?.timing === undefined || theirs?.timing === undefined) {
        speed.push(`N=${n} not measured`);
        met = false;
        continue;
      }
      const ratio = theirs.timing.median / ours.timing.median;
      if (ratio < BAR_SPEEDUP) met = false;
      speed.push(`N=${n} ${formatRatio(ratio)}`);
    }
    lines.push(
      `wasm forward+backward vs TF.js wasm tf.grads (${series}): ${speed.join(', ')}: bar >= ${BAR_SPEEDUP}x ${met ? 'met' : 'not met'}`,
    );
    const ratios = backwardRows(results, series).filter((r) => r.subject === 'wasm' && !r.wrong);
    if (ratios.length === 0) lines.push('wasm backward / forward: not measured');
    else {
      const worst = Math.max(...ratios.map((r) => r.ratio));
      lines.push(
        `wasm backward / forward (${series}): ${ratios.map((r) => `N=${r.n} ${formatRatio(r.ratio)}`).join(', ')}: bar <= ${BAR_RATIO}x ${worst <= BAR_RATIO ? 'met' : 'not met'}`,
      );
    }
  }
  for (const id of ['wasm', 'cpu']) {
    const p = results.rssProbe?.find((x) => x.subject === id);
    if (p === undefined) lines.push(`${id} RSS probe: not run`);
    else if (p.status !== 'ok' || p.deltaBytes === undefined)
      lines.push(`${id} RSS probe N=${p.workload.n}: ${p.status}${p.reason ? `: ${p.reason}` : ''}`);
    else
      lines.push(
        `${id} RSS probe N=${p.workload.n}: peak ${formatMiB(p.deltaBytes)} MiB above its inputs vs ${formatMiB(p.scoreBufferBytes)} MiB for one N^2 float32 buffer (${((100 * p.deltaBytes) / p.scoreBufferBytes).toFixed(1)}%)${p.finite ? '' : ', NON-FINITE gradients'}`,
      );
  }
  return lines;
}
