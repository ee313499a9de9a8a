/** The decode-cache table for the terminal (cli-table3 stays out of the browser page's bundle). */
import Table from 'cli-table3';
import { DECODE_FOOTNOTE, DECODE_HEAD, decodeCells, decodeRows } from './decode-tables.js';
import type { BenchResults } from './results.js';

/** Terminal table of a decode-cache series; '' for another series. */
export function decodeTableText(results: BenchResults, series: string): string {
  const rows = decodeRows(results, series);
  if (rows.length === 0) return '';
  const table = new Table({ head: DECODE_HEAD, style: { head: [], border: [] } });
  for (const r of rows) table.push(decodeCells(r));
  return [`${series}: per-step latency`, table.toString(), DECODE_FOOTNOTE].join('\n');
}
