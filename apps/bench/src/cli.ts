#!/usr/bin/env node
/**
 * `attnkit-bench`: runs every attnkit backend and every peer over the workload grid, prints the
 * tables, writes JSON, an HTML report and an SVG chart. `pnpm bench --help` lists the filters.
 */
import { fork } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  expandGrid,
  FULL_GRID,
  FULL_RUN,
  type GridSpec,
  HEADLINE_SERIES,
  type HeadPreset,
  measureCeilings,
  QUICK_GRID,
  QUICK_RUN,
  type RunOptions,
  type SubjectReport,
  type Workload,
} from '@attnkit/benchmarks';
import { nodeMachineInfo, peerVersions } from '@attnkit/benchmarks/node';
import cliProgress from 'cli-progress';
import { Command, InvalidArgumentError } from 'commander';
import { seriesIds } from './analysis.js';
import { runBrowserPart } from './browser.js';
import { latencyChart } from './charts.js';
import type { ChildMessage, ChildRequest } from './child.js';
import { checkAppendFile, outputPlan } from './paths.js';
import { type BenchResults, serializeResults } from './results.js';
import { ALL_SUBJECTS, BROWSER_SUBJECTS, NODE_BACKENDS, NODE_PEERS, type SubjectEntry } from './subjects.js';
import { latencyTable, ratioTableText, rooflineTableText } from './table.js';

const here = path.dirname(fileURLToPath(import.meta.url));

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
  mode?: 'prefill' | 'decode' | 'both';
  budget?: number;
  headlineBudget?: number;
  maxRun?: number;
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
      'comma list of subjects: ids (cpu, wasm, ort-node-attention, ...), families (ort-web-1t), or groups: attnkit, peers, node, browser',
      list(String),
    )
    .option('-n, --sizes <list>', 'context sizes: "128,1024" or a doubling range "128..16384"', sizes)
    .option('--heads <list>', 'head presets: h1, h8, gqa (32 query heads, 8 kv heads)', list(heads))
    .option('-d, --dims <list>', 'head dimensions, e.g. 64,128', list(positiveInt))
    .option('--causal <which>', 'true, false or both')
    .option('--mode <which>', 'prefill (Lq = Lk = N), decode (Lq = 1, Lk = N) or both')
    .option(
      '--budget <seconds>',
      'time budget per subject per series (all sizes of one configuration)',
      seconds,
    )
    .option('--headline-budget <seconds>', 'budget of the headline series prefill-causal-d64-h1', seconds)
    .option('--max-run <seconds>', 'do not start a size whose predicted single run is longer', seconds)
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

Examples:
  pnpm bench --quick
  pnpm bench --backends cpu,wasm,ort-node --sizes 512..8192 --heads h1 --dims 64 --causal true --mode prefill
  pnpm bench --backends browser --append bench-results/bench-full.json   # add the browser part to your full run
  pnpm bench --update-committed      # refresh benchmarks/results/bench-full.* (committed)`,
    );
}

