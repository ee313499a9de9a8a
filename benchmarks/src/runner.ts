import {
  BACKWARD_GATE_SIZE,
  type BackwardReference,
  backwardReferenceFor,
  checkBackward,
  gateWorkload,
} from './backward.js';
import { summarize, type TimingStats } from './stats.js';
import type {
  ForwardPass,
  GradientSet,
  PlacementCheck,
  PreparedBackward,
  Subject,
  SubjectInfo,
} from './subject.js';
import {
  backwardFlops,
  type FlopCount,
  HEADLINE_SERIES_IDS,
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
  /** Backward series: the size of the correctness gate run before timing (default `BACKWARD_GATE_SIZE`). */
  backwardGateSize?: number;
  /** Decode-cache series: the cache length of the correctness gate run before timing (default `DECODE_GATE_SIZE`). */
  decodeGateSize?: number;
}

/** Cache length of the decode-cache gate: one step on a small cache, checked before any timing. */
export const DECODE_GATE_SIZE = 128;

/**
 * Largest size of the prefill/decode gate, run before a series whose first size is too large for
 * the float64 reference: without it a subject that is wrong everywhere (onnxruntime's WebGPU
 * MHA/GQA with subgroups on SwiftShader) would show unchecked times at every size.
 */
export const FORWARD_GATE_SIZE = 256;

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

/**
 * Defaults of `--mode backward`: a repetition is a forward and a backward (about 3.5 forwards of
 * work, and twice the forward for tf.grads), so the budgets are larger than a forward series':
 * 8 s per series, 60 s for the headline series (the one the issue's bars are quoted on: TF.js wasm
 * must reach N = 4096 there; with 40 s it stopped at 2048 on a loaded machine), no run predicted
 * over 15 s.
 */
export const BACKWARD_RUN: RunOptions = {
  ...FULL_RUN,
  seriesBudgetMs: 8000,
  headlineBudgetMs: 60000,
  maxRunMs: 15000,
  backwardGateSize: BACKWARD_GATE_SIZE,
};

/**
 * Defaults of `--mode decode-cache`: a repetition is one step (milliseconds at most), so enough of
 * them for p10/p90 to mean something: 3 warm-up steps, then 20..200 steps and at least 300 ms;
 * 8 s per series, 30 s for the series the bars are quoted on (`decode-cache-causal-d128-gqa`).
 */
export const DECODE_CACHE_RUN: RunOptions = {
  ...FULL_RUN,
  warmup: 3,
  minReps: 20,
  maxReps: 200,
  minTimeMs: 300,
  seriesBudgetMs: 8000,
  headlineBudgetMs: 30000,
  maxRunMs: 5000,
  decodeGateSize: DECODE_GATE_SIZE,
};

/** `--mode decode-cache --quick`: fewer steps and short budgets. */
export const QUICK_DECODE_CACHE_RUN: RunOptions = {
  ...QUICK_RUN,
  warmup: 2,
  minReps: 10,
  maxReps: 50,
  minTimeMs: 60,
  seriesBudgetMs: 1500,
  headlineBudgetMs: 3000,
  decodeGateSize: DECODE_GATE_SIZE,
};

/** `--mode backward --quick`: the quick budgets; every subject reaches N = 512 in the headline series. */
export const QUICK_BACKWARD_RUN: RunOptions = {
  ...QUICK_RUN,
  seriesBudgetMs: 1000,
  headlineBudgetMs: 2000,
  backwardGateSize: BACKWARD_GATE_SIZE,
};

/** Result of comparing an output with the float64 reference. */
export interface CheckResult {
  /** Largest `|out - ref|`. */
  maxAbsError: number;
  /** Largest `|out - ref| / (atol + rtol * |ref|)` (`+ fudge * err32` in backward checks): at most 1 passes. */
  worstRatio: number;
  pass: boolean;
  atol: number;
  rtol: number;
  /** Backward checks: the fudge applied (0 without a naive float32 yardstick). */
  fudge?: number;
  /** Backward checks: the tensor with the worst ratio (`output`, `gradQ`, `gradK`, `gradV`). */
  worstTensor?: string;
  /** Set when the check ran at another size than the row's: the backward gate's size. */
  checkedAt?: number;
}

