/** Summary of repeated timings, in milliseconds. */
export interface TimingStats {
  median: number;
  p10: number;
  p90: number;
  mean: number;
  min: number;
  max: number;
  /** Timed repetitions (warm-up excluded). */
  reps: number;
  /** Warm-up runs before the timed ones. */
  warmup: number;
}

/** Percentile by linear interpolation between order statistics (`q` in [0, 1]). */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const position = (sorted.length - 1) * q;
  const lo = Math.floor(position);
  const hi = Math.ceil(position);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (position - lo);
}

/** Median, p10, p90, mean, min and max of a sample. */
export function summarize(samples: readonly number[], warmup: number): TimingStats {
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = sorted.reduce((s, x) => s + x, 0) / sorted.length;
  return {
    median: percentile(sorted, 0.5),
    p10: percentile(sorted, 0.1),
    p90: percentile(sorted, 0.9),
    mean,
    min: sorted[0],
    max: sorted[sorted.length - 1],
    reps: sorted.length,
    warmup,
  };
}