function matches(entry: SubjectEntry, filters: string[] | undefined): boolean {
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

/** Grid and run options from the command line. */
export function resolveRun(options: CliOptions): { grid: GridSpec; run: RunOptions } {
  const base = options.quick ? QUICK_GRID : FULL_GRID;
  const grid: GridSpec = {
    sizes: options.sizes ?? base.sizes,
    headDims: options.dims ?? base.headDims,
    heads: options.heads ?? base.heads,
    causal:
      options.causal === undefined
        ? base.causal
        : options.causal === 'both'
          ? [true, false]
          : [options.causal === 'true'],
    modes:
      options.mode === undefined
        ? base.modes
        : options.mode === 'both'
          ? ['prefill', 'decode']
          : [options.mode],
  };
  const run: RunOptions = { ...(options.quick ? QUICK_RUN : FULL_RUN), seed: options.seed };
  if (options.budget !== undefined) run.seriesBudgetMs = options.budget * 1000;
  if (options.headlineBudget !== undefined) run.headlineBudgetMs = options.headlineBudget * 1000;
  if (options.maxRun !== undefined) run.maxRunMs = options.maxRun * 1000;
  return { grid, run };
}

/** How long a child may live before it is killed: its budgets plus slack for startup and one slow run. */
function childDeadlineMs(series: Workload[][], run: RunOptions): number {
  const headline = series.some((s) => s[0]?.series === HEADLINE_SERIES);
  return (
    (series.length - (headline ? 1 : 0)) * run.seriesBudgetMs +
    (headline ? run.headlineBudgetMs : 0) +
    3 * run.maxRunMs +
    60000
  );
}

function runChild(
  entry: SubjectEntry,
  series: Workload[][],
  run: RunOptions,
  onRow: (subject: string, workload: string) => void,
): Promise<SubjectReport> {
  const env = { ...process.env };
  const swiftshader = '/usr/lib/chromium/vk_swiftshader_icd.json';
  // Dawn needs a Vulkan driver; without a GPU the SwiftShader one that Debian's chromium ships
  if (env.VK_ICD_FILENAMES === undefined && existsSync(swiftshader)) {
    env.VK_ICD_FILENAMES = swiftshader;
    // chromium's directory also holds a libvulkan.so.1 for machines without the libvulkan1 package
    env.LD_LIBRARY_PATH = [env.LD_LIBRARY_PATH, '/usr/lib/chromium'].filter(Boolean).join(':');
  }
  const child = fork(path.join(here, 'child.js'), [], {
    env,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    serialization: 'advanced',
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000);
  });
  const rows: SubjectReport['rows'] = [];
  const started = Date.now();
  const request: ChildRequest = {
    type: 'run',
    subject: entry.id,
    series,
    options: run,
    referenceDir: path.join(os.tmpdir(), 'attnkit-bench-reference'),
    cores: os.availableParallelism(),
  };
  return new Promise((resolve) => {
    let settled = false;
    const finish = (report: SubjectReport) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(report);
    };
    const failed = (reason: string): SubjectReport => ({
      id: entry.id,
      kind: entry.kind,
      family: entry.id.replace(/-(attention|mha|matmul)$/, ''),
      label: entry.label,
      environment: 'node',
      status: rows.length > 0 ? 'ok' : 'unavailable',
      reason,
      rows: [
        ...rows,
        // the cells the child never reached are reported, never dropped
        ...series
          .flat()
          .filter((w) => !rows.some((r) => r.workload.id === w.id))
          .map((w) => ({
            subject: entry.id,
            workload: w,
            status: 'error' as const,
            reason,
            flops: { dense: 0, useful: 0 },
          })),
      ],
      stopped: {},
      elapsedMs: Date.now() - started,
    });
    const timer = setTimeout(
      () => {
        child.kill('SIGKILL');
        finish(failed(`killed after ${((Date.now() - started) / 1000).toFixed(0)} s (over its time budget)`));
      },
      childDeadlineMs(series, run),
    );
    child.on('message', (raw) => {
      const message = raw as ChildMessage;
      if (message.type === 'row') {
        rows.push(message.row);
        onRow(entry.id, message.row.workload.id);
      } else if (message.type === 'done') finish(message.report);
      else finish(failed(message.message));
    });
    child.on('exit', (code, signal) => {
      const tail = stderr.trim().split('\n').slice(-2).join(' | ');
      finish(failed(`process exited (${signal ?? code})${tail ? `: ${tail}` : ''}`));
    });
    child.send(request);
  });
}

/** An earlier run with this run's subjects replaced or added; machine fields filled where new. */
function merge(earlier: BenchResults, now: BenchResults): BenchResults {
  const ids = new Set(now.subjects.map((s) => s.id));
  return {
    ...earlier,
    finishedAt: now.finishedAt,
    machine: {
      ...earlier.machine,
      browser: now.machine.browser ?? earlier.machine.browser,
      gpuAdapter: now.machine.gpuAdapter ?? earlier.machine.gpuAdapter,
    },
    // the earlier file's CPU rows were measured against its own ceilings
    ceilings: earlier.ceilings ?? now.ceilings,
    subjects: [...earlier.subjects.filter((s) => !ids.has(s.id)), ...now.subjects],
  };
}

