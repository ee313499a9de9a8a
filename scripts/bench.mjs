#!/usr/bin/env node
// `pnpm bench [options]`: builds the workspace, then runs the bench CLI. `--help`, `-h` and `--list`
// only print, so they skip the build (a cached turbo build still takes seconds) when the CLI is
// already built. The CLI resolves the user's relative paths against INIT_CWD, which pnpm sets to
// the directory the command was typed in and which this process passes on unchanged.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'apps', 'bench', 'dist', 'cli.js');
const args = process.argv.slice(2);
// `pnpm bench -- --quick` passes the separator through
if (args[0] === '--') args.shift();

const printOnly = args.some((a) => a === '--help' || a === '-h' || a === '--list');
const turbo = path.join(root, 'node_modules', '.bin', 'turbo');

// run directly (`node scripts/bench.mjs`) there is no INIT_CWD: this process's cwd is the user's
// biome-ignore lint/suspicious/noUndeclaredEnvVars: read by the bench CLI, not by a turbo task
const env = { ...process.env, INIT_CWD: process.env.INIT_CWD || process.cwd() };

function run(command, commandArgs) {
  const result = spawnSync(command, commandArgs, { cwd: root, stdio: 'inherit', env });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

if (!printOnly || !existsSync(cli)) {
  console.error('attnkit bench: building the workspace (turbo; cached packages are not rebuilt)...');
  // --continue: a backend that fails to build is reported "unavailable" by the bench, not fatal
  const status = run(turbo, ['run', 'build', '--output-logs=errors-only', '--continue']);
  if (status !== 0)
    console.error(`attnkit bench: some packages did not build (exit ${status}); running anyway`);
  if (!existsSync(cli)) {
    console.error(`attnkit bench: ${path.relative(root, cli)} was not built; see the build errors above`);
    process.exit(1);
  }
}
process.exit(run(process.execPath, [cli, ...args]));
