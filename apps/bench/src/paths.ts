/**
 * Where the bench reads and writes. Kept apart from the CLI so the rules can be tested without a run.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository root (apps/bench/dist -> ../../..). */
export const REPO_ROOT = path.resolve(here, '../../..');
/** Where a user's run writes by default: ignored by git, so a run never dirties the committed results. */
export const DEFAULT_OUTPUT = path.join(REPO_ROOT, 'bench-results');
/** The committed results; only `--update-committed` writes here. */
export const COMMITTED_OUTPUT = path.join(REPO_ROOT, 'benchmarks', 'results');

/**
 * The directory the user typed the command in. pnpm runs a package script in the package's own
 * directory and passes the caller's directory as `INIT_CWD`; without it (plain `node dist/cli.js`)
 * the process's cwd is the caller's.
 */
export function userCwd(env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): string {
  const init = env.INIT_CWD;
  return init !== undefined && init.length > 0 ? init : cwd;
}

/** A path as the user meant it: relative paths are relative to where they typed the command. */
export function resolveUserPath(file: string, base: string = userCwd()): string {
  return path.resolve(base, file);
}

/** The options that decide where results go. */
export interface OutputChoice {
  output?: string;
  name?: string;
  quick?: boolean;
  updateCommitted?: boolean;
  /** `backward` and `decode-cache` runs are named apart, so they never overwrite a forward run's files. */
  mode?: string;
}

/** Output directory and base name of a run; throws a message for the user on a contradiction. */
export function outputPlan(choice: OutputChoice, base: string = userCwd()): { dir: string; name: string } {
  const own = choice.mode === 'backward' || choice.mode === 'decode-cache';
  const stem = own ? `bench-${choice.mode}` : 'bench-full';
  const fallback = own ? `bench-${choice.mode}-quick` : 'bench-quick';
  const name = choice.name ?? (choice.quick ? fallback : stem);
  if (choice.updateCommitted) {
    if (choice.output !== undefined)
      throw new Error('--update-committed writes to benchmarks/results; it cannot be combined with --output');
    // the committed files are the full grids'; a quick or renamed run there would be ignored or misleading
    if (choice.quick || name !== stem)
      throw new Error(
        `--update-committed refreshes benchmarks/results/${stem}.*: use it without --quick or --name`,
      );
    return { dir: COMMITTED_OUTPUT, name };
  }
  return { dir: choice.output === undefined ? DEFAULT_OUTPUT : resolveUserPath(choice.output, base), name };
}

/**
 * Checks an `--append` file before any work starts (a run can take half an hour; failing at the end
 * throws it away). Returns the absolute path.
 */
export function checkAppendFile(file: string, base: string = userCwd()): string {
  const absolute = resolveUserPath(file, base);
  if (!existsSync(absolute))
    throw new Error(`--append: no such file ${absolute} (relative paths are from ${base})`);
  if (!statSync(absolute).isFile()) throw new Error(`--append: ${absolute} is not a file`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(absolute, 'utf8'));
  } catch (error) {
    throw new Error(
      `--append: ${absolute} is not JSON: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  const schema = (parsed as { schema?: unknown } | null)?.schema;
  if (schema !== 'attnkit-bench/1')
    throw new Error(
      `--append: ${absolute} is not a bench result (schema ${JSON.stringify(schema)}, expected "attnkit-bench/1")`,
    );
  return absolute;
}
