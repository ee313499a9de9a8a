import { type NodePlacement, parseNodePlacements } from '@attnkit/benchmarks';

/**
 * onnxruntime-web in the page: the WebGPU device its sessions run on, and where it placed a model's
 * nodes (its verbose log, which its wasm module writes to the console).
 */

const sinks = new Set<(line: string) => void>();
let tapped = false;

/**
 * Routes console output through listeners as well as to the console. Must run before
 * onnxruntime's wasm module starts: emscripten binds `console.log`/`console.error` once, then.
 */
export function installConsoleTap(): void {
  if (tapped) return;
  tapped = true;
  for (const level of ['log', 'info', 'warn', 'error', 'debug'] as const) {
    const original = console[level].bind(console);
    console[level] = (...args: unknown[]) => {
      if (sinks.size > 0) {
        const line = args.map(String).join(' ');
        for (const sink of sinks) sink(line);
      }
      original(...args);
    };
  }
}

/** Runs `fn`, returning what it wrote to the console meanwhile. */
async function captureConsole(fn: () => Promise<void>): Promise<string> {
  const lines: string[] = [];
  const sink = (line: string) => lines.push(line);
  sinks.add(sink);
  try {
    await fn();
  } finally {
    sinks.delete(sink);
  }
  return lines.join('\n');
}

/** The part of onnxruntime-web the probe needs. */
interface OrtSessions {
  InferenceSession: {
    create(model: Uint8Array, options?: Record<string, unknown>): Promise<{ release(): Promise<void> }>;
  };
}

/**
 * Where onnxruntime puts `model`'s nodes with these session options: a session created with
 * verbose logging (then released) and its "Node placements" lines parsed. `null` when the session
 * could not be made or the log said nothing (the row then shows placement unknown).
 */
export async function probePlacement(
  ort: OrtSessions,
  model: Uint8Array,
  sessionOptions: Record<string, unknown>,
): Promise<NodePlacement> {
  if (!tapped) throw new Error('probePlacement: installConsoleTap() must run before onnxruntime loads');
  let failed = false;
  const log = await captureConsole(async () => {
    try {
      const session = await ort.InferenceSession.create(model, {
        ...sessionOptions,
        logSeverityLevel: 0,
        logVerbosityLevel: 0,
      });
      await session.release();
    } catch {
      failed = true;
    }
  });
  return failed ? null : parseNodePlacements(log);
}

/** onnxruntime's WebGPU device and why it has the features it has. */
export interface OrtDevice {
  device: GPUDevice;
  /** True when `subgroups` was left out (a software adapter: see {@link ortDevice}). */
  withoutSubgroups: boolean;
  adapter: string;
}

const SUBGROUP_FEATURES = /^(subgroups|subgroup-size-control|chromium-experimental-subgroup)/;
const LIMITS = [
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBufferBindingSize',
  'maxStorageBuffersPerShaderStage',
  'maxBufferSize',
] as const;

let device: Promise<OrtDevice> | null = null;

/**
 * The device the page hands to onnxruntime (`executionProviders: [{ name: 'webgpu', device }]`),
 * one per page. On SwiftShader (a software adapter) it is created without `subgroups`: with that
 * feature onnxruntime-web 1.30's MultiHeadAttention and GroupQueryAttention kernels return wrong
 * outputs there (max error 0.44 at N = 64), without it they match the float64 reference. On other
 * adapters it gets every feature the adapter has, as onnxruntime would request itself.
 */
export function ortDevice(): Promise<OrtDevice> {
  device ??= (async () => {
    const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
    if (gpu === undefined) throw new Error('navigator.gpu is absent (no WebGPU in this browser)');
    const adapter = await gpu.requestAdapter();
    if (adapter === null) throw new Error('navigator.gpu.requestAdapter() returned null');
    const info = adapter.info;
    const name = [info.vendor, info.architecture, info.device, info.description].filter((s) => s).join(' ');
    const software = /swiftshader/i.test(name);
    const features = [...adapter.features].filter(
      (f) => !(software && SUBGROUP_FEATURES.test(f)),
    ) as GPUFeatureName[];
    const requiredLimits: Record<string, number> = {};
    for (const limit of LIMITS) requiredLimits[limit] = adapter.limits[limit];
    const made = await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
    return { device: made, withoutSubgroups: software && adapter.features.has('subgroups'), adapter: name };
  })();
  return device;
}
