/**
 * The memory probe: one call at a size too large to time in a grid, in a process of its own, with
 * the kernel's RSS high-water mark around it. For a `backward` workload the call is one forward and
 * one backward (issue 13: "causal N = 16384, D = 64 backward runs on wasm and cpu with memory far
 * below an N^2 buffer"); for a `prefill` workload one forward (the long-context goal: causal
 * N = 65536 with no `N x N` buffer), whose last query rows are also checked against the float64
 * reference. A fresh process per subject is what makes the figure the subject's own: no earlier
 * size's wasm memory, heap or caches in it.
 */
import { referenceAttention64, shapeSymbols } from '@attnkit/spec';
import type { Subject } from './subject.js';
import { makeInputs, type Workload, type WorkloadInputs, workloadShape } from './workloads.js';

/** How many of the last query rows a forward probe checks against the float64 reference (each sees every key before it). */
export const PROBE_CHECKED_ROWS = 4;

/** What the probe measured for one subject. */
export interface RssProbeResult {
  subject: string;
  workload: Workload;
  /** `not-applicable`: the subject has no backward; `unavailable`: it could not start here. */
  status: 'ok' | 'error' | 'not-applicable' | 'unavailable';
  reason?: string;
  /** RSS after the inputs are made and the subject prepared, before the forward (after a GC where exposed). */
  baselineBytes?: number;
  /** The high-water mark over the forward and the backward, reset at the baseline. */
  peakBytes?: number;
  /** `peakBytes - baselineBytes`: what forward + backward needed on top of their inputs. */
  deltaBytes?: number;
  /** One float32 `Lq x Lk` buffer per query head: the least a composed (unfused) backward holds. */
  scoreBufferBytes: number;
  /** q, k, v, gradOutput in float32: the inputs already resident at the baseline. */
  inputBytes: number;
  forwardMs?: number;
  backwardMs?: number;
  /** Every gradient value (forward probe: output value) finite (a probe that returned NaN measured nothing useful). */
  finite?: boolean;
  /** Forward probe: the largest `|output - reference|` over the last {@link PROBE_CHECKED_ROWS} query rows of each head. */
  checkedError?: number;
}

/** How the probe reads the process; the Node child supplies procfs, a test its own. */
export interface ProbeHooks {
  now(): number;
  rss(): number | null;
  resetPeakRss(): boolean;
  peakRss(): number | null;
  /** A full garbage collection before the baseline, where `--expose-gc` gives one. */
  gc?: () => void;
}

function message(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0].slice(0, 400);
}

/** Sizes of the probe's yardsticks for a workload (a forward probe has no gradOutput among its inputs). */
export function probeYardsticks(w: Workload): { scoreBufferBytes: number; inputBytes: number } {
  const s = workloadShape(w);
  const gradOutput = w.mode === 'backward' ? s.queryHeads * s.queryLength * s.valueDim : 0;
  return {
    scoreBufferBytes: 4 * s.queryHeads * s.queryLength * s.keyLength,
    inputBytes:
      4 *
      (s.queryHeads * s.queryLength * s.headDim +
        s.kvHeads * s.keyLength * (s.headDim + s.valueDim) +
        gradOutput),
  };
}

/**
 * The largest error of the last `rows` query rows of every head against the float64 reference,
 * computed for those rows alone: a causal query row `i` attends to keys `0..i`, which is the
 * reference over one query and `i + 1` keys (queries align to the end of the keys). Costs
 * `rows * N * (D + Dv)` instead of the reference's `N^2`.
 */
