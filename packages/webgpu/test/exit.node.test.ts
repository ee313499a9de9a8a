import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// A crash at process exit cannot be seen from inside the process that crashes (vitest only reports
// "Worker exited unexpectedly", at random): these tests run the backend in a child Node process and
// check how it ends. The child runs the current src/ (transpiled here), never a stale dist/.

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');
let workDir = '';

// The common "is WebGPU available?" pattern, then real work so each backend creates buffers; gc()
// between backends is what made Dawn collect a disposed backend's instance and crash.
const childScript = `
import { referenceAttention64 } from '@attnkit/spec';
import { createWebGpuBackend } from './index.js';
const pause = () => new Promise((resolve) => setTimeout(resolve, 20));
const shape = { batch: 1, queryHeads: 2, queryLength: 5, headDim: 4 };
const q = Float32Array.from({ length: 40 }, (_, n) => Math.sin(n));
const inputs = { q, k: q.map((x) => x / 2), v: q.map((x) => x * 3), shape };
const expected = referenceAttention64(inputs).output;
for (let n = 0; n < 3; n++) {
  const probe = createWebGpuBackend();
  await probe.init();
  await probe.dispose();
  globalThis.gc();
  await pause();
}
for (let n = 0; n < 3; n++) {
  const backend = createWebGpuBackend();
  await backend.init();
  const { output } = await backend.attention(inputs);
  for (let i = 0; i < expected.length; i++)
    if (!(Math.abs(output[i] - expected[i]) <= 1e-4)) throw new Error('wrong output at ' + i);
  await backend.dispose();
  globalThis.gc();
  await pause();
}
process.stdout.write('ok\\n');
`;

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

function runChild(script: string, timeoutMs: number): Promise<Ended> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', script], {
      cwd: workDir,
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  // Under the package's node_modules so that the child resolves '@attnkit/spec' and 'webgpu'.
  const cache = join(packageDir, 'node_modules', '.cache');
  await mkdir(cache, { recursive: true });
  workDir = await mkdtemp(join(cache, 'exit-test-'));
  const srcDir = join(packageDir, 'src');
  // Recursive: the kernels live in src/kernels/.
  for (const file of await readdir(srcDir, { recursive: true })) {
    if (!file.endsWith('.ts')) continue;
    const source = await readFile(join(srcDir, file), 'utf8');
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    });
    const target = join(workDir, file.replace(/\.ts$/, '.js'));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, outputText);
  }
  await writeFile(join(workDir, 'package.json'), '{ "type": "module" }\n');
  await writeFile(join(workDir, 'child.mjs'), childScript);
});

afterAll(async () => {
  if (workDir !== '') await rm(workDir, { recursive: true, force: true });
});

describe('Node: the process exits cleanly', () => {
  it('after several backends were created, initialised, used and disposed (5 runs)', async () => {
    for (let run = 0; run < 5; run++) {
      const ended = await runChild(join(workDir, 'child.mjs'), 30_000);
      const what = `run ${run}: code ${ended.code}, signal ${ended.signal}, timed out ${ended.timedOut}\n${ended.stderr}`;
      expect(ended.timedOut, what).toBe(false);
      expect(ended.signal, what).toBeNull();
      expect(ended.code, what).toBe(0);
      expect(ended.stdout, what).toContain('ok');
    }
  });
});
