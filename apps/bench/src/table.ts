import Table from 'cli-table3';
import { cellText, formatRatio, ratioTable, rowAt, seriesSizes } from './analysis.js';
import type { BenchResults } from './results.js';

/** Terminal table of median latencies for one series, one column per available subject. */
export function latencyTable(results: BenchResults, series: string): string {
  const subjects = results.subjects.filter((s) => s.status === 'ok');
  const table = new Table({ head: ['N', ...subjects.map((s) => s.id)], style: { head: [], border: [] } });
  for (const n of seriesSizes(results, series))
    table.push([String(n), ...subjects.map((s) => cellText(rowAt(s, series, n)))]);
  return `${series}: median ms\n${table.toString()}`;
}

/** Terminal ratio table (peer / attnkit, above 1 = attnkit faster) for one series. */
export function ratioTableText(results: BenchResults, series: string): string {
  const { families, rows } = ratioTable(results, series);
  const table = new Table({
    head: ['N', 'attnkit', 'ms', ...families.map((f) => `vs ${f}`)],
    style: { head: [], border: [] },
  });
  for (const r of rows) {
    table.push([
      String(r.n),
      r.backend,
      r.backendMs === null ? '' : r.backendMs.toFixed(r.backendMs < 10 ? 2 : 0),
      ...families.map((f) => {
        const c = r.cells[f];
        return c.ratio === null ? (c.note ?? '') : formatRatio(c.ratio);
      }),
    ]);
  }
  return `${series}: ratio = peer ms / attnkit ms (best variant per peer family)\n${table.toString()}`;
}

/** Markdown version of the ratio table, for benchmarks/README.md. */
export function ratioTableMarkdown(results: BenchResults, series: string): string {
  const { families, rows } = ratioTable(results, series);
  const lines = [
    `| N | attnkit | ms | ${families.map((f) => `vs ${f}`).join(' | ')} |`,
    `|---|---|---|${families.map(() => '---').join('|')}|`,
  ];
  for (const r of rows) {
    const cells = families.map((f) => {
      const c = r.cells[f];
      return c.ratio === null ? (c.note ?? '') : formatRatio(c.ratio);
    });
    lines.push(
      `| ${r.n} | ${r.backend} | ${r.backendMs === null ? '' : r.backendMs.toFixed(2)} | ${cells.join(' | ')} |`,
    );
  }
  return lines.join('\n');
}

/** Markdown latency table for one series. */
export function latencyTableMarkdown(results: BenchResults, series: string): string {
  const subjects = results.subjects.filter((s) => s.status === 'ok');
  const lines = [
    `| N | ${subjects.map((s) => s.id).join(' | ')} |`,
    `|---|${subjects.map(() => '---').join('|')}|`,
  ];
  for (const n of seriesSizes(results, series))
    lines.push(`| ${n} | ${subjects.map((s) => cellText(rowAt(s, series, n))).join(' | ')} |`);
  return lines.join('\n');
}
