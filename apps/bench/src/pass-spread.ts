import type { SubjectReport } from '@attnkit/benchmarks';
import { formatRatio, peerFamilies, ratioTable, seriesIds, subjectsOf } from './analysis.js';
import type { BenchResults } from './results.js';

/**
 * One ratio cell measured pass by pass (`--passes`): in each pass, the peer family's best usable
 * variant over the attnkit backend, both from that pass alone. The two sides of a per-pass ratio ran
 * minutes apart at most, so its spread over the passes shows how far the machine's load moves a
 * ratio; the ratio table's best-of-passes figure alone cannot.
 */
export interface RatioSpread {
  series: string;
  n: number;
  backend: string;
  family: string;
  /** One entry per pass, in pass order: `null` where either side had no usable time in that pass. */
  perPass: (number | null)[];
}

/** The ratio cells of every pass, for every series, backend, size and peer family. */
export function passRatioSpread(
  results: BenchResults,
  reportsByPass: readonly (readonly SubjectReport[])[],
): RatioSpread[] {
  const cells = new Map<string, RatioSpread>();
  reportsByPass.forEach((reports, pass) => {
    const alone: BenchResults = { ...results, subjects: [...reports] };
    for (const series of seriesIds(alone)) {
      for (const row of ratioTable(alone, series).rows) {
        for (const [family, cell] of Object.entries(row.cells)) {
          const key = JSON.stringify([series, row.n, row.backend, family]);
          let spread = cells.get(key);
          if (spread === undefined) {
            spread = { series, n: row.n, backend: row.backend, family, perPass: [] };
            cells.set(key, spread);
          }
          // a subject or family missing from a pass leaves a gap there, never a shifted entry
          while (spread.perPass.length < pass) spread.perPass.push(null);
          spread.perPass.push(cell.ratio);
        }
      }
    }
  });
  const spreads = [...cells.values()];
  for (const s of spreads) while (s.perPass.length < reportsByPass.length) s.perPass.push(null);
  // only cells with a ratio in some pass: the ratio table already says why the others have none
  return spreads.filter((s) => s.perPass.some((r) => r !== null));
}

/** A spread's summary: the median of its per-pass ratios, their range, and how many favour attnkit. */
export interface SpreadSummary {
  median: number;
  min: number;
  max: number;
  /** Passes whose ratio is at least 1 (attnkit at least as fast). */
  ahead: number;
  /** Passes with a ratio. */
  passes: number;
}

/** Summary of the passes that have a ratio; `null` when none does. */
export function summarizeSpread(perPass: readonly (number | null)[]): SpreadSummary | null {
  const ratios = perPass.filter((r): r is number => r !== null).sort((a, b) => a - b);
  if (ratios.length === 0) return null;
  const mid = ratios.length >> 1;
  const median = ratios.length % 2 === 1 ? ratios[mid] : (ratios[mid - 1] + ratios[mid]) / 2;
  return {
    median,
    min: ratios[0],
    max: ratios[ratios.length - 1],
    ahead: ratios.filter((r) => r >= 1).length,
    passes: ratios.length,
  };
}

/** `1.08x (0.95x-1.20x, 3/4 >= 1)`: median of the passes, their range, and the passes attnkit led. */
export function formatSpread(summary: SpreadSummary): string {
  return `${formatRatio(summary.median)} (${formatRatio(summary.min)}-${formatRatio(summary.max)}, ${summary.ahead}/${summary.passes} >= 1)`;
}

/**
 * The summary text of one cell (`formatSpread`), or `''` where the file has no spread for it (one
 * pass, a file from before `ratioSpread`, or no ratio in any pass).
 */
export function spreadText(
  results: BenchResults,
  cell: { series: string; n: number; backend: string; family: string },
): string {
  const spread = results.ratioSpread?.find(
    (s) =>
      s.series === cell.series && s.n === cell.n && s.backend === cell.backend && s.family === cell.family,
  );
  const summary = spread === undefined ? null : summarizeSpread(spread.perPass);
  return summary === null ? '' : formatSpread(summary);
}

/** One row of the per-pass ratio table: an attnkit backend at one size, its text per peer family. */
export interface SpreadRow {
  n: number;
  backend: string;
  cells: Record<string, string>;
}

/**
 * The per-pass ratio table of one series, rows as in the ratio table; `null` where no cell of the
 * series has a spread.
 */
export function spreadRows(
  results: BenchResults,
  series: string,
): { families: string[]; rows: SpreadRow[] } | null {
  const spreads = (results.ratioSpread ?? []).filter((s) => s.series === series);
  if (spreads.length === 0) return null;
  const families = peerFamilies(results).filter((f) => spreads.some((s) => s.family === f));
  const rows: SpreadRow[] = [];
  const sizes = [...new Set(spreads.map((s) => s.n))].sort((a, b) => a - b);
  for (const n of sizes) {
    for (const backend of subjectsOf(results, 'attnkit').map((s) => s.id)) {
      const cells: Record<string, string> = {};
      for (const family of families) cells[family] = spreadText(results, { series, n, backend, family });
      if (Object.values(cells).some((c) => c !== '')) rows.push({ n, backend, cells });
    }
  }
  return rows.length === 0 ? null : { families, rows };
}

/** The title of the per-pass ratio tables. */
export const SPREAD_TITLE = 'ratio per pass: median (range, passes with attnkit at least as fast)';

/** Markdown version of {@link spreadRows}, for benchmarks/README.md, or `null`. */
export function spreadTableMarkdown(results: BenchResults, series: string): string | null {
  const spread = spreadRows(results, series);
  if (spread === null) return null;
  const head = `| N | attnkit | ${spread.families.map((f) => `vs ${f}`).join(' | ')} |`;
  const rule = `|${' --- |'.repeat(spread.families.length + 2)}`;
  const body = spread.rows.map(
    (r) => `| ${r.n} | ${r.backend} | ${spread.families.map((f) => r.cells[f]).join(' | ')} |`,
  );
  return [`${SPREAD_TITLE}:`, '', head, rule, ...body].join('\n');
}

/**
 * The spreads of a file appended to (`--append`): those of the earlier run whose backend and peer
 * family the new run did not measure again, then the new run's.
 */
export function mergeSpreads(earlier: BenchResults, now: BenchResults): RatioSpread[] | undefined {
  const rerun = new Set(now.subjects.map((s) => s.id));
  const rerunFamilies = new Set(now.subjects.filter((s) => s.kind === 'peer').map((s) => s.family));
  const kept = (earlier.ratioSpread ?? []).filter(
    (s) => !rerun.has(s.backend) && !rerunFamilies.has(s.family),
  );
  const merged = [...kept, ...(now.ratioSpread ?? [])];
  return merged.length === 0 ? undefined : merged;
}
