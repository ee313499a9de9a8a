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
  BACKWARD_HEADLINE_SERIES,
  DECODE_CACHE_HEADLINE_SERIES,
  expandGrid,
  HEADLINE_SERIES,
  HEADLINE_SERIES_IDS,
  measureCeilings,
  type RssProbeResult,
  type RunOptions,
  type SubjectReport,
  type Workload,
} from '@attnkit/benchmarks';
import { nodeMachineInfo, peerVersions } from '@attnkit/benchmarks/node';
import cliProgress from 'cli-progress';
import { seriesIds } from './analysis.js';
import { backwardGoalLines } from './backward-tables.js';
import { backwardTableText, probeTableText } from './backward-text.js';
import { PAGE_DIR, runBrowserPart } from './browser.js';
import { latencyChart } from './charts.js';
import type { ChildMessage, ChildRequest } from './child.js';
import { decodeGoalLines } from './decode-tables.js';
import { decodeTableText } from './decode-text.js';
import {
  type CliOptions,
  defaultPasses,
  probeSubjects,
  probeWorkload,
  program,
  resolveRun,
  selectEntries,
} from './options.js';
import { stalePageWarning } from './page-freshness.js';
import { mergeSpreads, passRatioSpread } from './pass-spread.js';
import { checkAppendFile, outputPlan } from './paths.js';
import { type BenchResults, fastestOfPasses, serializeResults } from './results.js';
import {
  ALL_SUBJECTS,
  BROWSER_SUBJECTS,
  NODE_BACKENDS,
  NODE_GQA_PEERS,
  NODE_PEERS,
  NODE_STATELESS,
  type SubjectEntry,
} from './subjects.js';
import { latencyTable, ratioTableText, rooflineTableText, spreadTableText } from './table.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The workspace's packages (this file runs from apps/bench/dist), whose builds the bench page bundles. */
const WORKSPACE_PACKAGES = path.join(here, '..', '..', '..', 'packages');

/** How long a child may live before it is killed: its budgets plus slack for startup and one slow run. */
function childDeadlineMs(series: Workload[][], run: RunOptions): number {
  const headline = series.some((s) => HEADLINE_SERIES_IDS.includes(s[0]?.series));
  return (
    (series.length - (headline ? 1 : 0)) * run.seriesBudgetMs +
    (headline ? run.headlineBudgetMs : 0) +
    3 * run.maxRunMs +
    60000
  );
}

/** A subject's child process: its own RSS, its own runtime state; stderr kept for the error message. */
function forkChild(execArgv: string[] = []) {
  const env = { ...process.env };
  const swiftshader = '/usr/lib/chromium/vk_swiftshader_icd.json';
  // Dawn needs a Vulkan driver; without a GPU the SwiftShader one that Debian's chromium ships
  if (env.VK_ICD_FILENAMES === undefined && existsSync(swiftshader)) {
    env.VK_ICD_FILENAMES = swiftshader;
    // chromium's directory also holds a libvulkan.so.1 for machines without the libvulkan1 package
    env.LD_LIBRARY_PATH = [env.LD_LIBRARY_PATH, '/usr/lib/chromium'].filter(Boolean).join(':');
  }
  return fork(path.join(here, 'child.js'), [], {
    env,
    execArgv,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    serialization: 'advanced',
  });
}

/**
 * How long one probe child may take: one forward + backward at N = 16384 on the slowest backend
 * with slack (cpu's float64 backward took 250 s there on a loaded 2-core machine).
 */
const PROBE_DEADLINE_MS = 900_000;

/** The backward's RSS probe for one subject, in a fresh process (with a GC before the baseline). */
function runProbeChild(entry: SubjectEntry, workload: Workload, seed: number): Promise<RssProbeResult> {
  const child = forkChild(['--expose-gc']);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000);
  });
  const request: ChildRequest = {
    type: 'probe',
    subject: entry.id,
    workload,
    seed,
    cores: os.availableParallelism(),
  };
  const failed = (reason: string): RssProbeResult => ({
    subject: entry.id,
    workload,
    status: 'error',
    reason,
    scoreBufferBytes: 4 * workload.n * workload.n,
    inputBytes: 0,
  });
  return new Promise((resolve) => {
    let settled = false;
    const finish = (result: RssProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(failed(`killed after ${PROBE_DEADLINE_MS / 1000} s`));
    }, PROBE_DEADLINE_MS);
    child.on('message', (raw) => {
      const message = raw as ChildMessage;
      if (message.type === 'probe') finish(message.result);
      else if (message.type === 'fatal') finish(failed(message.message));
    });
    child.on('exit', (code, signal) => {
      const tail = stderr.trim().split('\n').slice(-2).join(' | ');
      finish(failed(`process exited (${signal ?? code})${tail ? `: ${tail}` : ''}`));
    });
    child.send(request);
  });
}

