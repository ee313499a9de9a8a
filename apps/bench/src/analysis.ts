import type { ResultRow, SubjectReport } from '@attnkit/benchmarks';
import type { BenchResults } from './results.js';

/**
 * A row counts for comparisons when it was timed, where checked matched the reference, and (an
 * onnxruntime decode row) ran on the execution provider its label says.
 */
export function usable(row: ResultRow): boolean {
  return (
    row.status === 'ok' &&
    row.timing !== undefined &&
    (row.check == null || row.check.pass) &&
    row.placement?.fallback == null
  );
}

/** Available subjects of one kind. */
export function subjectsOf(results: BenchResults, kind: 'attnkit' | 'peer'): SubjectReport[] {
  return results.subjects.filter((s) => s.kind === kind && s.status === 'ok');
}

/** Every series id present, the headline first. */
export function seriesIds(results: BenchResults): string[] {
  const ids = new Set<string>();
  for (const s of results.subjects) for (const r of s.rows) ids.add(r.workload.series);
  return [...ids];
}

/** Sizes present in a series, ascending. */
export function seriesSizes(results: BenchResults, series: string): number[] {
  // every size of the grid, so a size that the budget skipped everywhere still shows as skipped
  const sizes = new Set<number>(results.grid.sizes);
  for (const s of results.subjects)
    for (const r of s.rows) if (r.workload.series === series) sizes.add(r.workload.n);
  return [...sizes].sort((a, b) => a - b);
}

/**
 * The row of a subject at (series, n). Saved results leave out the rows the budget skipped (the
 * subject's `stopped` entry says from which size and why): those come back as `skipped` rows.
 */
export function rowAt(subject: SubjectReport, series: string, n: number): ResultRow | undefined {
  const row = subject.rows.find((r) => r.workload.series === series && r.workload.n === n);
  if (row !== undefined) return row;
  const stop = subject.stopped[series];
  const template = subject.rows.find((r) => r.workload.series === series);
  if (stop === undefined || n < stop.n || template === undefined) return undefined;
  return {
    subject: subject.id,
    workload: { ...template.workload, id: `${series}-n${n}`, n },
    status: 'skipped',
    reason: stop.reason,
    flops: { dense: 0, useful: 0 },
  };
}

/** Peer families in display order; a family's best variant stands for it in ratios. */
export function peerFamilies(results: BenchResults): string[] {
  const order = [
    'naive-js',
    'tfjs-cpu',
    'tfjs-wasm',
    'tfjs-webgl',
    'ort-web-1t',
    'ort-web-mt',
    'ort-node',
    'ort-webgpu',
  ];
  const present = new Set(subjectsOf(results, 'peer').map((s) => s.family));
  return [...order.filter((f) => present.has(f)), ...[...present].filter((f) => !order.includes(f))];
}

/** Best (lowest median) usable variant of a peer family at (series, n), with the variant's id. */
export function bestPeer(
  results: BenchResults,
  family: string,
  series: string,
  n: number,
): { id: string; ms: number; environment: string } | null {
  let best: { id: string; ms: number; environment: string } | null = null;
  for (const s of subjectsOf(results, 'peer')) {
    if (s.family !== family) continue;
    const row = rowAt(s, series, n);
    if (row === undefined || !usable(row) || row.timing === undefined) continue;
    if (best === null || row.timing.median < best.ms)
      best = { id: s.id, ms: row.timing.median, environment: s.environment };
  }
  return best;
}

/** One cell of the ratio table: `peer ms / attnkit ms`, so 3 means attnkit is three times faster. */
export interface RatioCell {
  ratio: number | null;
  /** Why there is no ratio (one side skipped, failed or absent). */
  note?: string;
  peerVariant?: string;
  /**
   * The peer's environment where it is not the attnkit backend's (`webgpu-dawn` in Node against
   * onnxruntime in the Chromium page): the same machine and adapter, but not the same process, so
   * not a same-page ratio. Marked {@link CROSS_ENVIRONMENT_MARK} in every table.
   */
  peerEnvironment?: string;
}

/** The mark of a ratio whose two sides ran in different environments (see {@link RatioCell.peerEnvironment}). */
export const CROSS_ENVIRONMENT_MARK = '†';

/** The footnote of a ratio table with a marked cell. */
export const CROSS_ENVIRONMENT_NOTE = `${CROSS_ENVIRONMENT_MARK} the peer ran in the other environment (Node process vs the Chromium page): same machine and adapter, not the same process`;

/** A ratio cell as text: the ratio (marked when across environments), or why there is none. */
export function ratioCellText(cell: RatioCell): string {
  if (cell.ratio === null) return cell.note ?? '';
  return `${formatRatio(cell.ratio)}${cell.peerEnvironment === undefined ? '' : CROSS_ENVIRONMENT_MARK}`;
}

/** Whether any cell of a ratio table is across environments (then its footnote is printed). */
export function anyCrossEnvironment(rows: readonly RatioRow[]): boolean {
  return rows.some((r) =>
    Object.values(r.cells).some((c) => c.ratio !== null && c.peerEnvironment !== undefined),
  );
}

/** A ratio table row: one attnkit backend at one size of one series. */
export interface RatioRow {
  series: string;
  n: number;
  backend: string;
  backendMs: number | null;
  cells: Record<string, RatioCell>;
}

/** Ratios of every available attnkit backend over every peer family's best variant, for one series. */
export function ratioTable(results: BenchResults, series: string): { families: string[]; rows: RatioRow[] } {
  const families = peerFamilies(results);
  const rows: RatioRow[] = [];
  for (const n of seriesSizes(results, series)) {
    for (const backend of subjectsOf(results, 'attnkit')) {
      const row = rowAt(backend, series, n);
      const ms = row !== undefined && usable(row) && row.timing ? row.timing.median : null;
      const cells: Record<string, RatioCell> = {};
      for (const family of families) {
        const peer = bestPeer(results, family, series, n);
        if (ms === null) cells[family] = { ratio: null, note: row?.status ?? 'absent' };
        else if (peer === null) cells[family] = { ratio: null, note: 'peer n/a' };
        else
          cells[family] = {
            ratio: peer.ms / ms,
            peerVariant: peer.id,
            ...(peer.environment !== backend.environment && { peerEnvironment: peer.environment }),
          };
      }
      rows.push({ series, n, backend: backend.id, backendMs: ms, cells });
    }
  }
  return { families, rows };
}

/** Milliseconds for display: three significant digits. */
export function formatMs(ms: number): string {
  if (ms >= 100) return ms.toFixed(0);
  if (ms >= 10) return ms.toFixed(1);
  if (ms >= 1) return ms.toFixed(2);
  return ms.toPrecision(2);
}

/** A ratio for display: `3.2x`. */
export function formatRatio(ratio: number): string {
  return ratio >= 10 ? `${ratio.toFixed(0)}x` : `${ratio.toFixed(2)}x`;
}

/** Short text of a row for a latency cell. */
export function cellText(row: ResultRow | undefined): string {
  if (row === undefined) return '';
  if (row.status === 'skipped') return 'budget';
  if (row.status === 'error') return 'error';
  if (row.status === 'not-applicable') return 'n/a';
  if (row.timing === undefined) return '';
  const fallback = row.placement?.fallback == null ? '' : ` fallback: ${row.placement.fallback}`;
  const mark = `${row.check != null && !row.check.pass ? ' WRONG' : ''}${fallback}`;
  return `${formatMs(row.timing.median)}${mark}`;
}
