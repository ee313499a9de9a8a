#!/usr/bin/env node
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BackendFactory } from '@attnkit/spec';
import Table from 'cli-table3';
import { Command, InvalidArgumentError } from 'commander';
import { caseRow, formatReport } from './format.js';
import { listCases, runConformance } from './runner.js';
import type { ConformanceOptions } from './types.js';

/**
 * A module given as a file path, a package directory (its package.json `main`), or a package name
 * resolved from `cwd` the way Node would (exports' `default` condition).
 */
export function resolveModule(specifier: string, cwd: string = process.cwd()): string {
  const require = createRequire(join(cwd, 'noop.js'));
  const path = resolve(cwd, specifier);
  const looksLikePath = specifier.startsWith('.') || isAbsolute(specifier) || /\.[cm]?[jt]s$/.test(specifier);
  if (existsSync(path)) {
    return pathToFileURL(statSync(path).isDirectory() ? require.resolve(path) : path).href;
  }
  if (looksLikePath) throw new Error(`no such file: ${path}`);
  return pathToFileURL(require.resolve(specifier)).href;
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
      process.exit(error.exitCode === 0 ? 0 : 2);
    });
  program.parse(argv);
  const [specifier] = program.args;
  const cli = program.opts<CliOptions>();

  if (cli.list) {
    for (const testCase of listCases(cli.filter === undefined ? {} : { filter: cli.filter })) {
      process.stdout.write(`${testCase.id}\t${testCase.title}\n`);
    }
    return 0;
  }

  if (specifier === undefined) program.error("error: missing required argument 'module'");

  let factory: BackendFactory;
  try {
    const url = resolveModule(specifier);
    const module = (await import(url)) as Record<string, unknown>;
    const candidate = module[cli.export];
    if (typeof candidate !== 'function') {
      const names = Object.keys(module).join(', ');
      throw new Error(
        `export "${cli.export}" of ${specifier} is ${typeof candidate}, not a BackendFactory (exports: ${names})`,
      );
    }
    factory = candidate as BackendFactory;
  } catch (error) {
    process.stderr.write(
      `attnkit-conformance: cannot load ${specifier}: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    return 2;
  }

  const options: ConformanceOptions = {
    ...(cli.seed !== undefined && { seed: cli.seed }),
    ...(cli.maxWork !== undefined && { maxWork: cli.maxWork }),
    ...(cli.timeout !== undefined && { timeoutMs: cli.timeout }),
    ...(cli.runs !== undefined && { numRuns: cli.runs }),
    ...(cli.repeat !== undefined && { repeatCalls: cli.repeat }),
    ...(cli.filter !== undefined && { filter: cli.filter }),
  };
  // Progress for people watching a slow backend; the report itself goes to stdout.
  const progress = !cli.quiet && process.stderr.isTTY === true;
  let done = 0;
  const total = listCases(options).length;
  const report = await runConformance(factory, {
    ...options,
    ...(progress && {
      onCaseDone: (result) => {
        done++;
        process.stderr.write(`\r\x1b[K[${done}/${total}] ${result.status.padEnd(7)} ${result.id}`);
        if (done === total) process.stderr.write('\r\x1b[K');
      },
    }),
  });
  const table = new Table({
    head: ['case', 'result', 'worst abs', 'worst rel', 'ms', 'note'],
    style: { head: [], border: [], compact: true },
    colWidths: [44, 16, 11, 11, 9, 60],
    wordWrap: true,
  });
  for (const result of report.cases) table.push(caseRow(result));
  const { header, footer } = formatReport(report);
  process.stdout.write(`${header.join('\n')}\n${table.toString()}\n${footer.join('\n')}\n`);
  if (cli.json) writeFileSync(cli.json, `${JSON.stringify(report, null, 2)}\n`);
  return report.totals.failed > 0 || report.backend.error !== null ? 1 : 0;
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(
      `attnkit-conformance: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 2;
  },
);
