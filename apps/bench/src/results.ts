import type { GridSpec, RunOptions, SubjectReport } from '@attnkit/benchmarks';

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
  subjects: SubjectReport[];
}