/** Measured memory, in bytes; `null` where not measurable in this environment. */
export interface MemoryMeasure {
  /** Peak process resident set size seen while this workload ran (Node only). */
  rssPeakBytes: number | null;
  /** Largest host bytes the subject reported holding (typed arrays, wasm memory). */
  hostBytes: number | null;
  /** Largest GPU bytes the subject reported holding (buffers, textures). */
  deviceBytes: number | null;
  /**
   * Backward rows: the process RSS just before the size's first forward. With the
   * `peakRss` hook, `rssPeakBytes` is then the kernel's high-water mark over the size's runs
   * (reset first), so `rssPeakBytes - rssBaselineBytes` is what forward + backward needed at the peak.
   */
  rssBaselineBytes?: number | null;
  /** How `rssPeakBytes` was measured: sampled between runs, or the kernel's high-water mark. */
  rssPeakSource?: 'sampled' | 'high-water mark';
}

/** A backward row's phases, each timed on its own every repetition. */
export interface BackwardPhases {
  /** The forward alone (with lse). */
  forward: TimingStats;
  /** The backward alone; `derived` when measured as (forward + backward) - forward. */
  backward: TimingStats;
  /** True for subjects whose backward re-runs the forward (TF.js `tf.grads`). */
  derived: boolean;
  /** Median backward / median forward. */
  ratio: number;
  /** GFLOP/s of each phase at its median (backward FLOPs = 2.5 x the forward's). */
  gflops: { forward: FlopCount; backward: FlopCount };
}

