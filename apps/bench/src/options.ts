/**
 * The command line's options: parsing, the grid and run options they select, and which subjects
 * run. Apart from the CLI's main so tests can check them without starting a run.
 */
import {
  BACKWARD_GRID,
  BACKWARD_QUICK_GRID,
  BACKWARD_RUN,
  DECODE_CACHE_GRID,
  DECODE_CACHE_QUICK_GRID,
  DECODE_CACHE_RUN,
  FULL_GRID,
  FULL_RUN,
  type GridSpec,
  type HeadPreset,
  makeWorkload,
  QUICK_BACKWARD_RUN,
  QUICK_DECODE_CACHE_RUN,
  QUICK_GRID,
  QUICK_RUN,
  type RunOptions,
  type Workload,
} from '@attnkit/benchmarks';
import { Command, InvalidArgumentError } from 'commander';
import { backwardEntries, decodeCacheEntries, type SubjectEntry } from './subjects.js';

function list<T extends string | number>(parse: (item: string) => T) {
  return (value: string): T[] =>
    value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0)
      .map(parse);
}

function positiveInt(item: string): number {
  const n = Number(item);
  if (!Number.isInteger(n) || n < 1)
    throw new InvalidArgumentError(`expected a positive integer, got "${item}"`);
  return n;
}

function sizes(value: string): number[] {
  const range = /^(\d+)\.\.(\d+)$/.exec(value.trim());
  if (range === null) return list(positiveInt)(value);
  const out: number[] = [];
  for (let n = positiveInt(range[1]); n <= positiveInt(range[2]); n *= 2) out.push(n);
  return out;
}

function heads(item: string): HeadPreset {
  if (item === 'h1' || item === 'h8' || item === 'gqa') return item;
  if (item === '1') return 'h1';
  if (item === '8') return 'h8';
  throw new InvalidArgumentError(`expected h1, h8 or gqa, got "${item}"`);
}

/** `--rss-probe`: a context size, or `off`. */
export function probeSize(value: string): number | false {
  if (value.trim() === 'off') return false;
  return positiveInt(value.trim());
}

/** The backward mode's memory probe size when `--rss-probe` is not given: the N = 16384, none in a quick run. */
export const DEFAULT_PROBE_SIZE = 16384;

/**
 * Most `--passes`: enough for a per-pass ratio spread (pass-spread.ts) to say whether a ratio near 1
 * is a lead or the load, few enough that a full run still fits an evening.
 */
export const MAX_PASSES = 8;

function passCount(value: string): number {
  const n = positiveInt(value);
  if (n > MAX_PASSES) throw new InvalidArgumentError(`expected 1 to ${MAX_PASSES} passes, got ${value}`);
  return n;
}

function seconds(value: string): number {
  const s = Number(value);
  if (!Number.isFinite(s) || s <= 0) throw new InvalidArgumentError(`expected seconds > 0, got "${value}"`);
  return s;
}

/** Options after commander. */
export interface CliOptions {
  quick?: boolean;
  backends?: string[];
  sizes?: number[];
  heads?: HeadPreset[];
  dims?: number[];
  causal?: 'true' | 'false' | 'both';
  mode?: 'prefill' | 'decode' | 'both' | 'backward' | 'decode-cache' | 'gpu';
  /** Backward mode: the RSS probe's N, or false for none; undefined = the default for the run. */
  rssProbe?: number | false;
  budget?: number;
  headlineBudget?: number;
  maxRun?: number;
  /** Runs of every subject, the order reversed every other pass; each row keeps its fastest pass. */
  passes?: number;
  output?: string;
  name?: string;
  updateCommitted?: boolean;
  browser: boolean;
  html: boolean;
  seed: number;
  list?: boolean;
  append?: string;
}

