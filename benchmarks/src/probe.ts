/**
 * The backward's memory probe (issue 13: "causal N = 16384, D = 64 backward runs on wasm and cpu with
 * memory far below an N^2 buffer"): one forward and one backward at a size too large to time in a
 * grid, in a process of its own, with the kernel's RSS high-water mark around the pair. A fresh
 * process per subject is what makes the figure the subject's own: no earlier size's wasm memory,
 * heap or caches in it.
 */
import type { Subject } from './subject.js';
import { makeInputs, type Workload, workloadShape } from './workloads.js';

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
  /** Every gradient value finite (a probe that returned NaN measured nothing useful). */
  finite?: boolean;
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

/** Sizes of the probe's yardsticks for a workload. */
export function probeYardsticks(w: Workload): { scoreBufferBytes: number; inputBytes: number } {
  const s = workloadShape(w);
  return {
    scoreBufferBytes: 4 * s.queryHeads * s.queryLength * s.keyLength,
    inputBytes:
      4 *
      (s.queryHeads * s.queryLength * s.headDim +
        s.kvHeads * s.keyLength * (s.headDim + s.valueDim) +
        s.queryHeads * s.queryLength * s.valueDim),
  };
}

/** Runs one forward + backward of a backward workload and reports the RSS around it. */
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
    const inapplicable =
      subject.notApplicable?.(w) ??
      (subject.prepareBackward === undefined ? `${subject.id} has no backward pass` : null);
    if (inapplicable !== null || subject.prepareBackward === undefined)
      return { ...base, status: 'not-applicable', reason: inapplicable ?? undefined };
    const inputs = makeInputs(w, seed);
    const prepared = await subject.prepareBackward(w, inputs);
    try {
      hooks.gc?.();
      const baselineBytes = hooks.rss();
      if (baselineBytes === null || !hooks.resetPeakRss())
        return { ...base, status: 'error', reason: 'no RSS high-water mark here (needs Linux procfs)' };
      const t0 = hooks.now();
      const forward = await prepared.forward();
      const t1 = hooks.now();
      const grads = await prepared.backward(forward);
      const t2 = hooks.now();
      const peakBytes = hooks.peakRss() ?? baselineBytes;
      const finite = [grads.gradQ, grads.gradK, grads.gradV].every((g) => g.every(Number.isFinite));
      return {
        ...base,
        baselineBytes,
        peakBytes,
        deltaBytes: peakBytes - baselineBytes,
        forwardMs: t1 - t0,
        // tf.grads re-runs the forward inside its backward call
        backwardMs: prepared.backwardIncludesForward ? t2 - t1 - (t1 - t0) : t2 - t1,
        finite,
      };
    } finally {
      await prepared.dispose();
    }
  } catch (error) {
    return { ...base, status: 'error', reason: message(error) };
  } finally {
    await subject.dispose().catch(() => undefined);
  }
}
