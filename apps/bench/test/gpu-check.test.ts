import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { GpuCheckPlan, GpuCheckResult } from '../src/gpu-check.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, '../dist/gpu-check.js');
const swiftshader = '/usr/lib/chromium';

/** Runs an ES module script in a process of its own on SwiftShader (the Vulkan loader reads
 * LD_LIBRARY_PATH only at process start). */
function onSwiftShader(script: string, timeout: number) {
  return spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: {
      ...process.env,
      VK_ICD_FILENAMES: `${swiftshader}/vk_swiftshader_icd.json`,
      LD_LIBRARY_PATH: [process.env.LD_LIBRARY_PATH, swiftshader].filter(Boolean).join(':'),
    },
    encoding: 'utf8',
    timeout,
  });
}

// A tiny plan: every part runs once, nothing is timed for its value (no speed is asserted).
const plan: GpuCheckPlan = {
  prefillSizes: [128],
  prefillHeads: [1],
  decodeLengths: [128],
  ceilingSizes: [64],
  // the conformance CLI is another package's build, which the bench's test task does not wait for;
  // scripts/gpu-check.sh's dry run (README) covers that part
  conformance: null,
  benchBudgetMs: 60_000,
  cellBudgetMs: 100,
  ortDeadlineMs: null,
};

describe('--mode gpu (scripts/gpu-check.sh) on SwiftShader', () => {
  it('writes one JSON with the adapter (software), ceiling, prefill and f32/f16 decode rows', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'attnkit-gpu-check-'));
    const file = path.join(dir, 'gpu-check.json');
    try {
      // a process of its own: the Vulkan loader reads LD_LIBRARY_PATH only at process start
      const script = `import { runGpuCheck } from ${JSON.stringify(pathToFileURL(dist).href)};
await runGpuCheck(${JSON.stringify(file)}, ${JSON.stringify(plan)});`;
      const run = onSwiftShader(script, 240_000);
      expect(run.status, run.stderr).toBe(0);
      expect(existsSync(file)).toBe(true);
      const r = JSON.parse(readFileSync(file, 'utf8')) as GpuCheckResult;
      expect(r.schema).toBe('attnkit-gpu-check/1');
      expect(r.env.VK_ICD_FILENAMES).toContain('vk_swiftshader_icd.json');
      expect(r.adapter?.software).toBe(true);
      expect(r.adapter?.softwareReason).toMatch(/isFallbackAdapter|swiftshader/i);
      expect(r.adapter?.architecture).toMatch(/swiftshader/i);
      expect(r.engine).toMatch(/SwiftShader/i);
      expect(r.conformance).toMatchObject({ status: 'skipped', tail: 'skipped by the plan', totals: null });
      expect(r.ceiling.rows).toHaveLength(1);
      expect(r.ceiling.rows[0].checkedMaxError).toBeLessThan(1e-3);
      expect(r.ceiling.bestGflops).toBeGreaterThan(0);
      expect(r.prefill).toEqual([
        expect.objectContaining({ heads: 1, n: 128, status: 'ok', gflops: expect.any(Number) }),
      ]);
      const decode = Object.fromEntries(r.decode.map((d) => [d.precision, d]));
      expect(decode.f32).toMatchObject({ keyLength: 128, status: 'ok', maxDiffVsF32: null });
      expect(decode['f16-storage']).toMatchObject({ keyLength: 128, status: 'ok' });
      // f16 storage halves the cache (D 64 is even) and stays close to the f32 cache
      expect(2 * (decode['f16-storage'].cacheBytes ?? 0)).toBe(decode.f32.cacheBytes);
      expect(decode['f16-storage'].maxDiffVsF32).toBeLessThan(1e-2);
      expect(r.ort).toEqual({ status: 'skipped', reason: 'skipped by the plan' });
      expect(r.hostCall).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);

  it("runs onnxruntime-web's MHA on Dawn, reads its node placement, and keeps a software run out of the ratios", () => {
    // before the writeBuffer copy (gpu-ort-child.ts) this failed at its first program with
    // "Invalid argument": Dawn's Node binding rejects views into ORT's shared wasm memory
    const ort = pathToFileURL(path.join(here, '../dist/gpu-ort.js')).href;
    const script = `import { runOrtAttempt } from ${JSON.stringify(ort)};
console.log('ATTEMPT ' + JSON.stringify(await runOrtAttempt(120000, true)));`;
    const run = onSwiftShader(script, 180_000);
    expect(run.status, run.stderr).toBe(0);
    const line = run.stdout.split('\n').find((l) => l.startsWith('ATTEMPT '));
    expect(line, run.stdout).toBeDefined();
    const attempt = JSON.parse((line ?? '').slice(8)) as Record<string, unknown>;
    expect(attempt).toMatchObject({
      status: 'ran',
      reason: null,
      n: 1024,
      headDim: 64,
      placement: 'All nodes placed on [WebGpuExecutionProvider]',
      // SwiftShader is a software adapter (and ORT's subgroup kernels are wrong there): never a peer row
      trusted: false,
    });
    expect(attempt.maxError).toEqual(expect.any(Number));
    expect(attempt.medianMs).toBeGreaterThan(0);
  }, 200_000);
});
