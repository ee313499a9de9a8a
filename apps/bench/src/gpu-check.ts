/**
 * `--mode gpu` (what `scripts/gpu-check.sh` runs): on the machine's WebGPU adapter through Dawn in
 * Node, in one process and one JSON file: the adapter (and whether it is a software one), the webgpu
 * conformance suite (the `attnkit-conformance` CLI in a child process), a WGSL matmul ceiling,
 * attnkit's causal prefill (D 64) and KV-cache decode steps (f32 and f16 storage) with GFLOP/s
 * against that ceiling, and an attempt at onnxruntime-web's WebGPU EP under Dawn (gpu-ort.ts).
 * Every part has a deadline, so the whole run fits its budget on any adapter; a size a part did
 * not reach is listed with the reason, never dropped.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { nodeMachineInfo } from '@attnkit/benchmarks/node';
import { attentionFlops, type KVCachePrecision, validateAttention } from '@attnkit/spec';
import { CEILING_TILE, type CeilingRow, measureCeiling } from './gpu-ceiling.js';
import { ORT_SHAPE, type OrtAttempt, runOrtAttempt } from './gpu-ort.js';
import { REPO_ROOT } from './paths.js';

/** What one run measures; the defaults are the real-GPU plan, {@link softwarePlan} the software one. */
export interface GpuCheckPlan {
  prefillSizes: number[];
  prefillHeads: number[];
  decodeLengths: number[];
  ceilingSizes: number[];
  /** Conformance: `null` skips it; `maxWork` caps the cases (a software adapter). */
  conformance: { filter: string | null; maxWork: number | null; deadlineMs: number } | null;
  /** Wall-clock budget of the timed parts (ceiling, prefill, decode), and of one cell. */
  benchBudgetMs: number;
  cellBudgetMs: number;
  /** onnxruntime-web WebGPU attempt: its deadline, or `null` to skip it. */
  ortDeadlineMs: number | null;
}

/** Sized to finish inside 8 minutes on a real GPU with a CPU like the ones these machines have. */
export const HARDWARE_PLAN: GpuCheckPlan = {
  prefillSizes: [1024, 2048, 4096, 8192],
  prefillHeads: [1, 8],
  decodeLengths: [1024, 4096, 16384, 65536],
  ceilingSizes: [1024, 2048, 4096],
  conformance: { filter: null, maxWork: null, deadlineMs: 240_000 },
  benchBudgetMs: 120_000,
  cellBudgetMs: 4_000,
  ortDeadlineMs: 45_000,
};

/** On a software adapter (SwiftShader, llvmpipe): the same parts, small enough to finish. */
export function softwarePlan(base: GpuCheckPlan): GpuCheckPlan {
  return {
    ...base,
    prefillSizes: base.prefillSizes.filter((n) => n <= 2048),
    prefillHeads: [1],
    decodeLengths: base.decodeLengths.filter((n) => n <= 4096),
    ceilingSizes:
      base.ceilingSizes.filter((n) => n <= 512).length > 0
        ? base.ceilingSizes.filter((n) => n <= 512)
        : [256],
    // SwiftShader is slow at the suite too: it gets more of the 8 minutes, the timed parts less
    conformance: base.conformance && {
      ...base.conformance,
      maxWork: base.conformance.maxWork ?? 1e6,
      deadlineMs: Math.max(base.conformance.deadlineMs, 300_000),
    },
    benchBudgetMs: Math.min(base.benchBudgetMs, 60_000),
    cellBudgetMs: 8_000,
  };
}

const HEAD_DIM = 64;
/** The decode shape: grouped-query like Llama 3 8B (32 query heads over 8 kv heads), D 64. */
const DECODE = { batch: 1, queryHeads: 32, kvHeads: 8, headDim: HEAD_DIM } as const;

export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** `isFallbackAdapter`, or a software driver named in the info (SwiftShader, llvmpipe, lavapipe). */
  software: boolean;
  softwareReason: string | null;
  features: string[];
  limits: Record<string, number>;
}

