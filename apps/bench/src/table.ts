import Table from 'cli-table3';
import {
  anyCrossEnvironment,
  bestPeer,
  CROSS_ENVIRONMENT_NOTE,
  cellText,
  formatMs,
  peerFamilies,
  ratioCellText,
  ratioTable,
  rowAt,
  seriesSizes,
  subjectsOf,
} from './analysis.js';
import { SPREAD_TITLE, spreadRows } from './pass-spread.js';
import type { BenchResults } from './results.js';
import { ceilingsLine, formatPercent, formatRate, rooflineSummary } from './roofline.js';

/**
 * Terminal table of median latencies for one series: each attnkit backend, then each peer family at
 * its best variant (the JSON and the HTML report have every variant).
 */
export function latencyTable(results: BenchResults, series: string): string {
  const backends = subjectsOf(results, 'attnkit');
  const families = peerFamilies(results);
  const table = new Table({
    head: ['N', ...backends.map((s) => s.id), ...families.map((f) => `${f} (best)`)],
    style: { head: [], border: [] },
  });
  for (const n of seriesSizes(results, series)) {
    table.push([
      String(n),
      ...backends.map((s) => cellText(rowAt(s, series, n))),
      ...families.map((f) => {
        const best = bestPeer(results, f, series, n);
        if (best !== null) return formatMs(best.ms);
        const any = subjectsOf(results, 'peer')
          .filter((s) => s.family === f)
          .map((s) => cellText(rowAt(s, series, n)))
          .find((t) => t !== '');
        return any ?? '';
      }),
    ]);
  }
  return `${series}: median ms\n${table.toString()}`;
}

/** Terminal ratio table (peer / attnkit, above 1 = attnkit faster) for one series. */
export function ratioTableText(results: BenchResults, series: string): string {
  const { families, rows } = ratioTable(results, series);
  const table = new Table({
    head: ['N', 'attnkit', 'ms', ...families.map((f) => `vs ${f}`)],
    style: { head: [], border: [] },
  });
  for (const r of rows.filter((row) => row.backendMs !== null)) {
    table.push([
      String(r.n),
      r.backend,
      r.backendMs === null ? '' : formatMs(r.backendMs),
      ...families.map((f) => ratioCellText(r.cells[f])),
    ]);
  }
  const note = anyCrossEnvironment(rows) ? `\n${CROSS_ENVIRONMENT_NOTE}` : '';
  return `${series}: ratio = peer ms / attnkit ms (best variant per peer family)\n${table.toString()}${note}`;
}

/** Markdown version of the ratio table, for benchmarks/README.md. */
export function ratioTableMarkdown(results: BenchResults, series: string): string {
  const { families, rows } = ratioTable(results, series);
  const lines = [
    `| N | attnkit | ms | ${families.map((f) => `vs ${f}`).join(' | ')} |`,
    `|---|---|---|${families.map(() => '---').join('|')}|`,
  ];
  // a backend with no time at a size has no ratios either: the latency table shows why
  for (const r of rows.filter((row) => row.backendMs !== null)) {
    const cells = families.map((f) => ratioCellText(r.cells[f]));
    lines.push(
      `| ${r.n} | ${r.backend} | ${r.backendMs === null ? '' : formatMs(r.backendMs)} | ${cells.join(' | ')} |`,
    );
  }
  if (anyCrossEnvironment(rows)) lines.push('', CROSS_ENVIRONMENT_NOTE);
  return lines.join('\n');
}

/** Markdown latency table for one series: attnkit backends, then each peer family at its best variant. */
export function latencyTableMarkdown(results: BenchResults, series: string): string {
  const backends = subjectsOf(results, 'attnkit');
  const families = peerFamilies(results);
  const head = [...backends.map((s) => s.id), ...families.map((f) => `${f} (best)`)];
  const lines = [`| N | ${head.join(' | ')} |`, `|---|${head.map(() => '---').join('|')}|`];
  for (const n of seriesSizes(results, series)) {
    const cells = [
      ...backends.map((s) => cellText(rowAt(s, series, n))),
      ...families.map((f) => {
        const best = bestPeer(results, f, series, n);
        if (best !== null) return `${formatMs(best.ms)} (${best.id.slice(f.length + 1) || f})`;
        return (
          subjectsOf(results, 'peer')
            .filter((s) => s.family === f)
            .map((s) => cellText(rowAt(s, series, n)))
            .find((t) => t !== '') ?? ''
        );
      }),
    ];
    lines.push(`| ${n} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/** Terminal table: each CPU subject at the largest size it reached, against the machine's ceilings. */
export function rooflineTableText(results: BenchResults, series: string): string {
  const rows = rooflineSummary(results, series);
  if (rows.length === 0) return '';
  const table = new Table({
    head: ['subject', 'N', 'ms', 'threads', 'useful GFLOP/s', '% SIMD128', 'GB/s (min traffic)', '% copy'],
    style: { head: [], border: [] },
  });
  for (const r of rows)
    table.push([
      r.subject,
      String(r.n),
      formatMs(r.ms),
      String(r.threads),
      formatRate(r.gflops),
      formatPercent(r.simdPercent),
      formatRate(r.gbps),
      formatPercent(r.copyPercent),
    ]);
  return `${series}: CPU results against ${ceilingsLine(results)}\n${table.toString()}`;
}

/** Terminal version of `spreadRows` (pass-spread.ts), or `null`. */
export function spreadTableText(results: BenchResults, series: string): string | null {
  const spread = spreadRows(results, series);
  if (spread === null) return null;
  const table = new Table({
    head: ['N', 'attnkit', ...spread.families.map((f) => `vs ${f}`)],
    style: { head: [], border: [] },
  });
  for (const r of spread.rows)
    table.push([String(r.n), r.backend, ...spread.families.map((f) => r.cells[f])]);
  return `${series}: ${SPREAD_TITLE}\n${table.toString()}`;
}
