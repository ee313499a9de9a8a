import type { RunOptions, SubjectReport, Workload } from '@attnkit/benchmarks';
import type { SubjectEntry } from './subjects.js';

/** What the browser part returns. */
export interface BrowserPart {
  reports: SubjectReport[];
  userAgent: string | null;
  adapter: string | null;
}

function unavailable(entries: readonly SubjectEntry[], reason: string): SubjectReport[] {
  return entries.map((e) => ({
    id: e.id,
    kind: e.kind,
    family: e.id.replace(/-(attention|mha|matmul)$/, ''),
    label: e.label,
    environment: 'browser',
    status: 'unavailable' as const,
    reason,
    rows: [],
    stopped: {},
    elapsedMs: 0,
  }));
}

/** Runs the browser subjects in headless Chromium through the bench page. */
export async function runBrowserPart(
  entries: readonly SubjectEntry[],
  _series: Workload[][],
  _run: RunOptions,
  _onRow: (subject: string, workload: string) => void,
): Promise<BrowserPart> {
  return {
    reports: unavailable(entries, 'browser part not implemented yet'),
    userAgent: null,
    adapter: null,
  };
}