/** One (subject, workload) cell. */
export interface ResultRow {
  subject: string;
  workload: Workload;
  /**
   * `ok`: timed; `error`: it threw (reason says what); `skipped`: over the time budget;
   * `not-applicable`: the subject has no such pass (a backend without `backward`), not a failure.
   */
  status: 'ok' | 'error' | 'skipped' | 'not-applicable';
  reason?: string;
  timing?: TimingStats;
  flops: { dense: number; useful: number };
  /** GFLOP/s at the median time, dense count and useful (visible pairs only) count. */
  gflops?: { dense: number; useful: number };
  memory?: MemoryMeasure;
  /**
   * `null` when the workload is too large for the float64 reference. Backward rows: the worse of
   * the series' gate (at `checkedAt`) and this size's own check where the reference is affordable.
   */
  check?: CheckResult | null;
  /** Backward rows: forward and backward timed apart. `timing` is then forward + backward. */
  phases?: BackwardPhases;
  /**
   * Decode-cache rows of onnxruntime peers: where the session's nodes ran. A row whose
   * `placement.fallback` is set ran (partly) on another provider than its label's and counts in no ratio.
   */
  placement?: PlacementCheck;
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
  /** Resets the process's RSS high-water mark (Linux: `/proc/self/clear_refs`). */
  resetPeakRss?(): void;
  /** The process's RSS high-water mark since the last reset (Linux: `VmHWM`), or `null`. */
  peakRss?(): number | null;
  /**
   * The float64 reference gradients of a backward workload (cached by the caller), or `null` to
   * skip. Absent: the runner computes them itself (the gate is never skipped for want of a hook).
   */
  backwardReference?(w: Workload, inputs: WorkloadInputs): Promise<BackwardReference | null>;
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

/** Why the subject cannot run this workload at all, or `null`. */
function notApplicableReason(subject: Subject, w: Workload): string | null {
  const reason = subject.notApplicable?.(w) ?? null;
  if (reason !== null) return reason;
  if (w.mode === 'backward' && subject.prepareBackward === undefined)
    return `${subject.id} has no backward pass`;
  if (w.mode === 'decode-cache' && subject.prepareDecode === undefined)
    return `${subject.id} has no decode step`;
  return null;
}

/** What measuring one size needs from the series loop. */
interface SizeContext {
  options: RunOptions;
  hooks: RunHooks;
  budget: number;
  seriesStart: number;
  /** Samples RSS and the subject's reported bytes into `memory`. */
  sample(): void;
  memory: MemoryMeasure;
}

/** How many timed repetitions: at least `minReps` (unless the budget is spent), until `minTimeMs`. */
function enough(c: SizeContext, reps: number, repStart: number, affordable: number): boolean {
  const spent = c.hooks.now() - repStart;
  if (reps >= Math.min(c.options.minReps, affordable) && spent >= c.options.minTimeMs) return true;
  if (reps >= c.options.maxReps) return true;
  return reps >= 1 && c.hooks.now() - c.seriesStart > c.budget;
}

/** Repetitions the rest of the series budget affords at `runMs` each: never fewer than one. */
function affordableReps(c: SizeContext, runMs: number): number {
  return Math.max(1, Math.floor((c.budget - (c.hooks.now() - c.seriesStart)) / Math.max(runMs, 1e-3)));
}

/** The row of a timed forward or decode-cache size: its samples summarised, and the rates they give. */
function timedRow(
  subject: Subject,
  w: Workload,
  c: SizeContext,
  samples: number[],
  check: CheckResult | null,
  placement: PlacementCheck | undefined,
): ResultRow {
  const flops = workloadFlops(w);
  const timing = summarize(samples, Math.max(1, c.options.warmup));
  return {
    subject: subject.id,
    workload: w,
    status: 'ok',
    timing,
    flops,
    gflops: { dense: flops.dense / timing.median / 1e6, useful: flops.useful / timing.median / 1e6 },
    memory: c.memory,
    check,
    ...(placement && { placement }),
  };
}

/** A prefill or decode size: warm-up, reference check, timed repetitions of `run()`. */
async function measureForward(
  subject: Subject,
  w: Workload,
  inputs: WorkloadInputs,
  c: SizeContext,
): Promise<ResultRow> {
  const { options, hooks } = c;
  const prepared = await subject.prepare(w, inputs);
  try {
    let first: Float32Array | null = null;
    let warmTime = 0;
    for (let i = 0; i < Math.max(1, options.warmup); i++) {
      const t0 = hooks.now();
      const out = await prepared.run();
      warmTime = hooks.now() - t0;
      first ??= out;
      c.sample();
    }
    let check: CheckResult | null = null;
    if (referenceCost(w) <= options.checkMaxCost) {
      const ref = await hooks.reference(w, inputs);
      if (ref !== null && first !== null) check = checkOutput(first, ref, subject.tolerance);
    }
    const samples: number[] = [];
    const repStart = hooks.now();
    // a warm-up that already ate the budget leaves one timed run: better one sample than none
    const affordable = affordableReps(c, warmTime);
    do {
      const t0 = hooks.now();
      await prepared.run();
      samples.push(hooks.now() - t0);
      c.sample();
    } while (!enough(c, samples.length, repStart, affordable));
    return timedRow(subject, w, c, samples, check, prepared.placement);
  } finally {
    await prepared.dispose();
  }
}

/**
 * The prefill/decode gate's workload: the series' axes at the largest of `FORWARD_GATE_SIZE`,
 * half of it, ... down to 16 whose reference the run affords (`checkMaxCost`); `null` when none is.
 */
function forwardGateWorkload(w: Workload, options: RunOptions): Workload | null {
  for (let n = Math.min(FORWARD_GATE_SIZE, w.n); n >= 16; n = Math.floor(n / 2)) {
    const small = { ...w, n, id: `${w.series}-n${n}` };
    if (referenceCost(small) <= options.checkMaxCost) return small;
  }
  return null;
}

/**
 * The prefill/decode gate: the subject's output at a small size of the series (see
 * {@link forwardGateWorkload}) against the float64 reference, for a series whose first size is
 * too large to check; `null` when no size is affordable.
 */
async function forwardGate(
  subject: Subject,
  w: Workload,
  options: RunOptions,
  hooks: RunHooks,
): Promise<CheckResult | null> {
  const small = forwardGateWorkload(w, options);
  if (small === null) return null;
  return gate(subject, small, options.seed, subject.prepare.bind(subject), async (prepared, inputs) => {
    const output = await prepared.run();
    const ref = await hooks.reference(small, inputs);
    return ref === null ? null : checkOutput(output, ref, subject.tolerance);
  });
}

/**
 * Runs one gate: prepares the subject at the small workload, checks what it prepared and disposes
 * it. A throw anywhere is a failed gate (never a silent pass); `null` when `check` found no
 * affordable reference.
 */
async function gate<P extends { dispose(): Promise<void> | void }>(
  subject: Subject,
  small: Workload,
  seed: number,
  prepare: (w: Workload, inputs: WorkloadInputs) => Promise<P>,
  check: (prepared: P, inputs: WorkloadInputs) => Promise<CheckResult | null>,
): Promise<CheckResult | null> {
  const inputs = makeInputs(small, seed);
  try {
    const prepared = await prepare(small, inputs);
    try {
      const result = await check(prepared, inputs);
      return result === null ? null : { ...result, checkedAt: small.n };
    } finally {
      await prepared.dispose();
    }
  } catch (error) {
    return thrownCheck(subject, error, small.n);
  }
}

/** The float64 reference of a backward workload, through the hook when there is one. */
async function backwardReference(
  w: Workload,
  inputs: WorkloadInputs,
  hooks: RunHooks,
): Promise<BackwardReference | null> {
  return hooks.backwardReference === undefined
    ? backwardReferenceFor(w, inputs)
    : hooks.backwardReference(w, inputs);
}

/** One forward then one backward, checked against the reference; `null` when there is no reference. */
async function checkOnce(
  subject: Subject,
  prepared: PreparedBackward,
  w: Workload,
  inputs: WorkloadInputs,
  hooks: RunHooks,
): Promise<CheckResult | null> {
  const forward = await prepared.forward();
  const grads = await prepared.backward(forward);
  const ref = await backwardReference(w, inputs, hooks);
  if (ref === null) return null;
  return checkBackward(forward, grads, ref, subject.tolerance, inputs.shape);
}

/**
 * The backward gate: before any timing in a series, the subject's forward output and gradients at
 * a small size (the series' axes at `backwardGateSize`) against the float64 reference. A failure
 * marks every row of the series WRONG; a throw is a failed gate too, never a silent pass.
 */
async function backwardGate(
  subject: Subject,
  w: Workload,
  options: RunOptions,
  hooks: RunHooks,
): Promise<CheckResult | null> {
  const small = gateWorkload(w, options.backwardGateSize ?? BACKWARD_GATE_SIZE);
  const prepare = subject.prepareBackward as NonNullable<Subject['prepareBackward']>;
  return gate(subject, small, options.seed, prepare.bind(subject), (prepared, inputs) =>
    checkOnce(subject, prepared, small, inputs, hooks),
  );
}

/** The worse of two checks (a failed gate wins over a passing own check). */
function worse(a: CheckResult | null, b: CheckResult | null): CheckResult | null {
  if (a === null) return b;
  if (b === null) return a;
  return b.worstRatio > a.worstRatio ? b : a;
}

/**
 * A backward size: warm-up (forward + backward), this size's own check where the reference is
 * affordable, then repetitions that time the forward and the backward apart. `timing` is forward +
 * backward per repetition (for tf.grads, whose backward re-runs the forward, the backward call alone).
 */
async function measureBackward(
  subject: Subject,
  w: Workload,
  inputs: WorkloadInputs,
  c: SizeContext,
  gate: CheckResult | null,
): Promise<ResultRow> {
  const { options, hooks, memory } = c;
  const flops = backwardFlops(w);
  const prepared = await (subject.prepareBackward as NonNullable<Subject['prepareBackward']>)(w, inputs);
  try {
    memory.rssBaselineBytes = hooks.rss?.() ?? null;
    // the peak covers the warm-up (first-call allocations, wasm memory growth) and every repetition;
    // the float64 reference runs after it is read, so its buffers are not charged to the subject
    if (hooks.resetPeakRss !== undefined && hooks.peakRss !== undefined) hooks.resetPeakRss();
    let first: { forward: ForwardPass; grads: GradientSet } | null = null;
    let warmTime = 0;
    for (let i = 0; i < Math.max(1, options.warmup); i++) {
      const t0 = hooks.now();
      const forward = await prepared.forward();
      const grads = await prepared.backward(forward);
      warmTime = hooks.now() - t0;
      first ??= { forward, grads };
      c.sample();
    }
    const forwardMs: number[] = [];
    const backwardMs: number[] = [];
    const repStart = hooks.now();
    const affordable = affordableReps(c, warmTime);
    do {
      const t0 = hooks.now();
      const forward = await prepared.forward();
      const t1 = hooks.now();
      await prepared.backward(forward);
      const t2 = hooks.now();
      forwardMs.push(t1 - t0);
      backwardMs.push(t2 - t1);
      c.sample();
    } while (!enough(c, forwardMs.length, repStart, affordable));
    const peak = hooks.peakRss?.() ?? null;
    if (peak !== null) {
      memory.rssPeakBytes = peak;
      memory.rssPeakSource = 'high-water mark';
    } else memory.rssPeakSource = 'sampled';
    let own: CheckResult | null = null;
    if (first !== null && referenceCost(w) <= options.checkMaxCost) {
      const ref = await backwardReference(w, inputs, hooks);
      if (ref !== null) own = checkBackward(first.forward, first.grads, ref, subject.tolerance, inputs.shape);
    }
    const derived = prepared.backwardIncludesForward;
    const warmup = Math.max(1, options.warmup);
    const total = summarize(
      forwardMs.map((f, i) => (derived ? backwardMs[i] : f + backwardMs[i])),
      warmup,
    );
    const forward = summarize(forwardMs, warmup);
    const backward = summarize(
      backwardMs.map((b, i) => (derived ? b - forwardMs[i] : b)),
      warmup,
    );
    const rate = (f: FlopCount, ms: number) => ({ dense: f.dense / ms / 1e6, useful: f.useful / ms / 1e6 });
    return {
      subject: subject.id,
      workload: w,
      status: 'ok',
      timing: total,
      flops: flops.total,
      gflops: rate(flops.total, total.median),
      memory,
      check: worse(gate, own),
      phases: {
        forward,
        backward,
        derived,
        ratio: backward.median / forward.median,
        gflops: {
          forward: rate(flops.forward, forward.median),
          backward: rate(flops.backward, backward.median),
        },
      },
    };
  } finally {
    await prepared.dispose();
  }
}

/** A check that failed because the call threw: never a silent pass. */
function thrownCheck(subject: Subject, error: unknown, n: number): CheckResult {
  const { atol, rtol } = subject.tolerance;
  return {
    maxAbsError: Number.POSITIVE_INFINITY,
    worstRatio: Number.POSITIVE_INFINITY,
    pass: false,
    atol,
    rtol,
    worstTensor: `gate threw: ${message(error)}`,
    checkedAt: n,
  };
}

/**
 * The decode-cache gate: before any timing in a series, one step of the subject on a small cache
 * (the series' heads and D at `decodeGateSize` keys) against the float64 reference of the same
 * query over the concatenated K/V. A failure marks every row of the series WRONG.
 */
async function decodeGate(
  subject: Subject,
  w: Workload,
  options: RunOptions,
  hooks: RunHooks,
): Promise<CheckResult | null> {
  const n = options.decodeGateSize ?? DECODE_GATE_SIZE;
  const small = { ...w, n, id: `${w.series}-n${n}` };
  const prepare = subject.prepareDecode as NonNullable<Subject['prepareDecode']>;
  return gate(subject, small, options.seed, prepare.bind(subject), async (prepared, inputs) => {
    const output = await prepared.step();
    const ref = await hooks.reference(small, inputs);
    return ref === null ? null : checkOutput(output, ref, subject.tolerance);
  });
}

/**
 * A decode-cache size: the subject's cache (or arrays) hold `Lk - 1` tokens; warm-up steps, this
 * size's own check where the reference is affordable, then timed steps, each followed by an untimed
 * rewind to `Lk - 1` so every step attends over the same `Lk` keys.
 */
async function measureDecode(
  subject: Subject,
  w: Workload,
  inputs: WorkloadInputs,
  c: SizeContext,
  gate: CheckResult | null,
): Promise<ResultRow> {
  const { options, hooks } = c;
  const prepared = await (subject.prepareDecode as NonNullable<Subject['prepareDecode']>)(w, inputs);
  try {
    let first: Float32Array | null = null;
    let warmTime = 0;
    for (let i = 0; i < Math.max(1, options.warmup); i++) {
      const t0 = hooks.now();
      const out = await prepared.step();
      warmTime = hooks.now() - t0;
      await prepared.rewind?.();
      first ??= out;
      c.sample();
    }
    let own: CheckResult | null = null;
    if (first !== null && referenceCost(w) <= options.checkMaxCost) {
      const ref = await hooks.reference(w, inputs);
      if (ref !== null) own = checkOutput(first, ref, subject.tolerance);
    }
    const samples: number[] = [];
    const repStart = hooks.now();
    const affordable = affordableReps(c, warmTime);
    do {
      const t0 = hooks.now();
      await prepared.step();
      samples.push(hooks.now() - t0);
      await prepared.rewind?.();
      c.sample();
    } while (!enough(c, samples.length, repStart, affordable));
    return timedRow(subject, w, c, samples, worse(gate, own), prepared.placement);
  } finally {
    await prepared.dispose();
  }
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
    const headline = HEADLINE_SERIES_IDS.includes(list[0].series);
    const budget = headline ? options.headlineBudgetMs : options.seriesBudgetMs;
    let seriesStart = hooks.now();
    let previous: { n: number; median: number } | null = null;
    let stopReason: string | null = null;
    let consecutiveErrors = 0;
    // backward, decode-cache, and unchecked forward series: the correctness gate, run once before
    // the first timed size
    let gate: CheckResult | null | undefined;
    // forward series: the worst check so far, carried to the sizes too large to check themselves
    let seriesCheck: CheckResult | null = null;
    for (const w of list) {
      const flops = workloadFlops(w);
      const inapplicable = notApplicableReason(subject, w);
      if (inapplicable !== null) {
        push({ subject: subject.id, workload: w, status: 'not-applicable', reason: inapplicable, flops });
        continue;
      }
      const forced = headline && w.n <= (options.alwaysRunUpTo ?? 0);
      if (stopReason === null && previous !== null && !forced) {
        const exponent = w.mode === 'decode' || w.mode === 'decode-cache' ? 1 : 2;
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
      if (w.mode === 'decode-cache' && gate === undefined) {
        // the gate's one-off costs (an onnxruntime placement probe, first compilation) are not the
        // series': its budget starts after the gate
        gate = await decodeGate(subject, w, options, hooks);
        seriesStart = hooks.now();
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
      const context: SizeContext = { options, hooks, budget, seriesStart, sample, memory };
      try {
        let row: ResultRow;
        if (w.mode === 'backward') {
          gate ??= await backwardGate(subject, w, options, hooks);
          row = await measureBackward(subject, w, inputs, context, gate);
        } else if (w.mode === 'decode-cache') {
          row = await measureDecode(subject, w, inputs, context, gate ?? null);
        } else {
          // only while nothing in the series was checked yet: a checked smaller size speaks for it
          if (gate === undefined && seriesCheck === null && referenceCost(w) > options.checkMaxCost) {
            gate = await forwardGate(subject, w, options, hooks);
            context.seriesStart = seriesStart = hooks.now();
          }
          row = await measureForward(subject, w, inputs, context);
          if (row.check != null) seriesCheck = worse(seriesCheck, { ...row.check, checkedAt: w.n });
          // a size too large for the reference carries the worst check of its series (or the gate's)
          else row.check = worse(gate ?? null, seriesCheck);
        }
        // a backward repetition of tf.grads runs the forward twice: predict from what a repetition costs
        const extra = row.phases?.derived ? row.phases.forward.median : 0;
        previous = { n: w.n, median: (row.timing?.median ?? 0) + extra };
        consecutiveErrors = 0;
        push(row);
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
