import { deviceError } from './errors.js';
import { type AttentionVariant, attentionShader, matmulShader, weightsShader } from './kernels.js';
import { matmulTile } from './planning.js';
import type { DeviceState } from './state.js';

export interface Pipelines {
  attention: GPUComputePipeline;
  weights: GPUComputePipeline | null;
}

/**
 * Pipelines per device and variant, shared by every backend on that device (a caller-owned device
 * used by several backends compiles each variant once). Weak: they go with the device.
 */
const PIPELINES = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();

export function pipeline(s: DeviceState, key: string, code: string): Promise<GPUComputePipeline> {
  const { device } = s;
  let cache = PIPELINES.get(device);
  if (cache === undefined) {
    cache = new Map();
    PIPELINES.set(device, cache);
  }
  const cached = cache.get(key);
  if (cached !== undefined) return cached;
  const created = (async () => {
    const module = device.createShaderModule({ code, label: `attnkit:${key}` });
    try {
      return await device.createComputePipelineAsync({
        layout: 'auto',
        compute: { module, entryPoint: 'main' },
        label: `attnkit:${key}`,
      });
    } catch (error) {
      let detail = '';
      try {
        const info = await module.getCompilationInfo();
        detail = info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join('; ');
      } catch {
        // compilation info is a diagnostic extra; the pipeline error below is what matters
      }
      throw deviceError(`webgpu: pipeline ${key} failed: ${String(error)} ${detail}`, error);
    }
  })();
  cache.set(key, created);
  created.catch(() => cache.delete(key));
  return created;
}

export async function attentionPipelines(
  s: DeviceState,
  v: AttentionVariant,
  weights: boolean,
): Promise<Pipelines> {
  const key = JSON.stringify(v);
  const [attention, w] = await Promise.all([
    pipeline(s, `attention${key}`, attentionShader(v)),
    weights ? pipeline(s, `weights${key}`, weightsShader(v)) : Promise.resolve(null),
  ]);
  return { attention, weights: w };
}

export function matmulPipeline(s: DeviceState, bias: boolean): Promise<GPUComputePipeline> {
  const tile = matmulTile(s);
  return pipeline(s, `matmul:${tile}:${bias}`, matmulShader(tile, bias));
}
