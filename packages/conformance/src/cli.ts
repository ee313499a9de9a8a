#!/usr/bin/env node
import { existsSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BackendFactory } from '@attnkit/spec';
import Table from 'cli-table3';
import { Command, InvalidArgumentError } from 'commander';
import { caseRow, formatReport } from './format.js';
import { runConformance } from './runner.js';
import type { ConformanceOptions } from './types.js';

/** A module given as a path (relative to cwd) or a package name (resolved from cwd). */
export function resolveModule(specifier: string, cwd: string = process.cwd()): string {
  const looksLikePath = specifier.startsWith('.') || isAbsolute(specifier) || /\.[cm]?[jt]s$/.test(specifier);
  if (looksLikePath || existsSync(resolve(cwd, specifier))) {
    const path = resolve(cwd, specifier);
    if (!existsSync(path)) throw new Error(`no such file: ${path}`);
    return pathToFileURL(path).href;
  }
  const require = createRequire(join(cwd, 'noop.js'));
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
}

async function main(argv: string[]): Promise<number> {
  const program = new Command()
    .name('attnkit-conformance')
    .description('Runs the attnkit conformance suite on the backend factory a module exports.')
    .argument('<module>', 'package name (resolved from the current directory) or path to a module')
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
    .showHelpAfterError();
  program.parse(argv);
  const [specifier] = program.args;
  const cli = program.opts<CliOptions>();

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
  const report = await runConformance(factory, options);
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
