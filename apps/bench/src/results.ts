import type {
  GridSpec,
  MachineCeilings,
  RssProbeResult,
  RunOptions,
  SubjectReport,
} from '@attnkit/benchmarks';

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
