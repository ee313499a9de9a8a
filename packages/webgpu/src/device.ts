import { AttnkitError } from '@attnkit/spec';
import { type KernelTier, resolveTier, type SubgroupSizes, subgroupSizesOf } from './tier.js';

/** The shape of the `webgpu` npm package (Dawn for Node) that this backend uses. */
export interface NodeWebGpuModule {
  create(flags: readonly string[]): GPU;
}

/** How the backend gets its device. Every field is optional. */
export interface DeviceOptions {
  /**
   * A device the caller owns. The backend uses it and never destroys it; `dispose()` frees only
   * what the backend created on it.
   */
  device?: GPUDevice;
  /** A `GPU` object to ask for an adapter (default: `navigator.gpu`, or Dawn in Node). */
  gpu?: GPU;
  /** Passed to `requestAdapter`, e.g. `{ powerPreference: 'high-performance' }`. */
  adapterOptions?: GPURequestAdapterOptions;
  /**
   * Node only: the `webgpu` package (Dawn), or a function that loads it. Default: a dynamic import of
   * `webgpu`, made only when there is no `navigator.gpu`, so browser builds never pull it in.
   */
  nodeWebgpuModule?: NodeWebGpuModule | (() => Promise<NodeWebGpuModule>);
  /** Flags for Dawn's `create()` in Node (default {@link DEFAULT_DAWN_FLAGS}). */
  dawnFlags?: readonly string[];
  /**
   * The kernel tier to run (default: the best the adapter offers, see `KernelTier`). A tier the
   * adapter or the given device cannot run rejects `init()` with `unsupported`.
   */
  tier?: KernelTier;
}

/** A device and whether this backend owns (and so destroys) it. */
export interface AcquiredDevice {
  device: GPUDevice;
  owned: boolean;
  /** What runs, for `capabilities.engine`. */
  description: string;
  /** The `GPU` the device came from, kept for as long as the device is in use. */
  keepAlive: unknown;
  /** Facts about the device a caller may not expect, for `capabilities.notes`. */
  notes: string[];
  /** The kernel tier resolved for this device. */
  tier: KernelTier;
  /** Subgroup sizes where the tier uses subgroups, else `null`. */
  subgroupSizes: SubgroupSizes | null;
}

const SWIFTSHADER_HINT =
  "Without a GPU, point Vulkan at SwiftShader (shipped by Debian's chromium package): " +
  'VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json, and, when libvulkan.so.1 is not ' +
  'installed system-wide (apt-get install libvulkan1), also LD_LIBRARY_PATH=/usr/lib/chromium. ' +
  'Both must be set before Node starts.';

function unavailable(message: string, actual: string, cause?: unknown): AttnkitError {
  return new AttnkitError('unavailable', message, {
    argument: 'device',
    expected: 'a WebGPU adapter',
    actual,
    ...(cause !== undefined && { cause }),
  });
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string';
}

function browserGpu(): GPU | undefined {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  return nav?.gpu ?? undefined;
}

async function loadDawn(options: DeviceOptions): Promise<NodeWebGpuModule> {
  const given = options.nodeWebgpuModule;
  if (given !== undefined && typeof given !== 'function') return given;
  // A computed specifier keeps bundlers from resolving (and shipping) the Node-only package.
  const specifier = ['web', 'gpu'].join('');
  try {
    if (typeof given === 'function') return await given();
    return (await import(/* @vite-ignore */ specifier)) as NodeWebGpuModule;
  } catch (error) {
    throw unavailable(
      'webgpu: no navigator.gpu here and the optional peer dependency "webgpu" (Dawn for Node) could not ' +
        'be loaded; install it with `npm install webgpu@0.6.2`, or pass a GPUDevice as `device`',
      'no navigator.gpu, no "webgpu" package',
      error,
    );
  }
}

/**
 * Dawn's default on Vulkan drivers with VK_KHR_zero_initialize_workgroup_memory hands workgroup
 * zero-initialisation to the driver; SwiftShader then takes seconds per pipeline (measured: 7.5 s for a
 * 16 KiB workgroup array). Without the extension Tint emits its own zero-initialising loop: the same
 * guarantee, compiled in milliseconds. Only applies to the Dawn instance this package creates in Node.
 */
export const DEFAULT_DAWN_FLAGS: readonly string[] = [
  'disable-dawn-features=use_vulkan_zero_initialize_workgroup_memory_extension',
];