async function main(argv: string[]): Promise<void> {
  const cmd = program();
  const args = argv.slice(2);
  // `pnpm bench -- --quick` passes the separator through: drop it
  if (args[0] === '--') args.shift();
  cmd.parse(args, { from: 'user' });
  const options = cmd.opts<CliOptions>();
  if (options.causal !== undefined && !['true', 'false', 'both'].includes(options.causal))
    cmd.error(`--causal must be true, false or both, got "${options.causal}"`);
  if (options.mode !== undefined && !['prefill', 'decode', 'both'].includes(options.mode))
    cmd.error(`--mode must be prefill, decode or both, got "${options.mode}"`);
  if (options.list) {
    for (const e of ALL_SUBJECTS)
      console.log(`${e.id.padEnd(24)} ${e.kind.padEnd(8)} ${e.environment.padEnd(8)} ${e.label}`);
    return;
  }
  const known = new Set(ALL_SUBJECTS.map((e) => e.id));
  for (const f of options.backends ?? []) {
    const group = ['attnkit', 'peers', 'peer', 'node', 'browser'].includes(f);
    if (!group && !known.has(f) && !ALL_SUBJECTS.some((e) => e.id.startsWith(`${f}-`)))
      cmd.error(`unknown backend "${f}"; see --list`);
  }
  // where the results go and the file to merge into are settled before the run, which can take
  // half an hour: a mistake there must not surface only at the end
  const { out, appendFile } = (() => {
    try {
      return {
        out: outputPlan(options),
        appendFile: options.append === undefined ? undefined : checkAppendFile(options.append),
      };
    } catch (error) {
      return cmd.error(error instanceof Error ? error.message : String(error));
    }
  })();
  const { grid, run } = resolveRun(options);
  const series = expandGrid(grid);
  const nodeEntries = [...NODE_BACKENDS, ...NODE_PEERS].filter((e) => matches(e, options.backends));
  const browserEntries = options.browser ? BROWSER_SUBJECTS.filter((e) => matches(e, options.backends)) : [];
  const cells = series.flat().length;
  const startedAt = new Date().toISOString();
  const machine = nodeMachineInfo();
  console.log(
    `attnkit bench${options.quick ? ' --quick' : ''}: ${nodeEntries.length + browserEntries.length} subjects x ${cells} workloads on ${machine.cpu} (${machine.cores} cores), Node ${machine.node}`,
  );
  // measured first, while no subject process competes for the cores
  const ceilings = measureCeilings();
  console.log(
    `ceilings: wasm SIMD128 ${ceilings.simdGflops.toFixed(1)} GFLOP/s (1 thread), memory copy ${ceilings.copyGBps.toFixed(1)} GB/s`,
  );
  const bar = new cliProgress.SingleBar(
    {
      format: ' {bar} {value}/{total} | {subject} {workload}',
      hideCursor: true,
      clearOnComplete: true,
      noTTYOutput: false,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(cells * (nodeEntries.length + browserEntries.length), 0, { subject: '', workload: '' });
  const subjects: SubjectReport[] = [];
  let done = 0;
  for (const entry of nodeEntries) {
    const base = done;
    bar.update(base, { subject: entry.id, workload: 'starting' });
    const report = await runChild(entry, series, run, (subject, workload) =>
      bar.increment(1, { subject, workload }),
    );
    subjects.push(report);
    done = base + cells;
    bar.update(done, {
      subject: entry.id,
      workload: report.status === 'ok' ? 'done' : `unavailable: ${report.reason}`,
    });
    if (!process.stdout.isTTY) {
      const ok = report.rows.filter((r) => r.status === 'ok').length;
      console.log(
        `${entry.id}: ${report.status === 'ok' ? `${ok}/${cells} timed` : `unavailable: ${report.reason}`}`,
      );
    }
  }
  let browserInfo: { userAgent: string | null; adapter: string | null } = { userAgent: null, adapter: null };
  if (browserEntries.length > 0) {
    const browser = await runBrowserPart(
      browserEntries,
      series,
      run,
      (subject, workload) => bar.increment(1, { subject, workload }),
      browserEntries.length * childDeadlineMs(series, run),
    );
    subjects.push(...browser.reports);
    browserInfo = { userAgent: browser.userAgent, adapter: browser.adapter };
  }
  bar.stop();
  let results: BenchResults = {
    schema: 'attnkit-bench/1',
    startedAt,
    finishedAt: new Date().toISOString(),
    quick: options.quick === true,
    grid,
    options: run,
    machine: {
      cpu: machine.cpu,
      cores: machine.cores,
      memoryBytes: machine.memoryBytes,
      platform: machine.platform,
      arch: machine.arch,
      node: machine.node,
      browser: browserInfo.userAgent,
      gpuAdapter: browserInfo.adapter ?? subjects.find((s) => s.id === 'webgpu-dawn')?.info?.engine ?? null,
      hostname: machine.hostname,
    },
    versions: peerVersions(),
    ceilings,
    subjects,
  };
  if (appendFile !== undefined)
    results = merge(JSON.parse(readFileSync(appendFile, 'utf8')) as BenchResults, results);
  for (const s of results.subjects)
    if (s.status !== 'ok') console.log(`unavailable: ${s.id}: ${s.reason ?? 'unknown reason'}`);
  const ids = seriesIds(results);
  const shown = ids.includes(HEADLINE_SERIES) ? HEADLINE_SERIES : ids[0];
  if (shown !== undefined) {
    console.log(latencyTable(results, shown));
    console.log(ratioTableText(results, shown));
    const roofline = rooflineTableText(results, shown);
    if (roofline !== '') console.log(roofline);
    const stops = results.subjects.filter((s) => s.stopped[shown] !== undefined);
    if (stops.length > 0) console.log(`Where the budget stopped each subject in ${shown}:`);
    for (const s of stops) console.log(`  ${s.id}: N = ${s.stopped[shown].n}: ${s.stopped[shown].reason}`);
  }
  mkdirSync(out.dir, { recursive: true });
  const { name } = out;
  const json = path.join(out.dir, `${name}.json`);
  writeFileSync(json, `${serializeResults(results)}\n`);
  console.log(`JSON: ${json}`);
  if (options.html) {
    // loaded only here: echarts takes most of a second to load, which `--help` and `--list` need not wait for
    const { renderHtml, renderSvg } = await import('./report.js');
    const html = path.join(out.dir, `${name}.html`);
    writeFileSync(html, renderHtml(results));
    console.log(`HTML report: ${html}`);
    if (shown !== undefined) {
      const svg = path.join(out.dir, `${name}-latency.svg`);
      writeFileSync(svg, renderSvg(latencyChart(results, shown)));
      console.log(`SVG chart: ${svg}`);
    }
  }
}

main(process.argv).catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exit(1);
});