function runChild(
  entry: SubjectEntry,
  series: Workload[][],
  run: RunOptions,
  onRow: (subject: string, workload: string) => void,
): Promise<SubjectReport> {
  const child = forkChild();
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
      else if (message.type === 'fatal') finish(failed(message.message));
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
    rssProbe: now.rssProbe ?? earlier.rssProbe,
    subjects: [...earlier.subjects.filter((s) => !ids.has(s.id)), ...now.subjects],
    ratioSpread: mergeSpreads(earlier, now),
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
  if (
    options.mode !== undefined &&
    !['prefill', 'decode', 'both', 'backward', 'decode-cache', 'gpu'].includes(options.mode)
  )
    cmd.error(`--mode must be prefill, decode, both, backward, decode-cache or gpu, got "${options.mode}"`);
  if (options.mode === 'gpu') {
    // its own plan, process and file (gpu-check.ts): the subject grid and the peers do not apply
    const { runGpuMode } = await import('./gpu-mode.js');
    return runGpuMode(options);
  }
  if (options.rssProbe !== undefined && options.mode !== 'backward' && options.mode !== 'prefill')
    cmd.error(
      `--rss-probe measures one forward (--mode prefill) or forward + backward (--mode backward), got --mode ${options.mode ?? 'prefill and decode (the default)'}`,
    );
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
        out: outputPlan({ ...options, mode: options.mode }),
        appendFile: options.append === undefined ? undefined : checkAppendFile(options.append),
      };
    } catch (error) {
      return cmd.error(error instanceof Error ? error.message : String(error));
    }
  })();
  const { grid, run, probe } = resolveRun(options);
  const series = expandGrid(grid);
  const nodeEntries = selectEntries(
    [...NODE_BACKENDS, ...NODE_STATELESS, ...NODE_PEERS, ...NODE_GQA_PEERS],
    options,
  );
  const browserEntries = options.browser ? selectEntries(BROWSER_SUBJECTS, options) : [];
  const probeEntries = probe === null ? [] : probeSubjects(nodeEntries);
  const cells = series.flat().length;
  const startedAt = new Date().toISOString();
  const machine = nodeMachineInfo();
  console.log(
    `attnkit bench${options.quick ? ' --quick' : ''}: ${nodeEntries.length + browserEntries.length} subjects x ${cells} workloads on ${machine.cpu} (${machine.cores} cores), Node ${machine.node}`,
  );
  if (browserEntries.length > 0) {
    const stale = stalePageWarning(path.join(PAGE_DIR, 'index.html'), WORKSPACE_PACKAGES);
    if (stale !== null) console.error(`warning: ${stale}`);
  }
  // measured first, while no subject process competes for the cores
  const ceilings = measureCeilings();
  console.log(
    `ceilings: wasm SIMD128 ${ceilings.simdGflops.toFixed(1)} GFLOP/s (1 thread), plain JS multiply-add ${ceilings.jsGflops?.toFixed(2)} GFLOP/s (1 thread), memory copy ${ceilings.copyGBps.toFixed(1)} GB/s`,
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
  const passes = defaultPasses(options);
  if (passes > 1)
    console.log(
      `${passes} passes, the subject order reversed every other pass: each row keeps its fastest pass`,
    );
  bar.start(passes * cells * (nodeEntries.length + browserEntries.length) + probeEntries.length, 0, {
    subject: '',
    workload: '',
  });
  const reportsByPass: SubjectReport[][] = [];
  let done = 0;
  let browserInfo: { userAgent: string | null; adapter: string | null } = { userAgent: null, adapter: null };
  for (let pass = 0; pass < passes; pass++) {
    // every other pass in reverse order: a load change during the run then favours no subject
    const inOrder = <T>(list: readonly T[]): T[] => (pass % 2 === 1 ? [...list].reverse() : [...list]);
    const reports: SubjectReport[] = [];
    for (const entry of inOrder(nodeEntries)) {
      const base = done;
      bar.update(base, { subject: entry.id, workload: 'starting' });
      const report = await runChild(entry, series, run, (subject, workload) =>
        bar.increment(1, { subject, workload }),
      );
      reports.push(report);
      done = base + cells;
      bar.update(done, {
        subject: entry.id,
        workload: report.status === 'ok' ? 'done' : `unavailable: ${report.reason}`,
      });
      if (!process.stdout.isTTY) {
        const ok = report.rows.filter((r) => r.status === 'ok').length;
        console.log(
          `${passes > 1 ? `pass ${pass + 1}: ` : ''}${entry.id}: ${report.status === 'ok' ? `${ok}/${cells} timed` : `unavailable: ${report.reason}`}`,
        );
      }
    }
    if (browserEntries.length > 0) {
      const ordered = inOrder(browserEntries);
      const browser = await runBrowserPart(
        ordered,
        series,
        run,
        (subject, workload) => bar.increment(1, { subject, workload }),
        ordered.length * childDeadlineMs(series, run),
      );
      reports.push(...browser.reports);
      done += cells * ordered.length;
      browserInfo = { userAgent: browser.userAgent, adapter: browser.adapter };
    }
    // the first pass's order is the report's
    const order = [...nodeEntries, ...browserEntries].map((e) => e.id);
    reports.sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
    reportsByPass.push(reports);
  }
  const subjects = fastestOfPasses(reportsByPass);
  let rssProbe: RssProbeResult[] | undefined;
  if (probe !== null) {
    rssProbe = [];
    const workload = probeWorkload(probe, options.mode === 'prefill' ? 'prefill' : 'backward');
    for (const entry of probeEntries) {
      bar.increment(0, { subject: entry.id, workload: `RSS probe N = ${probe}` });
      rssProbe.push(await runProbeChild(entry, workload, run.seed));
      bar.increment(1, { subject: entry.id, workload: `RSS probe N = ${probe}` });
    }
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
    ...(passes > 1 && { passes }),
    ...(rssProbe && { rssProbe }),
  };
  if (passes > 1) results.ratioSpread = passRatioSpread(results, reportsByPass);
  if (appendFile !== undefined)
    results = merge(JSON.parse(readFileSync(appendFile, 'utf8')) as BenchResults, results);
  for (const s of results.subjects)
    if (s.status !== 'ok') console.log(`unavailable: ${s.id}: ${s.reason ?? 'unknown reason'}`);
  const ids = seriesIds(results);
  const shown =
    [HEADLINE_SERIES, BACKWARD_HEADLINE_SERIES, DECODE_CACHE_HEADLINE_SERIES].find((id) =>
      ids.includes(id),
    ) ?? ids[0];
  if (shown !== undefined) {
    // every series the grid ran, the headline first (`--heads h1,h8` prints both); the decode-cache
    // series have their own per-step table below
    const tabled = [shown, ...ids.filter((id) => id !== shown && decodeTableText(results, id) === '')];
    for (const id of tabled) {
      console.log(latencyTable(results, id));
      console.log(ratioTableText(results, id));
      const spread = spreadTableText(results, id);
      if (spread !== null) console.log(spread);
    }
    const backward = backwardTableText(results, shown);
    if (backward !== '') console.log(backward);
    // every decode-cache series: the per-step table is the mode's result (p10/p90 and vs stateless)
    for (const id of ids) {
      const decode = decodeTableText(results, id);
      if (decode !== '') console.log(decode);
    }
    const roofline = rooflineTableText(results, shown);
    if (roofline !== '') console.log(roofline);
    const stops = results.subjects.filter((s) => s.stopped[shown] !== undefined);
    if (stops.length > 0) console.log(`Where the budget stopped each subject in ${shown}:`);
    for (const s of stops) console.log(`  ${s.id}: N = ${s.stopped[shown].n}: ${s.stopped[shown].reason}`);
  }
  if (results.rssProbe !== undefined) console.log(probeTableText(results.rssProbe));
  const goals = backwardGoalLines(results);
  if (goals.length > 0) console.log(`Issue 13's bars, this run:\n${goals.map((g) => `  ${g}`).join('\n')}`);
  const decodeGoals = decodeGoalLines(results);
  if (decodeGoals.length > 0)
    console.log(`Issue 12's bars, this run:\n${decodeGoals.map((g) => `  ${g}`).join('\n')}`);
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
