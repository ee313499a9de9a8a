/** The backward tables for the terminal (cli-table3 stays out of the browser page's bundle). */
import type { RssProbeResult } from '@attnkit/benchmarks';
import Table from 'cli-table3';
import {
  backwardRows,
  cells,
  FOOTNOTE,
  HEAD,
  notApplicable,
  PROBE_HEAD,
  PROBE_NOTE,
  probeCells,
} from './backward-tables.js';
import type { BenchResults } from './results.js';

/** Terminal table of a backward series; '' for a forward series. */
export function backwardTableText(results: BenchResults, series: string): string {
  const rows = backwardRows(results, series);
  const na = notApplicable(results);
  if (rows.length === 0 && na.length === 0) return '';
  const table = new Table({ head: HEAD, style: { head: [], border: [] } });
  for (const r of rows) table.push(cells(r));
  const lines = [`${series}: forward and backward timed apart (medians)`, table.toString(), FOOTNOTE];
  for (const x of na) lines.push(`not applicable: ${x.subject}: ${x.reason}`);
  return lines.join('\n');
}

/** Terminal table of the RSS probe. */
export function probeTableText(probes: readonly RssProbeResult[]): string {
  const table = new Table({ head: PROBE_HEAD, style: { head: [], border: [] } });
  for (const p of probes) table.push(probeCells(p));
  return `${table.toString()}\n${PROBE_NOTE}`;
}
