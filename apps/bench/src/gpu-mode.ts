/** `attnkit-bench --mode gpu`: where its JSON goes, then {@link runGpuCheck}; exits 2 without an adapter. */
import path from 'node:path';
import { gpuCheckText, HARDWARE_PLAN, runGpuCheck } from './gpu-check.js';
import type { CliOptions } from './options.js';
import { DEFAULT_OUTPUT, resolveUserPath } from './paths.js';

export async function runGpuMode(options: CliOptions): Promise<void> {
  const dir = options.output === undefined ? DEFAULT_OUTPUT : resolveUserPath(options.output);
  const file = path.join(dir, `${options.name ?? 'gpu-check'}.json`);
  const plan =
    options.sizes === undefined ? HARDWARE_PLAN : { ...HARDWARE_PLAN, prefillSizes: options.sizes };
  const result = await runGpuCheck(file, plan);
  console.log(gpuCheckText(result));
  console.log(`JSON: ${file}`);
  if (result.adapter === null) process.exitCode = 2;
}