/**
 * Dawn instances this process made, by module (its `create` function) and flags. Never emptied, on
 * purpose: Dawn's Node binding (`webgpu` 0.6.2) crashes or hangs the process (SIGSEGV, SIGABRT
 * `std::system_error: Invalid argument`, or no exit) when an instance that created a buffer is
 * garbage-collected, so one instance per process is made and kept alive; backends each get their own
 * device from it, which is what they own and destroy.
 */
const dawnInstances = new Map<NodeWebGpuModule['create'], Map<string, GPU>>();

function dawnInstance(dawn: NodeWebGpuModule, flags: readonly string[]): GPU {
  let byFlags = dawnInstances.get(dawn.create);
  if (byFlags === undefined) {
    byFlags = new Map();
    dawnInstances.set(dawn.create, byFlags);
  }
  // Flags are a set of switches: order does not make a different instance.
  const key = JSON.stringify([...flags].sort());
  let gpu = byFlags.get(key);
  if (gpu === undefined) {
    gpu = dawn.create([...flags]);
    byFlags.set(key, gpu);
  }
  return gpu;
}

/** Limits this backend asks for: as much as the adapter allows of what drives its tiling. */
const WANTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxStorageBuffersPerShaderStage',
] as const;

/**
 * Returns the caller's device, or acquires one: `options.gpu`, else `navigator.gpu`, else (Node only)
 * Dawn from the `webgpu` package. A missing adapter is an `unavailable` error that says how to fix it.
 */
export async function acquireDevice(options: DeviceOptions): Promise<AcquiredDevice> {
  if (options.device !== undefined) {
    const given = options.device;
    // `GPUDevice.adapterInfo` is newer than some implementations: without it, no sizes, no subgroups tier.
    const sizes = subgroupSizesOf((given as { adapterInfo?: unknown }).adapterInfo);
    const tier = resolveTier(options.tier, { subgroupsFeature: given.features.has('subgroups'), sizes });
    return {
      device: given,
      owned: false,
      description: 'caller-provided GPUDevice',
      keepAlive: null,
      notes: ["caller-owned device: dispose() frees the backend's buffers and leaves the device alone"],
      tier,
      subgroupSizes: tier === 'subgroups' ? sizes : null,
    };
  }
  let gpu = options.gpu ?? browserGpu();
  let where = 'navigator.gpu';
  const notes: string[] = [];
  if (options.gpu !== undefined) where = 'options.gpu';
  if (gpu === undefined) {
    if (!isNode()) {
      throw unavailable(
        'webgpu: navigator.gpu is missing: this browser has no WebGPU, or the page is not a secure context ' +
          '(serve it from https:// or http://127.0.0.1); headless Chromium needs --enable-unsafe-webgpu',
        'navigator.gpu undefined',
      );
    }
    const dawn = await loadDawn(options);
    const flags = options.dawnFlags ?? DEFAULT_DAWN_FLAGS;
    gpu = dawnInstance(dawn, flags);
    if (flags.length > 0) notes.push(`Dawn created with ${flags.join(' ')}`);
    where = 'Dawn (webgpu package)';
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter(options.adapterOptions);
  } catch (error) {
    throw unavailable(
      `webgpu: requestAdapter failed on ${where}: ${String(error)}`,
      'requestAdapter threw',
      error,
    );
  }
  if (adapter === null) {
    const hint = isNode() ? ` ${SWIFTSHADER_HINT}` : '';
    throw unavailable(`webgpu: no WebGPU adapter found (${where}).${hint}`, 'requestAdapter() returned null');
  }
  const requiredLimits: Record<string, number> = {};
  for (const name of WANTED_LIMITS) {
    const value = adapter.limits[name];
    if (typeof value === 'number') requiredLimits[name] = value;
  }
  const sizes = subgroupSizesOf(adapter.info);
  const tier = resolveTier(options.tier, { subgroupsFeature: adapter.features.has('subgroups'), sizes });
  const requiredFeatures: GPUFeatureName[] = tier === 'subgroups' ? ['subgroups' as GPUFeatureName] : [];
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  } catch (error) {
    throw unavailable(`webgpu: requestDevice failed: ${String(error)}`, 'requestDevice rejected', error);
  }
  const info = adapter.info;
  const name = [info?.vendor, info?.architecture, info?.device, info?.description]
    .filter((part) => typeof part === 'string' && part.length > 0)
    .join(' ');
  if (info?.isFallbackAdapter === true || /swiftshader/i.test(name)) {
    notes.push('software (fallback) adapter: correct but slow; speed figures need a real GPU');
  }
  return {
    device,
    owned: true,
    description: `${where}${name ? `: ${name}` : ''}`,
    keepAlive: gpu,
    notes,
    tier,
    subgroupSizes: tier === 'subgroups' ? sizes : null,
  };
}
