import type { AcquiredDevice } from './device.js';
import { BufferPool, STORAGE_USAGE } from './pool.js';
import type { KernelTier, SubgroupSizes } from './tier.js';
import type { TransferCounters } from './types.js';

/** Everything a backend holds for one device, sized from that device's limits. */
export interface DeviceState {
  acquired: AcquiredDevice;
  device: GPUDevice;
  /** The kernel tier (resolved at acquisition): which WGSL extensions the kernels may use. */
  tier: KernelTier;
  /** Subgroup sizes in the `subgroups` tier, else `null`. */
  subgroupSizes: SubgroupSizes | null;
  pool: BufferPool;
  limits: {
    storageBinding: number;
    maxBuffer: number;
    workgroupFloats: number;
    invocations: number;
    workgroupsPerDim: number;
    storageBuffers: number;
    tensorElements: number;
  };
  /** 16-byte read-only stand-in bound where an option is absent. */
  dummy: GPUBuffer;
  lost: GPUDeviceLostInfo | null;
  lostPromise: Promise<GPUDeviceLostInfo>;
  /** Bytes and calls moved between host and device on this device (transfer.ts counts them: every write and read). */
  transfers: TransferCounters;
}

/**
 * What the operation modules need from the backend: `live()` replaces a lost device this backend
 * owns, `ready()` returns the state or throws (`unavailable` before init or after dispose, `device` when lost).
 */
export interface Runtime {
  live(): Promise<void>;
  ready(): DeviceState;
  /**
   * The state when a call can use the device right now (initialised and not lost), else
   * `null`: then the call copies the caller's arrays before it waits for `live()`.
   */
  usable(): DeviceState | null;
  /** `WebGpuBackendOptions.workgroupSize`, as given. */
  readonly workgroupSize: number | undefined;
}

/** Builds the state of a freshly acquired device and starts watching for its loss. */
export function createDeviceState(acquired: AcquiredDevice): DeviceState {
  const { device } = acquired;
  const l = device.limits;
  const storageBinding = Math.min(l.maxStorageBufferBindingSize, l.maxBufferSize);
  const pool = new BufferPool(device, l.maxBufferSize);
  const state: DeviceState = {
    acquired,
    device,
    tier: acquired.tier,
    subgroupSizes: acquired.subgroupSizes,
    pool,
    dummy: pool.acquire(16, STORAGE_USAGE),
    limits: {
      storageBinding,
      maxBuffer: l.maxBufferSize,
      workgroupFloats: Math.floor(l.maxComputeWorkgroupStorageSize / 4),
      invocations: Math.min(l.maxComputeInvocationsPerWorkgroup, l.maxComputeWorkgroupSizeX),
      workgroupsPerDim: l.maxComputeWorkgroupsPerDimension,
      storageBuffers: l.maxStorageBuffersPerShaderStage,
      tensorElements: Math.floor(storageBinding / 4),
    },
    lost: null,
    lostPromise: device.lost,
    transfers: { uploadBytes: 0, uploads: 0, downloadBytes: 0, downloads: 0 },
  };
  state.lostPromise.then((info) => {
    state.lost = info;
  });
  return state;
}