export interface ConformanceSummary {
  status: 'ran' | 'timed-out' | 'failed-to-run' | 'skipped';
  command: string;
  elapsedMs: number;
  maxWork: number | null;
  totals: { cases: number; passed: number; failed: number; omitted: number; reduced: number } | null;
  failedCases: string[];
  /** The CLI's last lines (its `N passed, M failed`, or why it stopped). */
  tail: string;
}

export interface PrefillRow {
  heads: number;
  n: number;
  status: 'ok' | 'skipped';
  reason: string | null;
  medianMs: number | null;
  reps: number;
  /** Useful (causal) multiply-add FLOPs over the median time. */
  gflops: number | null;
  /** Of the matmul ceiling measured in this run. */
  ofCeiling: number | null;
}

export interface DecodeRow {
  keyLength: number;
  precision: KVCachePrecision;
  status: 'ok' | 'skipped';
  reason: string | null;
  /** Device bytes the cache holds at `keyLength` tokens (backend.memory() growth). */
  cacheBytes: number | null;
  /** One step: append one token's K/V, attend with its 32 queries, read the output back. */
  medianStepMs: number | null;
  reps: number;
  /** Cache bytes read per step over the median step time. */
  gbPerSecond: number | null;
  /** f16 rows: max |output - f32 cache output| on the same data and query (the f32 row's first step). */
  maxDiffVsF32: number | null;
}

export interface GpuCheckResult {
  schema: 'attnkit-gpu-check/1';
  startedAt: string;
  finishedAt: string;
  elapsedMs: number;
  machine: ReturnType<typeof nodeMachineInfo>;
  env: Record<string, string | null>;
  adapter: AdapterReport | null;
  /** Why there is no adapter (Dawn found no Vulkan driver), else null. */
  adapterError: string | null;
  engine: string | null;
  plan: GpuCheckPlan;
  conformance: ConformanceSummary;
  ceiling: { kernel: string; rows: CeilingRow[]; bestGflops: number | null };
  prefill: PrefillRow[];
  decode: DecodeRow[];
  /**
   * attnkit's host call at the ORT attempt's shape (host q/k/v in, output read back), the same work
   * ORT's `session.run` with host tensors does: the one like-for-like row for the ORT ratio.
   */
  hostCall: { n: number; heads: number; medianMs: number; reps: number } | null;
  ort: OrtAttempt | { status: 'skipped'; reason: string };
  notes: string[];
}

interface DawnModule {
  create(flags: string[]): GPU;
}

/** Dawn from the `webgpu` package that @attnkit/webgpu itself loads (the bench does not depend on it). */
async function loadDawn(): Promise<DawnModule> {
  const requireFromWebgpu = createRequire(import.meta.resolve('@attnkit/webgpu'));
  return (await import(pathToFileURL(requireFromWebgpu.resolve('webgpu')).href)) as DawnModule;
}

const SOFTWARE = /swiftshader|llvmpipe|lavapipe|software|softpipe/i;

export function describeAdapter(adapter: GPUAdapter): AdapterReport {
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const text = (value: unknown) => (typeof value === 'string' ? value : '');
  const fields = {
    vendor: text(info?.vendor),
    architecture: text(info?.architecture),
    device: text(info?.device),
    description: text(info?.description),
  };
  const named = Object.values(fields).find((v) => SOFTWARE.test(v));
  const fallback = info?.isFallbackAdapter === true;
  const limits: Record<string, number> = {};
  for (const name of [
    'maxStorageBufferBindingSize',
    'maxBufferSize',
    'maxComputeWorkgroupStorageSize',
    'maxComputeInvocationsPerWorkgroup',
    'maxComputeWorkgroupsPerDimension',
  ] as const) {
    const value = adapter.limits[name];
    if (typeof value === 'number') limits[name] = value;
  }
  return {
    ...fields,
    software: fallback || named !== undefined,
    softwareReason: fallback
      ? 'isFallbackAdapter'
      : named !== undefined
        ? `software driver: ${SOFTWARE.exec(named)?.[0]}`
        : null,
    features: [...adapter.features].map(String).sort(),
    limits,
  };
}