export function program(): Command {
  return new Command('attnkit-bench')
    .description(
      'Benchmark attnkit backends against peers (naive JS, TF.js, onnxruntime-web, onnxruntime-node) over context sizes.\n' +
        'Writes <output>/<name>.json, <name>.html (report with charts) and <name>-latency.svg.',
    )
    .option(
      '--quick',
      'small grid and short budgets: N 128..1024, D 64, h1 and gqa, causal, both modes (durations: benchmarks/README.md)',
    )
    .option(
      '-b, --backends <ids>',
      'comma list of subjects: ids (cpu, wasm, ort-node-attention, ...), families (ort-web-1t), or groups: attnkit, peers, node, browser. An id also selects the ids it is a family of (wasm: wasm-mt; webgpu: webgpu-dawn and, in decode-cache, webgpu-stateless); see --list',
      list(String),
    )
    .option('-n, --sizes <list>', 'context sizes: "128,1024" or a doubling range "128..16384"', sizes)
    .option('--heads <list>', 'head presets: h1, h8, gqa (32 query heads, 8 kv heads)', list(heads))
    .option('-d, --dims <list>', 'head dimensions, e.g. 64,128', list(positiveInt))
    .option('--causal <which>', 'true, false or both')
    .option(
      '--mode <which>',
      'prefill (Lq = Lk = N), decode (Lq = 1, Lk = N), both, backward (forward + attentionBackward on its own grid: N 512..8192, D 64, h1 and h8, causal and not), or decode-cache (per-step latency of a resident KV cache: Lk 1k..32k, GQA 32/8 and h8, D 64 and 128), or gpu (scripts/gpu-check.sh: adapter, webgpu conformance, WGSL matmul ceiling, webgpu prefill and KV-cache decode on Dawn, one JSON)',
    )
    .option(
      '--rss-probe <n|off>',
      `one causal call at this N (D 64, one head) per attnkit CPU backend, each in a fresh process, with its RSS high-water mark: --mode backward a forward + backward (default ${DEFAULT_PROBE_SIZE}; off with --quick), --mode prefill a forward whose last rows are checked against float64 (only when given, e.g. 65536)`,
      probeSize,
    )
    .option(
      '--budget <seconds>',
      'time budget per subject per series (all sizes of one configuration)',
      seconds,
    )
    .option('--headline-budget <seconds>', 'budget of the headline series prefill-causal-d64-h1', seconds)
    .option('--max-run <seconds>', 'do not start a size whose predicted single run is longer', seconds)
    .option(
      '--passes <n>',
      `run every subject n times (1-${MAX_PASSES}; default 2 with --update-committed, else 1), the subject order reversed every other pass; each row keeps its fastest pass, so a load change during the run favours no subject (ratios are then best of n against best of n), and a second table gives each ratio pass by pass (median, range, passes with attnkit at least as fast)`,
      passCount,
    )
    .option(
      '-o, --output <dir>',
      'output directory, relative to where you run the command (default: bench-results/ at the repository root, ignored by git)',
    )
    .option('--name <name>', 'base name of the output files (default bench-full or bench-quick)')
    .option(
      '--update-committed',
      'write to benchmarks/results/bench-full.* (the committed results) instead of bench-results/',
    )
    .option('--no-browser', 'skip the headless-Chromium part (webgpu, webgl, onnxruntime-web WebGPU)')
    .option('--no-html', 'skip the HTML report and the SVG chart')
    .option('--seed <n>', 'input seed', positiveInt, 1)
    .option(
      '--append <file>',
      'merge into an earlier result JSON (same grid; its other subjects are kept), relative to where you run the command; checked before the run',
    )
    .option('--list', 'list the subjects and exit')
    .addHelpText(
      'after',
      `
Defaults: the full grid (N 128..16384 doubling, D 64 and 128, heads h1/h8/gqa, causal and not,
prefill and decode), ${FULL_RUN.seriesBudgetMs / 1000} s per series per subject, ${FULL_RUN.headlineBudgetMs / 1000} s for the headline series,
no single run predicted over ${FULL_RUN.maxRunMs / 1000} s. A subject that cannot run here is reported "unavailable: <reason>";
a size it did not reach is reported "budget" with the reason in the JSON.

--mode backward: forward + attentionBackward timed apart, on its own grid (N 512..8192, D 64, h1 and h8,
causal and not; --quick: N 128..512, h1), ${BACKWARD_RUN.seriesBudgetMs / 1000} s per series, ${BACKWARD_RUN.headlineBudgetMs / 1000} s for backward-causal-d64-h1. Subjects: every
attnkit backend (one whose capabilities lack 'backward' is reported "not applicable"), naive JS,
TF.js cpu and wasm tf.grads. Each series first checks every subject's gradients against the float64
reference at N = ${BACKWARD_RUN.backwardGateSize}; then the RSS probe (--rss-probe, default N = 16384) runs each attnkit CPU backend once in a fresh process.

--mode decode-cache: one decoder step (append the token's K/V, attend with its query, read back) against
a cache of Lk = 1024, 4096, 8192, 16384, 32768 tokens, GQA 32/8 and h8, D 64 and 128 (--quick: Lk 256..2048,
D 64), median/p10/p90 over ${DECODE_CACHE_RUN.minReps}..${DECODE_CACHE_RUN.maxReps} steps. Subjects: every attnkit backend listing 'kvCache', each
one's stateless call (<id>-stateless), onnxruntime-web 1 thread and all cores and onnxruntime-node
1 thread running GroupQueryAttention (<family>-gqa). Each series first checks one step at Lk = ${DECODE_CACHE_RUN.decodeGateSize}.

Examples:
  pnpm bench --quick
  pnpm bench --mode backward --quick  # forward + backward, N 128..512, with the gradient check
  pnpm bench --mode backward          # the backward grid, the peers' tf.grads, the N = 16384 RSS probe
  pnpm bench --mode decode-cache --quick   # cache steps vs stateless vs onnxruntime GQA, small caches
  pnpm bench --backends cpu,wasm,ort-node --sizes 512..8192 --heads h1 --dims 64 --causal true --mode prefill
  pnpm bench --backends browser --append bench-results/bench-full.json   # add the browser part to your full run
  pnpm bench --update-committed      # refresh benchmarks/results/bench-full.* (committed)`,
    );
}

