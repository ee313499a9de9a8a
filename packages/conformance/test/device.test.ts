// The device/* cases on hand-written device backends over host memory: a correct one passes every
// case, each planted bug fails the case that should see it, and a backend without device calls (the
// reference) passes by having none of them.
import {
  ALL_FEATURES,
  type AttentionBackend,
  type BackendCapabilities,
  type BackendImplementation,
  createReferenceBackend,
  type DeviceAttentionProblem,
  type DeviceImplementation,
  type DeviceTensor,
  openDeviceGate,
  referenceAttentionProblem64,
  referenceMatmul64,
  roundArrayToF16,
} from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { transpose } from '../src/cases/device.js';
import { runConformance } from '../src/index.js';

interface HostTensor extends DeviceTensor {
  readonly data: Float32Array;
}

const capabilities: BackendCapabilities = {
  features: [...ALL_FEATURES, 'deviceF16Storage'],
  limits: {},
  tolerance: { atol: 1e-6, rtol: 1e-5 },
  deterministic: true,
  engine: 'host memory standing in for a device',
  threads: 1,
  notes: [],
};

interface Bugs {
  /** Reads every layout as bhld. */
  ignoresLayout?: boolean;
  /** Keeps the caller's array instead of a copy. */
  uploadAliases?: boolean;
  /** A float16 upload keeps the float32 values. */
  f16Unrounded?: boolean;
  /** Has no matmulBuffers. */
  noMatmulBuffers?: boolean;
}

function hostDeviceBackend(bugs: Bugs = {}): AttentionBackend {
  const implementation: BackendImplementation = {
    name: 'host-device',
    capabilities: () => capabilities,
    init: async () => {},
    attention: async (problem) => {
      const r = referenceAttentionProblem64(problem);
      return {
        output: Float32Array.from(r.output),
        ...(r.lse && { lse: Float32Array.from(r.lse) }),
        ...(r.weights && { weights: Float32Array.from(r.weights) }),
      };
    },
    matmul: async ({ a, b, bias, shape }) =>
      Float32Array.from(referenceMatmul64(a, b, shape.m, shape.k, shape.n, bias)),
    memory: () => ({ hostBytes: 0, deviceBytes: 0 }),
    dispose: async () => {},
  };
  const device: DeviceImplementation<HostTensor> = {
    checkTensor(_context, _argument, value) {
      const { data, elements, dtype } = value as HostTensor;
      return { data, elements, ...(dtype !== undefined && { dtype }) };
    },
    upload: async (data, dtype) => {
      const stored = dtype === 'float16' && !bugs.f16Unrounded ? roundArrayToF16(data) : data;
      return { data: bugs.uploadAliases ? data : stored.slice(), elements: data.length, dtype };
    },
    read: async (tensor) => tensor.data.slice(0, tensor.elements),
    attention: async (problem: DeviceAttentionProblem<HostTensor>) => {
      const { batch: B, queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, keyLength: Lk } = problem.shape;
      const { headDim: D, valueDim: Dv } = problem.shape;
      const blhd = problem.layout === 'blhd' && !bugs.ignoresLayout;
      const inBhld = (t: HostTensor, H: number, L: number, d: number) =>
        blhd ? transpose(t.data, B, H, L, d, true) : t.data;
      const r = referenceAttentionProblem64({
        ...problem,
        q: inBhld(problem.q, Hq, Lq, D),
        k: inBhld(problem.k, Hkv, Lk, D),
        v: inBhld(problem.v, Hkv, Lk, Dv),
      });
      const output = Float32Array.from(r.output);
      const tensor = (data: Float32Array): HostTensor => ({ data, elements: data.length });
      return {
        output: tensor(blhd ? transpose(output, B, Hq, Lq, Dv, false) : output),
        ...(r.lse && { lse: tensor(Float32Array.from(r.lse)) }),
        ...(r.weights && { weights: tensor(Float32Array.from(r.weights)) }),
      };
    },
    matmul: async ({ a, b, bias, shape }) => {
      const out = Float32Array.from(
        referenceMatmul64(a.data, b.data, shape.m, shape.k, shape.n, bias?.data ?? null),
      );
      return { data: out, elements: out.length };
    },
    release: () => {},
  };
  const backend = openDeviceGate(implementation, device).backend;
  if (bugs.noMatmulBuffers) Reflect.deleteProperty(backend, 'matmulBuffers');
  return backend;
}

const DEVICE_CASES = [
  'device/attention',
  'device/layout-blhd',
  'device/matmul-chain',
  'device/f16-tensors',
  'device/invalid',
];

async function failedDeviceCases(bugs: Bugs): Promise<string[]> {
  const report = await runConformance(() => hostDeviceBackend(bugs), { filter: 'device/', seed: 3 });
  return report.cases.filter((c) => c.status === 'failed').map((c) => c.id);
}

describe('device/* cases', () => {
  it('a correct device backend passes every one', async () => {
    const report = await runConformance(() => hostDeviceBackend(), { filter: 'device/', seed: 3 });
    expect(report.cases.map((c) => c.id)).toEqual(DEVICE_CASES);
    for (const c of report.cases) expect(c.status, `${c.id}: ${c.message}`).toBe('passed');
  });

  it('a backend without device-resident calls passes each by having none of them', async () => {
    const report = await runConformance(createReferenceBackend, { filter: 'device/', seed: 3 });
    for (const c of report.cases) {
      expect(c.status, c.id).toBe('passed');
      expect(c.message).toMatch(/no device-resident calls/);
    }
  });

  it('a partial set of device calls fails every case', async () => {
    const report = await runConformance(() => hostDeviceBackend({ noMatmulBuffers: true }), {
      filter: 'device/',
      seed: 3,
    });
    for (const c of report.cases) {
      expect(c.status, c.id).toBe('failed');
      expect(c.message).toMatch(/all or none: .* but not matmulBuffers/);
    }
  });

  it('each planted bug fails the case that looks for it', async () => {
    expect(await failedDeviceCases({ ignoresLayout: true })).toEqual([
      'device/layout-blhd',
      'device/f16-tensors',
    ]);
    expect(await failedDeviceCases({ uploadAliases: true })).toContain('device/attention');
    expect(await failedDeviceCases({ f16Unrounded: true })).toEqual(['device/f16-tensors']);
  });
});
