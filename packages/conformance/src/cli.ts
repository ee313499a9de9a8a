#!/usr/bin/env node
import { fork } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Table from 'cli-table3';
import { Command, InvalidArgumentError } from 'commander';
import type { ChildMessage, RunRequest } from './cli-child.js';
import { caseRow, columnWidthsFor, formatReport, summaryLine } from './format.js';
import { listCases, resolveConformanceOptions } from './runner.js';
import type {
  CaseResult,
  ConformanceCase,
  ConformanceOptions,
  ConformanceReport,
  ResolvedConformanceOptions,
} from './types.js';

/** Exit codes (documented in the README). Never 0 without the closing `N passed, 0 failed` line. */
export const EXIT = {
  passed: 0,
  /** a case failed, or a replacement backend could not be made */
  failed: 1,
  /** a usage error, or a module that cannot be found, imported, or has no such factory export */
  usage: 2,
  /** the backend could not be created or initialised at all: no case ran */
  unavailable: 3,
  /** the CLI itself ended without a verdict (a bug): never mistaken for a pass */
  internal: 70,
} as const;

/** How long past `--timeout` the watchdog waits for a backend process that did not answer. */
const WATCHDOG_GRACE_MS = 1000;
/** Node itself starting the backend process: not the backend's time, and slow on a loaded machine. */
const SPAWN_MS = 30_000;
/** The least time an import gets: a short `--timeout` is meant for cases, not for loading a module. */
const IMPORT_MIN_MS = 10_000;

/**
 * A module given as a file path, a package directory (its package.json `main`), or a package name
 * resolved from `cwd` the way Node would (exports' `default` condition).
 */
export function resolveModule(specifier: string, cwd: string = process.cwd()): string {
  const require = createRequire(join(cwd, 'noop.js'));
  const path = resolve(cwd, specifier);
  const looksLikePath = specifier.startsWith('.') || isAbsolute(specifier) || /\.[cm]?[jt]s$/.test(specifier);
  try {
    if (existsSync(path)) {
      return pathToFileURL(statSync(path).isDirectory() ? require.resolve(path) : path).href;
    }
    if (looksLikePath) throw new Error(`no such file: ${path}`);
    return pathToFileURL(require.resolve(specifier)).href;
  } catch (error) {
    // Node's message names this CLI's own file in a "Require stack", which helps nobody.
    const code = (error as { code?: unknown }).code;
    if (code === 'MODULE_NOT_FOUND') {
      throw new Error(
        existsSync(path)
          ? `${path} has no entry point (package.json "main" or "exports", or an index.js)`
          : `cannot find package "${specifier}" from ${cwd} (install it, or give a file path)`,
      );
    }
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(message.split('\n')[0]);
  }
}

function integer(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isSafeInteger(parsed))
      throw new InvalidArgumentError(`${name} must be an integer, got ${value}`);
    return parsed;
  };
}

function positive(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!(parsed > 0)) throw new InvalidArgumentError(`${name} must be a number > 0, got ${value}`);
    return parsed;
  };
}

interface CliOptions {
  export: string;
  json?: string;
  filter?: string;
  seed?: number;
  maxWork?: number;
  timeout?: number;
  runs?: number;
  repeat?: number;
  list?: boolean;
  quiet?: boolean;
}

