import type {
  GridSpec,
  MachineCeilings,
  ResultRow,
  RssProbeResult,
  RunOptions,
  SubjectReport,
} from '@attnkit/benchmarks';
import type { RatioSpread } from './pass-spread.js';

/** Machine information carried by every result file. */
export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryBytes: number;
  platform: string;
  arch: string;
  node: string | null;
  /** `navigator.userAgent` of the browser part, `null` when no browser ran. */
  browser: string | null;
  /** WebGPU adapter as the browser (or Dawn) describes it, when one was found. */
  gpuAdapter: string | null;
  hostname?: string;
}

/** One bench run: what the JSON file holds and the report draws. */
export interface BenchResults {
  schema: 'attnkit-bench/1';
  startedAt: string;
  finishedAt: string;
  quick: boolean;
  grid: GridSpec;
  options: RunOptions;
  machine: MachineInfo;
  versions: Record<string, string>;
  /** The machine's ceilings measured at the start of the run (absent in older files). */
  ceilings?: MachineCeilings;
  subjects: SubjectReport[];
  /**
   * `--passes`: how many times every subject ran (the order reversed every other pass); each row is
   * its fastest pass's. Absent for one pass (older files).
   */
  passes?: number;
  /**
   * `--passes` above 1: every ratio cell computed from each pass alone (see pass-spread.ts), so a
   * reader sees how far the load moved it. Absent for one pass (and in older files).
   */
  ratioSpread?: RatioSpread[];
  /** Backward runs: the RSS probe, one fresh process per attnkit backend (absent when not run). */
  rssProbe?: RssProbeResult[];
}

/**
 * The result file: compact, numbers to 4 significant digits (beyond the noise of these machines), and
 * without the rows the budget skipped (the subject's `stopped` entry says from which size and why;
 * `rowAt` restores them), so a full run stays small enough to commit.
 */
export function serializeResults(results: BenchResults): string {
  const slim: BenchResults = {
    ...results,
    subjects: results.subjects.map((s) => ({
      ...s,
      rows: s.rows.filter((r) => r.status !== 'skipped'),
    })),
  };
  return JSON.stringify(slim, (_key, value: unknown) =>
    typeof value === 'number' && !Number.isInteger(value) && Number.isFinite(value)
      ? Number(value.toPrecision(4))
      : value,
  );
}

/** Whether `a` ran faster than `b`: a timed row beats any other, then the lower median. */
function faster(a: ResultRow, b: ResultRow): boolean {
  if (a.status !== 'ok' || a.timing === undefined) return false;
  if (b.status !== 'ok' || b.timing === undefined) return true;
  return a.timing.median < b.timing.median;
}

/**
 * One report per subject from several passes over the same subjects and workloads (`--passes`):
 * each row from the pass in which it ran fastest, its check with it, so a load change during the
 * run favours no subject (every subject gets the same number of tries, in alternating order). A
 * series' `stopped` entry is its first row that every pass skipped; a subject's other fields are those of its first available pass; `elapsedMs` sums the passes.
 */
export function fastestOfPasses(passes: readonly (readonly SubjectReport[])[]): SubjectReport[] {
  if (passes.length === 0) return [];
  if (passes.length === 1) return [...passes[0]];
  return passes[0].map((first) => {
    const all = passes.map((p) => p.find((s) => s.id === first.id)).filter((s) => s !== undefined);
    const available = all.filter((s) => s.status === 'ok');
    const base = available[0] ?? first;
    const rows = base.rows.map((row) => {
      let best = row;
      for (const other of available) {
        const same = other.rows.find(
          (r) => r.workload.series === row.workload.series && r.workload.n === row.workload.n,
        );
        if (same !== undefined && faster(same, best)) best = same;
      }
      return best;
    });
    // a series stops at its first row that is still skipped (another pass may have run the size)
    const stopped: SubjectReport['stopped'] = {};
    for (const row of rows) {
      const series = row.workload.series;
      if (row.status === 'skipped' && stopped[series] === undefined)
        stopped[series] = {
          n: row.workload.n,
          reason: row.reason ?? base.stopped[series]?.reason ?? 'skipped',
        };
    }
    const elapsedMs = all.reduce((sum, s) => sum + s.elapsedMs, 0);
    return { ...base, rows, stopped, elapsedMs };
  });
}