export function matches(entry: SubjectEntry, filters: string[] | undefined): boolean {
  if (filters === undefined) return true;
  return filters.some(
    (f) =>
      f === entry.id ||
      entry.id.startsWith(`${f}-`) ||
      (f === 'attnkit' && entry.kind === 'attnkit') ||
      ((f === 'peers' || f === 'peer') && entry.kind === 'peer') ||
      f === entry.environment,
  );
}

/** A mode's grid: its base grid narrowed by `--sizes`, `--dims`, `--heads` and `--causal`. */
function gridOf(options: CliOptions, base: GridSpec, modes: GridSpec['modes']): GridSpec {
  return {
    sizes: options.sizes ?? base.sizes,
    headDims: options.dims ?? base.headDims,
    heads: options.heads ?? base.heads,
    causal:
      options.causal === undefined
        ? base.causal
        : options.causal === 'both'
          ? [true, false]
          : [options.causal === 'true'],
    modes,
  };
}

/**
 * Passes when `--passes` is not given: 2 for `--update-committed` (the published tables, whose
 * ratios a load change during a single pass would bias towards the subject that ran in the quiet
 * part), 1 otherwise (a run for one's own look is half as long).
 */
export function defaultPasses(options: Pick<CliOptions, 'passes' | 'updateCommitted'>): number {
  return options.passes ?? (options.updateCommitted === true ? 2 : 1);
}

/** Grid and run options from the command line. */
export function resolveRun(options: CliOptions): { grid: GridSpec; run: RunOptions; probe: number | null } {
  if (options.mode === 'backward') {
    const grid = gridOf(options, options.quick ? BACKWARD_QUICK_GRID : BACKWARD_GRID, ['backward']);
    const run: RunOptions = { ...(options.quick ? QUICK_BACKWARD_RUN : BACKWARD_RUN), seed: options.seed };
    applyBudgets(run, options);
    const probe =
      options.rssProbe === undefined ? (options.quick ? null : DEFAULT_PROBE_SIZE) : options.rssProbe || null;
    return { grid, run, probe };
  }
  if (options.mode === 'decode-cache') {
    const grid: GridSpec = {
      ...gridOf(options, options.quick ? DECODE_CACHE_QUICK_GRID : DECODE_CACHE_GRID, ['decode-cache']),
      // a single decode query sees every cached key: causal changes nothing, one value only
      causal: [true],
    };
    const run: RunOptions = {
      ...(options.quick ? QUICK_DECODE_CACHE_RUN : DECODE_CACHE_RUN),
      seed: options.seed,
    };
    applyBudgets(run, options);
    return { grid, run, probe: null };
  }
  const base = options.quick ? QUICK_GRID : FULL_GRID;
  const grid = gridOf(
    options,
    base,
    // --mode gpu never reaches the grid (cli.ts hands it to gpu-mode.ts)
    options.mode === undefined || options.mode === 'gpu'
      ? base.modes
      : options.mode === 'both'
        ? ['prefill', 'decode']
        : [options.mode],
  );
  const run: RunOptions = { ...(options.quick ? QUICK_RUN : FULL_RUN), seed: options.seed };
  applyBudgets(run, options);
  // the forward probe runs only when asked for (cli.ts allows it with --mode prefill alone)
  return { grid, run, probe: options.rssProbe || null };
}

function applyBudgets(run: RunOptions, options: CliOptions): void {
  if (options.budget !== undefined) run.seriesBudgetMs = options.budget * 1000;
  if (options.headlineBudget !== undefined) run.headlineBudgetMs = options.headlineBudget * 1000;
  if (options.maxRun !== undefined) run.maxRunMs = options.maxRun * 1000;
}

/** The probe's workload: causal, D 64, one head, at `n`; a forward + backward, or (`prefill`) a forward alone. */
export function probeWorkload(n: number, mode: 'backward' | 'prefill' = 'backward'): Workload {
  return makeWorkload(mode, true, 64, 'h1', n);
}

/** Subjects of a run: the filters, and in backward mode only those that can have a backward. */
export function selectEntries(
  entries: readonly SubjectEntry[],
  options: Pick<CliOptions, 'backends' | 'mode'>,
): SubjectEntry[] {
  const matched = entries.filter((e) => matches(e, options.backends));
  if (options.mode === 'decode-cache') return decodeCacheEntries(matched, options.backends);
  const forward = matched.filter((e) => e.decodeOnly !== true || options.backends?.includes(e.id));
  return options.mode === 'backward' ? backwardEntries(forward, options.backends) : forward;
}

/**
 * The RSS probe's subjects: the run's attnkit CPU backends. Not Dawn: on a real adapter its memory
 * is the GPU's, which RSS does not see, and on SwiftShader one N = 16384 call takes minutes.
 */
export function probeSubjects(entries: readonly SubjectEntry[]): SubjectEntry[] {
  return entries.filter((e) => e.kind === 'attnkit' && e.environment === 'node' && e.id !== 'webgpu-dawn');
}