async function main(argv: string[]): Promise<number> {
  const program = new Command()
    .name('attnkit-conformance')
    .description('Runs the attnkit conformance suite on the backend factory a module exports.')
    .argument(
      '[module]',
      'package name (resolved from the current directory), package directory or module path',
    )
    .option('--export <name>', 'export to use as the zero-argument BackendFactory', 'default')
    .option('--json <file>', 'also write the JSON report to this file')
    .option('--filter <pattern>', 'only cases whose id contains this text')
    .option(
      '--seed <n>',
      'seed of the property-based cases (default: ATTNKIT_CONFORMANCE_SEED or random)',
      integer('--seed'),
    )
    .option(
      '--max-work <n>',
      'largest multiply-adds per case; bigger cases are reduced or omitted',
      positive('--max-work'),
    )
    .option('--timeout <ms>', 'per-case timeout in milliseconds', positive('--timeout'))
    .option('--runs <n>', 'runs per property-based case', integer('--runs'))
    .option('--repeat <n>', 'calls of the repeated-call memory cases', integer('--repeat'))
    .option('--list', 'list the case ids (after --filter) and exit')
    .option('--quiet', 'no progress lines on stderr')
    .showHelpAfterError()
    // Usage errors exit 2, so exit 1 always means "a case failed".
    .exitOverride((error) => {
      settled = true;
      process.exit(error.exitCode === 0 ? EXIT.passed : EXIT.usage);
    });
  program.parse(argv);
  const [specifier] = program.args;
  const cli = program.opts<CliOptions>();

  if (cli.list) {
    for (const testCase of listCases(cli.filter === undefined ? {} : { filter: cli.filter })) {
      process.stdout.write(`${testCase.id}\t${testCase.title}\n`);
    }
    return EXIT.passed;
  }

  if (specifier === undefined) program.error("error: missing required argument 'module'");

  let url: string;
  try {
    url = resolveModule(specifier);
  } catch (error) {
    process.stderr.write(
      `attnkit-conformance: cannot load ${specifier}: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    return EXIT.usage;
  }

  // Resolved here, so that every backend process draws the same random cases.
  let resolved: ResolvedConformanceOptions;
  try {
    resolved = resolveConformanceOptions({
      ...(cli.seed !== undefined && { seed: cli.seed }),
      ...(cli.maxWork !== undefined && { maxWork: cli.maxWork }),
      ...(cli.timeout !== undefined && { timeoutMs: cli.timeout }),
      ...(cli.runs !== undefined && { numRuns: cli.runs }),
      ...(cli.repeat !== undefined && { repeatCalls: cli.repeat }),
      ...(cli.filter !== undefined && { filter: cli.filter }),
    });
  } catch (error) {
    process.stderr.write(`attnkit-conformance: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT.usage;
  }
  const options: ConformanceOptions = {
    seed: resolved.seed,
    numRuns: resolved.numRuns,
    timeoutMs: resolved.timeoutMs,
    repeatCalls: resolved.repeatCalls,
    ...(Number.isFinite(resolved.maxWork) && { maxWork: resolved.maxWork }),
    ...(cli.filter !== undefined && { filter: cli.filter }),
  };
  // Progress for people watching a slow backend; the report itself goes to stdout.
  const progress = !cli.quiet && process.stderr.isTTY === true;
  const cases = listCases(options);
  let done = 0;
  const outcome = await supervise({
    url,
    specifier,
    exportName: cli.export,
    options,
    resolved,
    cases,
    onCaseDone: (result) => {
      if (!progress) return;
      done++;
      process.stderr.write(`\r\x1b[K[${done}/${cases.length}] ${result.status.padEnd(7)} ${result.id}`);
      if (done === cases.length) process.stderr.write('\r\x1b[K');
    },
  });
  if (outcome.kind === 'load-error') {
    process.stderr.write(`attnkit-conformance: cannot load ${specifier}: ${outcome.message}\n`);
    return EXIT.usage;
  }
  const { report, unavailable } = outcome;
  const { header, footer } = formatReport(report);
  if (unavailable) {
    // One statement of why, not the same (often multi-line) init error in every row of the table.
    const lines = [
      ...header,
      `backend unavailable: none of the ${report.totals.cases} cases could run; fix the error above or run it where the backend can start`,
      ...report.notes.map((note) => `note: ${note}`),
      summaryLine(report),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } else {
    const table = new Table({
      head: ['case', 'result', 'worst abs', 'worst rel', 'ms', 'note'],
      style: { head: [], border: [], compact: true },
      // Fit an interactive terminal; a log or pipe (no columns) gets the full widths.
      colWidths: columnWidthsFor(process.stdout.isTTY ? process.stdout.columns : undefined),
      wordWrap: true,
    });
    for (const result of report.cases) table.push(caseRow(result));
    process.stdout.write(`${header.join('\n')}\n${table.toString()}\n${footer.join('\n')}\n`);
  }
  if (cli.json) writeFileSync(cli.json, `${JSON.stringify(report, null, 2)}\n`);
  if (unavailable) return EXIT.unavailable;
  return report.totals.failed > 0 || report.backend.error !== null ? EXIT.failed : EXIT.passed;
}

interface SuperviseInput {
  url: string;
  specifier: string;
  exportName: string;
  options: ConformanceOptions;
  resolved: ResolvedConformanceOptions;
  cases: ConformanceCase[];
  onCaseDone: (result: CaseResult) => void;
}

type Outcome =
  | { kind: 'load-error'; message: string }
  | { kind: 'report'; report: ConformanceReport; unavailable: boolean };

/** What a backend process was doing; each phase has its own watchdog deadline. */
type Phase = 'spawn' | 'load' | 'start' | 'prepare' | 'case' | 'finish';

type ChildEnd =
  | { kind: 'finished' }
  | { kind: 'load-error'; message: string }
  /** Killed by the watchdog, or exited on its own, before it answered. */
  | { kind: 'lost'; phase: Phase; id: string | null; detail: string; hung: boolean; ms: number };

/**
 * Runs the cases in a backend process (one per run; a new one after a hang) and assembles the
 * report. The parent only waits, so its timers fire whatever the backend does to its own thread.
 */
async function supervise(input: SuperviseInput): Promise<Outcome> {
  const { resolved, cases } = input;
  const timeoutMs = resolved.timeoutMs;
  // A case the child's runner times out itself still needs a moment to report; the watchdog only
  // steps in when the child cannot answer at all.
  const grace = Math.max(WATCHDOG_GRACE_MS, timeoutMs / 10);
  const deadline: Record<Phase, number> = {
    spawn: SPAWN_MS,
    load: Math.max(timeoutMs, IMPORT_MIN_MS) + grace,
    start: 2 * timeoutMs + grace, // the factory and init() are each bounded by timeoutMs in the child
    prepare: 2 * timeoutMs + grace, // a replacement backend: factory and init() again
    case: timeoutMs + grace,
    finish: timeoutMs + grace, // disposals run in parallel, each bounded by timeoutMs
  };
  const startedAt = new Date();
  const startTime = performance.now();
  const results: CaseResult[] = [];
  const notes: string[] = [];
  let first: ConformanceReport | null = null;
  let backendError: string | null = null;
  let unavailable = false;
  const caseById = new Map(cases.map((testCase) => [testCase.id, testCase]));

  const failRemaining = (why: string): void => {
    const reported = new Set(results.map((result) => result.id));
    for (const testCase of cases) {
      if (reported.has(testCase.id)) continue;
      const result = failedResult(testCase, `backend could not be created or initialised: ${why}`);
      results.push(result);
      input.onCaseDone(result);
    }
  };

  const runChild = (ids: string[], isFirst: boolean): Promise<ChildEnd> =>
    new Promise((resolveEnd) => {
      const child = fork(fileURLToPath(new URL('./cli-child.js', import.meta.url)), [], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      let phase: Phase = 'load';
      let current: string | null = null;
      let phaseStarted = performance.now();
      const elapsed = (): number => Math.round(performance.now() - phaseStarted);
      let childNotes: string[] = [];
      let timer: ReturnType<typeof setTimeout> | undefined;
      let ended = false;
      const end = (value: ChildEnd): void => {
        if (ended) return;
        ended = true;
        clearTimeout(timer);
        notes.push(...childNotes);
        child.removeAllListeners();
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        resolveEnd(value);
      };
      const arm = (next: Phase): void => {
        phase = next;
        phaseStarted = performance.now();
        clearTimeout(timer);
        if (!Number.isFinite(deadline[next])) return;
        timer = setTimeout(() => {
          end({
            kind: 'lost',
            hung: true,
            ms: elapsed(),
            phase,
            id: current,
            detail: watchdogDetail(phase, timeoutMs, deadline[phase]),
          });
        }, deadline[next]);
      };
      child.on('message', (message: ChildMessage) => {
        switch (message.type) {
          case 'load-error':
            end({ kind: 'load-error', message: message.message });
            return;
          case 'ready':
            arm('load');
            return;
          case 'loaded':
            arm('start');
            return;
          case 'started':
            if (isFirst) {
              first = message.report;
              if (message.report.backend.error !== null) unavailable = true;
            }
            if (message.report.backend.error !== null) backendError ??= message.report.backend.error;
            arm('prepare');
            return;
          case 'begin':
            current = message.id;
            arm('case');
            return;
          case 'case':
            current = null;
            childNotes = message.notes;
            results.push(message.result);
            input.onCaseDone(message.result);
            arm(results.length === cases.length ? 'finish' : 'prepare');
            return;
          case 'finished':
            childNotes = message.report.notes;
            if (message.report.backend.error !== null) backendError ??= message.report.backend.error;
            end({ kind: 'finished' });
            return;
        }
      });
      child.on('error', (error) => {
        end({
          kind: 'lost',
          hung: false,
          ms: elapsed(),
          phase,
          id: current,
          detail: `the backend process failed: ${error.message}`,
        });
      });
      child.on('exit', (code, signal) => {
        const how = signal === null ? `exited with code ${code}` : `was killed by ${signal}`;
        // exit 0 (or 13, Node's code for a pending top-level await) mid-import: nothing was left to run
        const drained = signal === null && (code === 0 || code === 13);
        const detail =
          phase === 'load' && drained
            ? `its import never settled: the backend process ${how} with the import still pending and nothing left to run (a top-level await that never settles?)`
            : `the backend process ${how} during ${PHASE_TEXT[phase]}`;
        end({ kind: 'lost', hung: false, ms: elapsed(), phase, id: current, detail });
      });
      const request: RunRequest = {
        type: 'run',
        url: input.url,
        exportName: input.exportName,
        specifier: input.specifier,
        options: input.options,
        ids,
      };
      arm('spawn');
      child.send(request);
    });

  let isFirst = true;
  for (;;) {
    const reported = new Set(results.map((result) => result.id));
    const ids = cases.map((testCase) => testCase.id).filter((id) => !reported.has(id));
    if (ids.length === 0 && !isFirst) break;
    const end = await runChild(ids, isFirst);
    if (end.kind === 'finished') break;
    if (
      end.kind === 'load-error' ||
      (end.kind === 'lost' && (end.phase === 'spawn' || end.phase === 'load'))
    ) {
      const message = end.kind === 'load-error' ? end.message : end.detail;
      if (isFirst) return { kind: 'load-error', message };
      backendError ??= `the module failed to load in a new backend process: ${message}`;
      failRemaining(backendError);
      break;
    }
    if (end.phase === 'case' && end.id !== null) {
      const testCase = caseById.get(end.id);
      if (testCase !== undefined) {
        const result = failedResult(testCase, `${end.hung ? 'hung' : 'crashed'}: ${end.detail}`);
        result.timeMs = end.ms;
        results.push(result);
        input.onCaseDone(result);
      }
      const left = cases.length - results.length;
      notes.push(
        `case ${end.id} ${end.hung ? 'hung' : 'crashed'}; ${left > 0 ? `the backend process was restarted for the remaining ${left} cases` : 'no cases were left to run'}`,
      );
      isFirst = false;
      if (left === 0) break;
      continue;
    }
    if (end.phase === 'finish') {
      notes.push(`after the last case: ${end.detail}`);
      break;
    }
    // start or prepare: the backend cannot be made (again); every case left fails with the reason
    if (isFirst && end.phase === 'start') unavailable = true;
    backendError ??= end.detail;
    failRemaining(end.detail);
    break;
  }

  // assigned in the message handler, which the compiler's flow analysis does not follow
  const base = first as ConformanceReport | null;
  const order = new Map(cases.map((testCase, i) => [testCase.id, i]));
  results.sort((a, b) => (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0));
  const count = (status: CaseResult['status']) => results.filter((result) => result.status === status).length;
  const report: ConformanceReport = {
    backend: {
      name: base?.backend.name ?? 'unknown',
      engine: base?.backend.engine ?? 'unknown',
      capabilities: base?.backend.capabilities ?? null,
      error: backendError,
    },
    tolerance: base?.tolerance ?? null,
    seed: resolved.seed,
    options: {
      numRuns: resolved.numRuns,
      maxWork: Number.isFinite(resolved.maxWork) ? resolved.maxWork : null,
      timeoutMs: resolved.timeoutMs,
      repeatCalls: resolved.repeatCalls,
      filter: resolved.filter === null ? null : String(resolved.filter),
    },
    startedAt: startedAt.toISOString(),
    durationMs: Math.round(performance.now() - startTime),
    cases: results,
    totals: {
      cases: results.length,
      passed: count('passed'),
      failed: count('failed'),
      omitted: count('omitted'),
      reduced: results.filter((result) => result.reduced && result.status !== 'omitted').length,
    },
    notes,
  };
  return { kind: 'report', report, unavailable };
}

function watchdogDetail(phase: Phase, timeoutMs: number, deadlineMs: number): string {
  const killed = `the backend process did not answer within ${Math.round(deadlineMs)} ms (it blocks its thread or waits forever), so it was killed`;
  // spawn and load are not bounded by --timeout inside the child, the others are
  if (phase === 'spawn' || phase === 'load') return `${PHASE_TEXT[phase]} did not finish: ${killed}`;
  return `${PHASE_TEXT[phase]} did not finish within ${timeoutMs} ms and ${killed}`;
}

const PHASE_TEXT: Record<Phase, string> = {
  spawn: 'starting the backend process',
  load: 'importing the module',
  start: 'creating and initialising the backend',
  prepare: 'creating a replacement backend',
  case: 'the case',
  finish: 'disposing the backends',
};

function failedResult(testCase: ConformanceCase, message: string): CaseResult {
  return {
    id: testCase.id,
    group: testCase.group,
    title: testCase.title,
    status: 'failed',
    expectation: 'match-reference',
    note: null,
    reduced: false,
    worstAbsError: null,
    worstRelError: null,
    errorRatio: null,
    timeMs: 0,
    message,
  };
}

let settled = false;
// The last line of defence for the complaint that started this: a run that ends because nothing is
// left to wait for must not look like a pass.
process.on('exit', () => {
  if (settled) return;
  process.stderr.write('attnkit-conformance: internal error: the run ended before it reached a verdict\n');
  process.exitCode = EXIT.internal;
});
main(process.argv).then(
  (code) => {
    settled = true;
    process.exitCode = code;
  },
  (error: unknown) => {
    settled = true;
    process.stderr.write(
      `attnkit-conformance: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = EXIT.internal;
  },
);