/** Runs the conformance CLI on @attnkit/webgpu in a child process, under a deadline. */
function runConformanceChild(
  plan: NonNullable<GpuCheckPlan['conformance']>,
  env: NodeJS.ProcessEnv,
): Promise<ConformanceSummary> {
  const cli = path.join(REPO_ROOT, 'packages/conformance/dist/cli.js');
  const report = path.join(os.tmpdir(), `attnkit-gpu-check-conformance-${process.pid}.json`);
  const args = [cli, path.join(REPO_ROOT, 'packages/webgpu'), '--json', report];
  if (plan.filter !== null) args.push('--filter', plan.filter);
  if (plan.maxWork !== null) args.push('--max-work', String(plan.maxWork));
  const command = `node ${args.map((a) => path.relative(REPO_ROOT, a) || a).join(' ')}`;
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const keep = (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-4000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, plan.deadlineMs);
    child.on('close', () => {
      clearTimeout(timer);
      const elapsedMs = performance.now() - started;
      const lastLines = tail.trim().split('\n').slice(-3).join('\n');
      let parsed: {
        totals: ConformanceSummary['totals'];
        cases: { id: string; status: string }[];
      } | null = null;
      try {
        parsed = JSON.parse(readFileSync(report, 'utf8'));
        rmSync(report, { force: true });
      } catch {
        parsed = null;
      }
      resolve({
        status: timedOut ? 'timed-out' : parsed === null ? 'failed-to-run' : 'ran',
        command,
        elapsedMs,
        maxWork: plan.maxWork,
        totals: parsed?.totals ?? null,
        failedCases: parsed?.cases.filter((c) => c.status === 'fail').map((c) => c.id) ?? [],
        tail: timedOut ? `killed after ${plan.deadlineMs / 1000} s; last output:\n${lastLines}` : lastLines,
      });
    });
  });
}

function seededFloats(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    out[i] = s / 2 ** 30 - 1;
  }
  return out;
}

/** The webgpu backend surface this mode uses (typed here: apps/bench imports the package lazily). */
type WebGpuBackend = Awaited<ReturnType<typeof import('@attnkit/webgpu')['createWebGpuBackend']>>;

/** Times `call` (a whole call, completion included) `reps` times or until `budgetMs` is spent; median. */
async function timeCalls(call: () => Promise<void>, budgetMs: number, minReps: number, maxReps: number) {
  await call(); // warm-up (compilation, first allocations)
  const samples: number[] = [];
  const start = performance.now();
  while (samples.length < maxReps && (samples.length < minReps || performance.now() - start < budgetMs)) {
    const t = performance.now();
    await call();
    samples.push(performance.now() - t);
  }
  samples.sort((a, b) => a - b);
  return { median: samples[Math.floor(samples.length / 2)], reps: samples.length };
}

