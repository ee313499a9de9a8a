import { summarize, type TimingStats } from './stats.js';
import type { Subject, SubjectInfo } from './subject.js';
import {
  HEADLINE_SERIES,
  makeInputs,
  referenceCost,
  type Workload,
  type WorkloadInputs,
  workloadFlops,
} from './workloads.js';

/** How long and how often to time; the budget is what stops a subject at the size where it gets slow. */
export interface RunOptions {
  /** Untimed runs before timing (compilation, caches, lazy allocation). */
  warmup: number;
  /** Timed repetitions at least (unless the series budget runs out). */
  minReps: number;
  /** Timed repetitions at most. */
  maxReps: number;
  /** Keep repeating (up to `maxReps`) until this much time is spent on one size. */
  minTimeMs: number;
  /** Time one series (one subject, one mode/causal/D/heads combination, all sizes) may take. */
  seriesBudgetMs: number;
  /** Time the headline series (benchmarks/README.md, "Goals") may take (it gets more: it is the published table). */
  headlineBudgetMs: number;
  /** A size whose predicted single run exceeds this is not started. */
  maxRunMs: number;
  /** The float64 reference check runs when a workload's multiply-adds are at most this. */
  checkMaxCost: number;
  /** Input seed. */
  seed: number;
  /**
   * In the headline series, sizes up to this are run whatever the budget and the cap predict (one
   * warm-up and at least one timed run), so every subject of a short run has points at the same
   * sizes to compare. Only there: forcing the 32-head GQA series too cost the software-GPU subjects
   * a minute each.
   */
  alwaysRunUpTo?: number;
}

/** Defaults of a full run: about 3 s per series, 20 s for the headline series. */
export const FULL_RUN: RunOptions = {
  warmup: 1,
  minReps: 3,
  maxReps: 30,
  minTimeMs: 250,
  seriesBudgetMs: 3000,
  headlineBudgetMs: 20000,
  maxRunMs: 12000,
  checkMaxCost: 1.5e8,
  seed: 1,
};

/**
 * Defaults of `--quick`: enough to see the shape. Every subject reaches N = 512 in the headline
 * series: the budgets alone stopped the software-GPU subjects (shader compilation eats their budget)
 * at 128, where nothing can be compared.
 */
export const QUICK_RUN: RunOptions = {
  warmup: 1,
  minReps: 2,
  maxReps: 10,
  minTimeMs: 60,
  seriesBudgetMs: 500,
  headlineBudgetMs: 1000,
  maxRunMs: 1000,
  checkMaxCost: 2e7,
  seed: 1,
  alwaysRunUpTo: 512,
};

/** Result of comparing an output with the float64 reference. */
export interface CheckResult {
  /** Largest `|out - ref|`. */
  maxAbsError: number;
  /** Largest `|out - ref| / (atol + rtol * |ref|)`: at most 1 passes. */
  worstRatio: number;
  pass: boolean;
  atol: number;
  rtol: number;
}

/** Measured memory, in bytes; `null` where not measurable in this environment. */
export interface MemoryMeasure {
  /** Peak process resident set size seen while this workload ran (Node only). */
  rssPeakBytes: number | null;
  /** Largest host bytes the subject reported holding (typed arrays, wasm memory). */
  hostBytes: number | null;
  /** Largest GPU bytes the subject reported holding (buffers, textures). */
  deviceBytes: number | null;
}

/** One (subject, workload) cell. */
export interface ResultRow {
  subject: string;
  workload: Workload;
  /** `ok`: timed; `error`: it threw (reason says what); `skipped`: over the time budget. */
  status: 'ok' | 'error' | 'skipped';
  reason?: string;
  timing?: TimingStats;
  flops: { dense: number; useful: number };
  /** GFLOP/s at the median time, dense count and useful (visible pairs only) count. */
  gflops?: { dense: number; useful: number };
  memory?: MemoryMeasure;
  /** `null` when the workload is too large for the float64 reference. */
  check?: CheckResult | null;
}

