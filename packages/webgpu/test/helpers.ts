import {
  type AttentionInputs,
  type AttentionOptions,
  type AttentionShape,
  type ReferenceResult64,
  referenceAttention64,
  type Tolerance,
} from '@attnkit/spec';
import { afterEach, expect } from 'vitest';
import { createWebGpuBackend, DEFAULT_DAWN_FLAGS, type WebGpuBackend } from '../src/index.js';

/** Deterministic values in [-1, 1) (LCG), so a failure reproduces. */
export function random(length: number, seed: number, scale = 1): Float32Array {
  let state = (seed * 2654435761) >>> 0 || 1;
  const out = new Float32Array(length);
  for (let n = 0; n < length; n++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[n] = ((state / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

/** Random q, k, v for a shape. */
export function inputsFor(shape: AttentionShape, seed = 1, scale = 1): AttentionInputs {
  const Hkv = shape.kvHeads ?? shape.queryHeads;
  const Lk = shape.keyLength ?? shape.queryLength;
  const Dv = shape.valueDim ?? shape.headDim;
  return {
    q: random(shape.batch * shape.queryHeads * shape.queryLength * shape.headDim, seed, scale),
    k: random(shape.batch * Hkv * Lk * shape.headDim, seed + 1, scale),
    v: random(shape.batch * Hkv * Lk * Dv, seed + 2, scale),
    shape,
  };
}

/**
 * Asserts `|got - ref| <= atol + rtol*|ref|` element-wise; NaN must meet NaN and an infinity the same
 * infinity (the reference's IEEE behaviour).
 */
export function expectClose(
  name: string,
  got: Float32Array | undefined,
  ref: ArrayLike<number> | undefined,
  tolerance: Tolerance,
): void {
  expect(ref, `${name}: reference`).toBeDefined();
  expect(got, `${name}: result`).toBeDefined();
  if (got === undefined || ref === undefined) return;
  expect(got.length, `${name}.length`).toBe(ref.length);
  const failures: string[] = [];
  for (let n = 0; n < ref.length; n++) {
    const r = ref[n];
    const g = got[n];
    let ok: boolean;
    if (Number.isNaN(r)) ok = Number.isNaN(g);
    else if (!Number.isFinite(r)) ok = g === r;
    else ok = Math.abs(g - r) <= tolerance.atol + tolerance.rtol * Math.abs(r);
    if (!ok && failures.length < 5) failures.push(`${name}[${n}]: got ${g}, reference ${r}`);
  }
  expect(failures).toEqual([]);
}

/** Runs attention on the backend and compares every requested output with the float64 reference. */
export async function expectMatchesReference(
  backend: WebGpuBackend,
  inputs: AttentionInputs,
  options: AttentionOptions = {},
): Promise<ReferenceResult64> {
  const got = await backend.attention(inputs, options);
  const ref = referenceAttention64(inputs, options);
  const tolerance = backend.capabilities.tolerance;
  expectClose('output', got.output, ref.output, tolerance);
  if (options.returnLse) expectClose('lse', got.lse, ref.lse, tolerance);
  else expect(got.lse).toBeUndefined();
  if (options.returnWeights) expectClose('weights', got.weights, ref.weights, tolerance);
  else expect(got.weights).toBeUndefined();
  return ref;
}

/** A backend that acquires its own device: Dawn in Node, navigator.gpu in the browser. */
export function newBackend(): WebGpuBackend {
  return createWebGpuBackend();
}

/** A device the test owns (to check that the backend never destroys it). */
export async function ownDevice(limits: 'adapter' | 'default' = 'default'): Promise<GPUDevice> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  let gpu = nav?.gpu;
  if (gpu === undefined) {
    const specifier = 'webgpu';
    const dawn = (await import(/* @vite-ignore */ specifier)) as { create(flags: string[]): GPU };
    gpu = dawn.create([...DEFAULT_DAWN_FLAGS]);
    keepAlive.push(gpu);
  }
  const adapter = await gpu.requestAdapter();
  if (adapter === null) throw new Error('no WebGPU adapter: the test environment must provide one');
  if (limits === 'default') return adapter.requestDevice();
  return adapter.requestDevice({
    requiredLimits: { maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize },
  });
}

const keepAlive: unknown[] = [];

/** What a test defers to after it ends: see {@link cleanupAfterEach}. */
export interface Cleanups {
  /** Runs `cleanup` after the test (in reverse order of registration, pass or fail). */
  defer(cleanup: () => Promise<void> | void): void;
  /** Disposes `backend` after the test; returns it. */
  track<B extends { dispose(): Promise<void> }>(backend: B): B;
}

/**
 * Registers an `afterEach` (call it once, at a test file's top level) that runs what each test
 * deferred, last first, so a failing test still frees its backends and devices.
 */
export function cleanupAfterEach(): Cleanups {
  const pending: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of pending.splice(0).reverse()) await cleanup();
  });
  return {
    defer: (cleanup) => {
      pending.push(cleanup);
    },
    track: (backend) => {
      pending.push(() => backend.dispose());
      return backend;
    },
  };
}

/** A `[B, H, L, D]` tensor rearranged as `[B, L, H, D]` (what the `blhd` layout reads and writes). */
export function toBlhd(t: Float32Array, B: number, H: number, L: number, D: number): Float32Array {
  const o = new Float32Array(t.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let l = 0; l < L; l++)
        for (let d = 0; d < D; d++) o[((b * L + l) * H + h) * D + d] = t[((b * H + h) * L + l) * D + d];
  return o;
}