async function prefillPart(
  backend: WebGpuBackend,
  plan: GpuCheckPlan,
  ceiling: number | null,
  deadline: number,
): Promise<PrefillRow[]> {
  const rows: PrefillRow[] = [];
  for (const heads of plan.prefillHeads) {
    let last: { n: number; ms: number } | null = null;
    for (const n of plan.prefillSizes) {
      const skip = (reason: string) =>
        rows.push({
          heads,
          n,
          status: 'skipped',
          reason,
          medianMs: null,
          reps: 0,
          gflops: null,
          ofCeiling: null,
        });
      const left = deadline - performance.now();
      // causal prefill grows as N^2: predict this size from the last one (warm-up plus 3 reps)
      const predicted = last === null ? 0 : last.ms * (n / last.n) ** 2;
      if (4 * predicted > Math.min(left, 4 * plan.cellBudgetMs)) {
        skip(
          `predicted ${predicted.toFixed(0)} ms per call; ${Math.max(0, left / 1000).toFixed(0)} s of the bench budget left`,
        );
        continue;
      }
      const shape = { batch: 1, queryHeads: heads, kvHeads: heads, queryLength: n, headDim: HEAD_DIM };
      const elements = heads * n * HEAD_DIM;
      const [q, k, v] = await Promise.all(
        [1, 2, 3].map((seed) => backend.upload(seededFloats(elements, seed * 7 + n))),
      );
      try {
        await backend.prepare([{ shape }]);
        const { median, reps } = await timeCalls(
          async () => {
            const result = await backend.attentionBuffers({ q, k, v, shape }, { causal: true });
            await backend.device.queue.onSubmittedWorkDone();
            backend.release(result.output);
          },
          plan.cellBudgetMs,
          3,
          20,
        );
        const flops = attentionFlops(shape, { causal: true }).useful;
        const gflops = flops / (median * 1e6);
        rows.push({
          heads,
          n,
          status: 'ok',
          reason: null,
          medianMs: median,
          reps,
          gflops,
          ofCeiling: ceiling === null ? null : gflops / ceiling,
        });
        last = { n, ms: median };
      } finally {
        for (const buffer of [q, k, v]) backend.release(buffer);
      }
    }
  }
  return rows;
}

/** attnkit's `attention()` with host arrays at the ORT attempt's shape (upload, run, read back). */
async function hostCallPart(backend: WebGpuBackend, plan: GpuCheckPlan): Promise<GpuCheckResult['hostCall']> {
  const { heads, n, headDim } = ORT_SHAPE;
  const shape = { batch: 1, queryHeads: heads, kvHeads: heads, queryLength: n, headDim };
  const [q, k, v] = [1, 2, 3].map((seed) => seededFloats(heads * n * headDim, seed * 7 + n));
  const problem = validateAttention({ q, k, v, shape }, { causal: true });
  const { median, reps } = await timeCalls(
    async () => {
      await backend.attention(problem);
    },
    plan.cellBudgetMs,
    5,
    20,
  );
  return { n, heads, medianMs: median, reps };
}

const APPEND_CHUNK = 4096;

async function decodePart(
  backend: WebGpuBackend,
  plan: GpuCheckPlan,
  deadline: number,
): Promise<DecodeRow[]> {
  const rows: DecodeRow[] = [];
  const { batch: B, queryHeads: Hq, kvHeads: Hkv, headDim: D } = DECODE;
  await backend.prepare([
    {
      shape: { batch: B, queryHeads: Hq, kvHeads: Hkv, queryLength: 1, keyLength: 1, headDim: D },
      kvCache: true,
    },
  ]);
  let lastStep: { lk: number; ms: number } | null = null;
  for (const lk of plan.decodeLengths) {
    let f32Output: Float32Array | null = null;
    for (const precision of ['f32', 'f16-storage'] as const) {
      const skip = (reason: string) =>
        rows.push({
          keyLength: lk,
          precision,
          status: 'skipped',
          reason,
          cacheBytes: null,
          medianStepMs: null,
          reps: 0,
          gbPerSecond: null,
          maxDiffVsF32: null,
        });
      const left = deadline - performance.now();
      const predicted = lastStep === null ? 0 : lastStep.ms * (lk / lastStep.lk);
      // filling the cache costs about as much as a few steps; 8 steps' worth must fit
      if (8 * predicted > Math.min(left, 2 * plan.cellBudgetMs)) {
        skip(
          `predicted ${predicted.toFixed(1)} ms per step; ${Math.max(0, left / 1000).toFixed(0)} s of the bench budget left`,
        );
        continue;
      }
      const before = backend.memory().deviceBytes;
      const cache = await backend.createKVCache({
        batch: B,
        kvHeads: Hkv,
        headDim: D,
        capacity: lk + 64,
        precision,
      });
      try {
        // the same data for both precisions: seeded by the chunk
        for (let at = 0; at < lk; at += APPEND_CHUNK) {
          const tokens = Math.min(APPEND_CHUNK, lk - at);
          await cache.append({
            k: seededFloats(B * Hkv * tokens * D, 11 + at),
            v: seededFloats(B * Hkv * tokens * D, 13 + at),
            tokens,
          });
        }
        const cacheBytes = backend.memory().deviceBytes - before;
        const q = seededFloats(B * Hq * D, 17);
        const kNew = seededFloats(B * Hkv * D, 19);
        const vNew = seededFloats(B * Hkv * D, 23);
        // first step: the comparison between precisions (same cache contents, same query)
        await cache.append({ k: kNew, v: vNew, tokens: 1 });
        const first = await cache.attention({ q, queryHeads: Hq, queryLength: 1 });
        let maxDiffVsF32: number | null = null;
        if (precision === 'f32') f32Output = first.output;
        else if (f32Output !== null) {
          maxDiffVsF32 = 0;
          for (let i = 0; i < first.output.length; i++)
            maxDiffVsF32 = Math.max(maxDiffVsF32, Math.abs(first.output[i] - f32Output[i]));
        }
        const { median, reps } = await timeCalls(
          async () => {
            await cache.append({ k: kNew, v: vNew, tokens: 1 });
            await cache.attention({ q, queryHeads: Hq, queryLength: 1 });
          },
          plan.cellBudgetMs / 2,
          5,
          50,
        );
        rows.push({
          keyLength: lk,
          precision,
          status: 'ok',
          reason: null,
          cacheBytes,
          medianStepMs: median,
          reps,
          gbPerSecond: cacheBytes / (median * 1e6),
          maxDiffVsF32,
        });
        if (precision === 'f32') lastStep = { lk, ms: median };
      } finally {
        await cache.dispose();
      }
    }
  }
  return rows;
}