/** Everything one subject produced. */
export interface SubjectReport {
  id: string;
  kind: 'attnkit' | 'peer';
  family: string;
  label: string;
  /** Where it ran: `node` or `browser` (with the browser's name). */
  environment: string;
  /** `unavailable`: it could not start here; `reason` says why. */
  status: 'ok' | 'unavailable';
  reason?: string;
  info?: SubjectInfo;
  rows: ResultRow[];
  /** Per series: the first size not run and why. */
  stopped: Record<string, { n: number; reason: string }>;
  elapsedMs: number;
}

/** Environment hooks: the Node child and the browser page supply their own. */
export interface RunHooks {
  /** Monotonic milliseconds. */
  now(): number;
  /** The float64 reference output for a workload (cached by the caller), or `null` to skip the check. */
  reference(w: Workload, inputs: WorkloadInputs): Promise<Float64Array | null>;
  /** Current process RSS in bytes, or `null` where unknown. */
  rss?(): number | null;
  onRow?(row: ResultRow): void;
}

/** Compares a float32 output with the float64 reference under a tolerance. */
export function checkOutput(
  output: Float32Array,
  reference: Float64Array,
  tolerance: { atol: number; rtol: number },
): CheckResult {
  let maxAbsError = 0;
  let worstRatio = 0;
  if (output.length !== reference.length) {
    return {
      maxAbsError: Number.POSITIVE_INFINITY,
      worstRatio: Number.POSITIVE_INFINITY,
      pass: false,
      ...tolerance,
    };
  }
  for (let i = 0; i < output.length; i++) {
    const error = Math.abs(output[i] - reference[i]);
    // NaN must fail: compare negated so a NaN error counts as the worst
    const ratio = error / (tolerance.atol + tolerance.rtol * Math.abs(reference[i]));
    if (!(error <= maxAbsError)) maxAbsError = Number.isNaN(error) ? Number.POSITIVE_INFINITY : error;
    if (!(ratio <= worstRatio)) worstRatio = Number.isNaN(ratio) ? Number.POSITIVE_INFINITY : ratio;
  }
  return { maxAbsError, worstRatio, pass: worstRatio <= 1, ...tolerance };
}

function message(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  // native runtimes prefix build-machine paths and C++ signatures; keep the part that says what failed
  return text
    .split('\n')[0]
    .replace(/\/\S*\/onnxruntime\//g, 'onnxruntime/')
    .replace(/static void \w+::\w+\([^)]*\)\s*/g, '')
    .slice(0, 400);
}

function maxOrNull(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.max(a, b);
}

/**
 * Runs one subject over series of workloads (sizes ascending in each). Before each size it predicts
 * the run time from the previous size (quadratic in N for prefill, linear for decode) and stops the
 * series when a run would exceed `maxRunMs` or the series budget: the stop is recorded, never silent.
 */
