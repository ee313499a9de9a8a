import { workloadShape } from '@attnkit/benchmarks';
import { rowAt, seriesSizes, usable } from './analysis.js';
import type { BenchResults } from './results.js';

/** One CPU result set against the machine's ceilings measured in the same run. */
export interface RooflineRow {
  subject: string;
  n: number;
  ms: number;
  threads: number;
  /** Useful GFLOP/s (visible pairs only) and its share of the SIMD128 ceiling times the threads used. */
  gflops: number;
  simdPercent: number;
  /** Least possible traffic (q, k, v read once, output written once) per second, and its share of the copy bandwidth. */
  gbps: number;
  copyPercent: number;
}

/**
 * Bytes an attention call must move at the least: q, k and v read once and the output written once
 * (f32). Real kernels move more; this is the memory-side floor a result is compared with.
 */
export function minimumBytes(w: Parameters<typeof workloadShape>[0]): number {
  const s = workloadShape(w);
  const q = s.batch * s.queryHeads * s.queryLength * s.headDim;
  const k = s.batch * s.kvHeads * s.keyLength * s.headDim;
  const v = s.batch * s.kvHeads * s.keyLength * s.valueDim;
  const out = s.batch * s.queryHeads * s.queryLength * s.valueDim;
  return 4 * (q + k + v + out);
}

/** CPU subjects: the Node ones except Dawn (a GPU API, even on SwiftShader). */
function isCpu(environment: string, id: string): boolean {
  return environment === 'node' && id !== 'webgpu-dawn';
}

/**
 * Every timed CPU result of a series as a share of the ceilings. A multi-threaded subject is held
 * to the single-thread SIMD ceiling times its threads (the cores are assumed to scale; on a shared
 * machine they do not quite, which flatters nobody). Native code with wider vectors (onnxruntime-node's
 * AVX-512) can pass 100%: the ceiling is wasm SIMD128's, the one the wasm subjects are bound by.
 */
export function rooflineRows(results: BenchResults, series: string): RooflineRow[] {
  const ceilings = results.ceilings;
  if (ceilings === undefined) return [];
  const rows: RooflineRow[] = [];
  for (const s of results.subjects) {
    if (s.status !== 'ok' || !isCpu(s.environment, s.id)) continue;
    const threads = Math.max(1, s.info?.threads ?? 1);
    for (const n of seriesSizes(results, series)) {
      const row = rowAt(s, series, n);
      if (row === undefined || !usable(row) || row.timing === undefined) continue;
      const ms = row.timing.median;
      const gflops = row.flops.useful / ms / 1e6;
      const gbps = minimumBytes(row.workload) / ms / 1e6;
      rows.push({
        subject: s.id,
        n,
        ms,
        threads,
        gflops,
        simdPercent: (100 * gflops) / (ceilings.simdGflops * threads),
        gbps,
        copyPercent: (100 * gbps) / ceilings.copyGBps,
      });
    }
  }
  return rows;
}

/** The largest size each subject reached: the terminal's one-line-per-subject summary. */
export function rooflineSummary(results: BenchResults, series: string): RooflineRow[] {
  const last = new Map<string, RooflineRow>();
  for (const r of rooflineRows(results, series)) last.set(r.subject, r);
  return [...last.values()];
}

/** A rate to 3 significant digits: the GB/s of attention are small, and 2 decimals printed 0.00. */
export function formatRate(x: number): string {
  return x >= 100 ? x.toFixed(0) : x.toPrecision(3);
}

/** A percentage with the precision the noise of these machines allows. */
export function formatPercent(p: number): string {
  return p >= 10 ? `${p.toFixed(0)}%` : `${p.toFixed(1)}%`;
}

/** The ceilings in one line, for the tables' headings. */
export function ceilingsLine(results: BenchResults): string {
  const c = results.ceilings;
  if (c === undefined) return 'machine ceilings not measured in this run';
  const js =
    c.jsGflops === undefined ? '' : `, plain JS multiply-add ${c.jsGflops.toFixed(2)} GFLOP/s per thread`;
  return `this machine, measured in this run: wasm SIMD128 ${c.simdGflops.toFixed(1)} GFLOP/s per thread${js}, memory copy ${c.copyGBps.toFixed(1)} GB/s`;
}