const ENV_KEYS = ['VK_ICD_FILENAMES', 'VK_DRIVER_FILES', 'LD_LIBRARY_PATH', 'ATTNKIT_GPU_CHECK_ICD_SEARCH'];

/** Three significant digits: software adapters give 0.03 GFLOP/s, an H200 thousands. */
function fmt(value: number | null): string {
  return value === null ? '-' : value.toPrecision(3);
}

/** The human-readable summary the CLI prints. */
export function gpuCheckText(r: GpuCheckResult): string {
  const lines: string[] = [];
  const a = r.adapter;
  if (a === null) lines.push(`adapter: none (${r.adapterError})`);
  else {
    lines.push(
      `adapter: vendor "${a.vendor}", architecture "${a.architecture}", device "${a.device}", description "${a.description}"`,
    );
    lines.push(
      a.software
        ? `SOFTWARE ADAPTER (${a.softwareReason}): correctness only, these timings say nothing about a GPU`
        : 'hardware adapter',
    );
  }
  const c = r.conformance;
  lines.push(
    `conformance (${c.status}, ${(c.elapsedMs / 1000).toFixed(0)} s${c.maxWork === null ? '' : `, max-work ${c.maxWork}`}): ` +
      (c.totals === null
        ? c.tail
        : `${c.totals.passed} passed, ${c.totals.failed} failed, ${c.totals.omitted} omitted, ${c.totals.reduced} reduced`),
  );
  if (c.failedCases.length > 0) lines.push(`  failed: ${c.failedCases.join(', ')}`);
  lines.push(`WGSL matmul ceiling (${r.ceiling.kernel}):`);
  for (const row of r.ceiling.rows)
    lines.push(
      `  n ${row.n}: ${fmt(row.msPerDispatch)} ms, ${fmt(row.gflops)} GFLOP/s (check error ${row.checkedMaxError.toExponential(1)})`,
    );
  lines.push('attnkit webgpu prefill, causal, D 64 (useful GFLOP/s, share of the ceiling):');
  for (const p of r.prefill)
    lines.push(
      p.status === 'ok'
        ? `  H ${p.heads} N ${p.n}: ${fmt(p.medianMs)} ms, ${fmt(p.gflops)} GFLOP/s, ${fmt(p.ofCeiling === null ? null : 100 * p.ofCeiling)}% (${p.reps} reps)`
        : `  H ${p.heads} N ${p.n}: skipped: ${p.reason}`,
    );
  lines.push('attnkit webgpu KV-cache decode step, GQA 32/8, D 64 (append + attend + read back):');
  for (const d of r.decode)
    lines.push(
      d.status === 'ok'
        ? `  Lk ${d.keyLength} ${d.precision}: ${fmt(d.medianStepMs)} ms/step, cache ${((d.cacheBytes ?? 0) / 2 ** 20).toFixed(1)} MiB, ${fmt(d.gbPerSecond)} GB/s${d.maxDiffVsF32 === null ? '' : `, max |f16 - f32| ${d.maxDiffVsF32.toExponential(2)}`}`
        : `  Lk ${d.keyLength} ${d.precision}: skipped: ${d.reason}`,
    );
  for (const f16 of r.decode.filter((d) => d.precision === 'f16-storage' && d.status === 'ok')) {
    const f32 = r.decode.find(
      (d) => d.precision === 'f32' && d.keyLength === f16.keyLength && d.status === 'ok',
    );
    if (f32?.medianStepMs && f16.medianStepMs && f32.cacheBytes && f16.cacheBytes)
      lines.push(
        `  Lk ${f16.keyLength}: f16 storage holds ${fmt(f16.cacheBytes / f32.cacheBytes)}x the bytes, steps in ${fmt(f16.medianStepMs / f32.medianStepMs)}x the time`,
      );
  }
  const ort = r.ort;
  lines.push(
    `onnxruntime-web WebGPU (MHA causal prefill) under Dawn: ${ort.status}` +
      ('stage' in ort && ort.stage ? ` at ${ort.stage}` : '') +
      (ort.reason ? `: ${ort.reason}` : '') +
      ('placement' in ort && ort.placement ? ` (${ort.placement})` : '') +
      ('medianMs' in ort && ort.medianMs !== undefined
        ? `; N ${ort.n}: ${fmt(ort.medianMs)} ms, max error ${ort.maxError?.toExponential(2)}${ort.trusted ? '' : ' (not a trusted peer row: software adapter or wrong output)'}`
        : ''),
  );
  const host = r.hostCall;
  if (host !== null)
    lines.push(
      `  attnkit webgpu attention() at the same shape, host arrays in and out like ORT's session.run: ${fmt(host.medianMs)} ms (${host.reps} reps)`,
    );
  if ('medianMs' in ort && ort.medianMs !== undefined && host !== null) {
    const ratio = `${fmt(ort.medianMs / host.medianMs)}x as fast`;
    lines.push(
      ort.trusted
        ? `  attnkit webgpu / ORT WebGPU MHA at N ${host.n}, H ${host.heads}, causal (same adapter, host tensors both): ${ratio}`
        : `  (no ratio: the ORT run is not a trusted peer row; it would read ${ratio})`,
    );
  }
  for (const note of r.notes) lines.push(`note: ${note}`);
  return lines.join('\n');
}