export async function runSubject(
  subject: Subject,
  environment: string,
  series: readonly (readonly Workload[])[],
  options: RunOptions,
  hooks: RunHooks,
): Promise<SubjectReport> {
  const started = hooks.now();
  const report: SubjectReport = {
    id: subject.id,
    kind: subject.kind,
    family: subject.family,
    label: subject.label,
    environment,
    status: 'ok',
    rows: [],
    stopped: {},
    elapsedMs: 0,
  };
  try {
    report.info = await subject.init();
  } catch (error) {
    report.status = 'unavailable';
    report.reason = message(error);
    report.elapsedMs = hooks.now() - started;
    await subject.dispose().catch(() => undefined);
    return report;
  }
  const push = (row: ResultRow) => {
    report.rows.push(row);
    hooks.onRow?.(row);
  };
  for (const list of series) {
    if (list.length === 0) continue;
    const budget = list[0].series === HEADLINE_SERIES ? options.headlineBudgetMs : options.seriesBudgetMs;
    const seriesStart = hooks.now();
    let previous: { n: number; median: number } | null = null;
    let stopReason: string | null = null;
    let consecutiveErrors = 0;
    for (const w of list) {
      const flops = workloadFlops(w);
      const forced = list[0].series === HEADLINE_SERIES && w.n <= (options.alwaysRunUpTo ?? 0);
      if (stopReason === null && previous !== null && !forced) {
        const exponent = w.mode === 'prefill' ? 2 : 1;
        const predicted = previous.median * (w.n / previous.n) ** exponent;
        const left = budget - (hooks.now() - seriesStart);
        if (predicted > options.maxRunMs) {
          stopReason = `too slow: predicted ${predicted.toFixed(0)} ms per run > ${options.maxRunMs} ms cap`;
        } else if (predicted * (options.warmup + options.minReps) > left) {
          stopReason = `over budget: predicted ${predicted.toFixed(0)} ms per run, ${Math.max(0, left).toFixed(0)} ms left of the ${budget} ms series budget`;
        }
        if (stopReason !== null) report.stopped[w.series] = { n: w.n, reason: stopReason };
      }
      if (stopReason !== null) {
        push({ subject: subject.id, workload: w, status: 'skipped', reason: stopReason, flops });
        continue;
      }
      const inputs = makeInputs(w, options.seed);
      const memory: MemoryMeasure = {
        rssPeakBytes: hooks.rss?.() ?? null,
        hostBytes: null,
        deviceBytes: null,
      };
      const sample = () => {
        memory.rssPeakBytes = maxOrNull(memory.rssPeakBytes, hooks.rss?.() ?? null);
        const m = subject.memory();
        memory.hostBytes = maxOrNull(memory.hostBytes, m.hostBytes);
        memory.deviceBytes = maxOrNull(memory.deviceBytes, m.deviceBytes);
      };
      try {
        const prepared = await subject.prepare(w, inputs);
        try {
          let first: Float32Array | null = null;
          let warmTime = 0;
          for (let i = 0; i < Math.max(1, options.warmup); i++) {
            const t0 = hooks.now();
            const out = await prepared.run();
            warmTime = hooks.now() - t0;
            first ??= out;
            sample();
          }
          let check: CheckResult | null = null;
          if (referenceCost(w) <= options.checkMaxCost) {
            const ref = await hooks.reference(w, inputs);
            if (ref !== null && first !== null) check = checkOutput(first, ref, subject.tolerance);
          }
          const samples: number[] = [];
          const repStart = hooks.now();
          // a warm-up that already ate the budget leaves one timed run: better one sample than none
          const affordable = Math.max(
            1,
            Math.floor((budget - (repStart - seriesStart)) / Math.max(warmTime, 1e-3)),
          );
          while (samples.length < options.maxReps) {
            const t0 = hooks.now();
            await prepared.run();
            samples.push(hooks.now() - t0);
            sample();
            const spent = hooks.now() - repStart;
            if (samples.length >= Math.min(options.minReps, affordable) && spent >= options.minTimeMs) break;
            if (samples.length >= 1 && hooks.now() - seriesStart > budget) break;
          }
          const timing = summarize(samples, Math.max(1, options.warmup));
          previous = { n: w.n, median: timing.median };
          consecutiveErrors = 0;
          push({
            subject: subject.id,
            workload: w,
            status: 'ok',
            timing,
            flops,
            gflops: { dense: flops.dense / timing.median / 1e6, useful: flops.useful / timing.median / 1e6 },
            memory,
            check,
          });
        } finally {
          await prepared.dispose();
        }
      } catch (error) {
        consecutiveErrors++;
        push({ subject: subject.id, workload: w, status: 'error', reason: message(error), flops, memory });
        if (consecutiveErrors >= 2) {
          stopReason = `stopped after ${consecutiveErrors} consecutive errors`;
          report.stopped[w.series] = { n: w.n * 2, reason: stopReason };
        }
      }
    }
  }
  await subject.dispose().catch(() => undefined);
  report.elapsedMs = hooks.now() - started;
  return report;
}