export function lastRowsError(
  w: Workload,
  inputs: WorkloadInputs,
  output: Float32Array,
  rows: number,
): number {
  const { Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(workloadShape(w));
  let worst = 0;
  for (let h = 0; h < Hq; h++) {
    const g = Math.floor(h / (Hq / Hkv));
    for (let i = Math.max(0, Lq - rows); i < Lq; i++) {
      const keys = w.causal ? i + 1 + (Lk - Lq) : Lk;
      const row = (h * Lq + i) * D;
      const ref = referenceAttention64({
        q: inputs.q.subarray(row, row + D),
        k: inputs.k.subarray(g * Lk * D, (g * Lk + keys) * D),
        v: inputs.v.subarray(g * Lk * Dv, (g * Lk + keys) * Dv),
        shape: { batch: 1, queryHeads: 1, queryLength: 1, keyLength: keys, headDim: D, valueDim: Dv },
      }).output;
      for (let d = 0; d < Dv; d++) worst = Math.max(worst, Math.abs(output[(h * Lq + i) * Dv + d] - ref[d]));
    }
  }
  return worst;
}

/** Runs one forward + backward of a backward workload, or one forward of a prefill workload, and reports the RSS around it. */
export async function rssProbe(
  subject: Subject,
  w: Workload,
  seed: number,
  hooks: ProbeHooks,
): Promise<RssProbeResult> {
  const base: RssProbeResult = { subject: subject.id, workload: w, status: 'ok', ...probeYardsticks(w) };
  try {
    await subject.init();
  } catch (error) {
    return { ...base, status: 'unavailable', reason: message(error) };
  }
  try {
    return await (w.mode === 'prefill' ? forwardProbe : backwardProbe)(subject, w, seed, hooks, base);
  } catch (error) {
    return { ...base, status: 'error', reason: message(error) };
  } finally {
    await subject.dispose().catch(() => undefined);
  }
}

/**
 * The measurement both probes share: a GC where exposed, the RSS baseline, the high-water mark reset,
 * then `call`, then the peak; `call`'s own figures (times, finiteness) are merged in.
 */
async function aroundPeak(
  hooks: ProbeHooks,
  base: RssProbeResult,
  call: () => Promise<Partial<RssProbeResult>>,
): Promise<RssProbeResult> {
  hooks.gc?.();
  const baselineBytes = hooks.rss();
  if (baselineBytes === null || !hooks.resetPeakRss())
    return { ...base, status: 'error', reason: 'no RSS high-water mark here (needs Linux procfs)' };
  const figures = await call();
  const peakBytes = hooks.peakRss() ?? baselineBytes;
  return { ...base, baselineBytes, peakBytes, deltaBytes: peakBytes - baselineBytes, ...figures };
}

/** The backward probe: one cold forward + backward between the baseline and the high-water mark. */
async function backwardProbe(
  subject: Subject,
  w: Workload,
  seed: number,
  hooks: ProbeHooks,
  base: RssProbeResult,
): Promise<RssProbeResult> {
  const inapplicable =
    subject.notApplicable?.(w) ??
    (subject.prepareBackward === undefined ? `${subject.id} has no backward pass` : null);
  if (inapplicable !== null || subject.prepareBackward === undefined)
    return { ...base, status: 'not-applicable', reason: inapplicable ?? undefined };
  const inputs = makeInputs(w, seed);
  const prepared = await subject.prepareBackward(w, inputs);
  try {
    return await aroundPeak(hooks, base, async () => {
      const t0 = hooks.now();
      const forward = await prepared.forward();
      const t1 = hooks.now();
      const grads = await prepared.backward(forward);
      const t2 = hooks.now();
      return {
        forwardMs: t1 - t0,
        // tf.grads re-runs the forward inside its backward call
        backwardMs: prepared.backwardIncludesForward ? t2 - t1 - (t1 - t0) : t2 - t1,
        finite: [grads.gradQ, grads.gradK, grads.gradV].every((g) => g.every(Number.isFinite)),
      };
    });
  } finally {
    await prepared.dispose();
  }
}

/** The forward probe: one cold forward between the baseline and the high-water mark, its last rows checked. */
async function forwardProbe(
  subject: Subject,
  w: Workload,
  seed: number,
  hooks: ProbeHooks,
  base: RssProbeResult,
): Promise<RssProbeResult> {
  const inapplicable = subject.notApplicable?.(w) ?? null;
  if (inapplicable !== null) return { ...base, status: 'not-applicable', reason: inapplicable };
  const inputs = makeInputs(w, seed);
  const prepared = await subject.prepare(w, inputs);
  try {
    let output: Float32Array | null = null;
    const result = await aroundPeak(hooks, base, async () => {
      const t0 = hooks.now();
      output = await prepared.run();
      return { forwardMs: hooks.now() - t0, finite: output.every(Number.isFinite) };
    });
    // checked after the peak is read, so the reference's rows do not count in it
    return output === null
      ? result
      : { ...result, checkedError: lastRowsError(w, inputs, output, PROBE_CHECKED_ROWS) };
  } finally {
    await prepared.dispose();
  }
}