/** Runs every part and writes `file`. Resolves with the result (also when there is no adapter). */
export async function runGpuCheck(
  file: string,
  given: GpuCheckPlan = HARDWARE_PLAN,
): Promise<GpuCheckResult> {
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const notes: string[] = [];
  const env = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k] ?? null]));
  const dawn = await loadDawn();
  const { DEFAULT_DAWN_FLAGS, createWebGpuBackend } = await import('@attnkit/webgpu');
  // one Dawn instance for the process (webgpu 0.6.2 crashes when one is collected): the adapter
  // report and the backend both use it
  const gpu = dawn.create([...DEFAULT_DAWN_FLAGS]);
  const adapterOptions: GPURequestAdapterOptions = { powerPreference: 'high-performance' };
  const adapterObject = await gpu.requestAdapter(adapterOptions);
  const adapter = adapterObject === null ? null : describeAdapter(adapterObject);
  const plan = adapter?.software ? softwarePlan(given) : given;
  const result: GpuCheckResult = {
    schema: 'attnkit-gpu-check/1',
    startedAt,
    finishedAt: startedAt,
    elapsedMs: 0,
    machine: nodeMachineInfo(),
    env,
    adapter,
    adapterError:
      adapterObject === null
        ? 'requestAdapter() returned null: Dawn found no usable Vulkan driver (VK_ICD_FILENAMES / VK_DRIVER_FILES, libvulkan.so.1)'
        : null,
    engine: null,
    plan,
    conformance: {
      status: 'skipped',
      command: '',
      elapsedMs: 0,
      maxWork: null,
      totals: null,
      failedCases: [],
      tail: 'no adapter',
    },
    ceiling: {
      kernel: `register-tiled f32 WGSL matmul, ${CEILING_TILE}x${CEILING_TILE} tiles, 4x4 outputs per invocation`,
      rows: [],
      bestGflops: null,
    },
    prefill: [],
    decode: [],
    hostCall: null,
    ort: { status: 'skipped', reason: 'no adapter' },
    notes,
  };
  const write = () => {
    result.finishedAt = new Date().toISOString();
    result.elapsedMs = performance.now() - t0;
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  };
  if (adapterObject === null || adapter === null) {
    write();
    return result;
  }
  console.log(
    gpuCheckText({ ...result, conformance: { ...result.conformance, tail: 'next' } })
      .split('\n')
      .slice(0, 2)
      .join('\n'),
  );
  if (adapter.software)
    notes.push('software adapter: sizes reduced (softwarePlan), conformance capped by --max-work');
  if (plan.conformance !== null) {
    console.log(`conformance: running (deadline ${plan.conformance.deadlineMs / 1000} s) ...`);
    result.conformance = await runConformanceChild(plan.conformance, process.env);
    console.log(`conformance: ${result.conformance.tail.split('\n').pop()}`);
    write(); // each part is on disk as soon as it is done: a run stopped later keeps it
  } else result.conformance = { ...result.conformance, tail: 'skipped by the plan' };
  const backend = createWebGpuBackend({ gpu, adapterOptions });
  try {
    await backend.init();
    result.engine = backend.capabilities.engine;
    const start = performance.now();
    // the ceiling and prefill share the first 60% of the budget, decode the rest (and what they left)
    const deadline = start + 0.6 * plan.benchBudgetMs;
    console.log('bench: WGSL matmul ceiling ...');
    for (const n of plan.ceilingSizes) {
      if (performance.now() > deadline) break;
      result.ceiling.rows.push(await measureCeiling(backend.device, n, 200, () => performance.now()));
    }
    const good = result.ceiling.rows.filter((r) => r.checkedMaxError < 1e-3 * Math.sqrt(r.n));
    if (good.length < result.ceiling.rows.length)
      notes.push('a ceiling size failed its check and is not counted');
    result.ceiling.bestGflops = good.length === 0 ? null : Math.max(...good.map((r) => r.gflops));
    console.log('bench: prefill ...');
    result.prefill = await prefillPart(backend, plan, result.ceiling.bestGflops, deadline);
    write();
    if (result.prefill.some((p) => p.ofCeiling !== null && p.ofCeiling > 1))
      notes.push(
        'the WGSL matmul is slower than attnkit prefill on this adapter, so it is no ceiling here (software adapters punish register tiling); its ratios are not shares of a ceiling',
      );
    console.log('bench: KV-cache decode ...');
    result.decode = await decodePart(backend, plan, start + plan.benchBudgetMs);
    write();
    if (plan.ortDeadlineMs !== null) {
      result.hostCall = await hostCallPart(backend, plan);
      write();
    }
  } catch (error) {
    notes.push(`bench stopped: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    await backend.dispose();
  }
  if (plan.ortDeadlineMs !== null) {
    console.log('onnxruntime-web WebGPU under Dawn: trying ...');
    result.ort = await runOrtAttempt(plan.ortDeadlineMs, adapter.software);
  } else result.ort = { status: 'skipped', reason: 'skipped by the plan' };
  write();
  return result;
}
