import type { KVCachePrecision } from '@attnkit/spec';
import { type Binding, bindGroupLayoutEntries } from './bindings.js';
import { deviceError } from './errors.js';
import { attentionShader } from './kernels/attention.js';
import {
  type BackwardVariant,
  BIAS_GRAD_BINDINGS,
  DELTA_BINDINGS,
  DKDV_BINDINGS,
  DQ_BINDINGS,
  SINKS_GRAD_BINDINGS,
} from './kernels/backward-common.js';
import { biasGradShader } from './kernels/bias-grad.js';
import {
  CACHE_MERGE_BINDINGS,
  cacheMergeShader,
  cachePartialBindings,
  cachePartialShader,
} from './kernels/cache-attention.js';
import { deltaShader } from './kernels/delta.js';
import { dkdvShader } from './kernels/dkdv.js';
import { dqShader } from './kernels/dq.js';
import { F16_ROWS_BINDINGS, padF16RowsShader } from './kernels/f16-rows.js';
import { tiledAttentionShader } from './kernels/flash-attention.js';
import { matmulShader } from './kernels/matmul.js';
import {
  ATTENTION_BINDINGS,
  type AttentionVariant,
  type LogitTerms,
  MATMUL_BIAS_BINDINGS,
  MATMUL_BINDINGS,
  WEIGHTS_BINDINGS,
} from './kernels/shared.js';
import { sinksGradShader } from './kernels/sinks-grad.js';
import { weightsShader } from './kernels/weights.js';
import { type ForwardVariant, matmulTile } from './planning.js';
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
/** The same pipelines once compiled, for callers that must encode in the caller's tick when they can. */
const COMPILED = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

/**
 * The compiled pipeline of `code`, cached per device under `key`. Its bind group layout is generated
 * from `table`, the binding table that also generated the code's declarations and the host's bind
 * group entries, so a variant that compiles an option's code out (and leaves its binding unused) still
 * takes the same bind group; `layout: 'auto'` would drop that binding.
 */
export function pipeline(
  s: DeviceState,
  key: string,
  code: string,
  table: readonly Binding[],
): Promise<GPUComputePipeline> {
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
      const layout = device.createPipelineLayout({
        bindGroupLayouts: [device.createBindGroupLayout({ entries: bindGroupLayoutEntries(table) })],
      });
      return await device.createComputePipelineAsync({
        layout,
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
  created.then(
    (compiled) => {
      let done = COMPILED.get(device);
      if (done === undefined) {
        done = new Map();
        COMPILED.set(device, done);
      }
      done.set(key, compiled);
    },
    () => cache.delete(key),
  );
  return created;
}

/** The forward's pipeline (tiled or scalar, as the variant says) and, if asked, the weights pass's. */
export async function attentionPipelines(
  s: DeviceState,
  v: ForwardVariant,
  weights: boolean,
): Promise<Pipelines> {
  const { tiled, precision, ...scalar } = v;
  const key = `${precision}${JSON.stringify(scalar)}`;
  const [attention, w] = await Promise.all([
    tiled === null
      ? pipeline(s, `attention:${key}`, attentionShader(scalar, precision), ATTENTION_BINDINGS)
      : pipeline(
          s,
          `attention-tiled:${precision}${JSON.stringify(tiled)}`,
          tiledAttentionShader(tiled, precision),
          ATTENTION_BINDINGS,
        ),
    weights
      ? pipeline(s, `weights:${key}`, weightsShader(scalar, precision), WEIGHTS_BINDINGS)
      : Promise.resolve(null),
  ]);
  return { attention, weights: w };
}

export function matmulPipeline(s: DeviceState, bias: boolean): Promise<GPUComputePipeline> {
  const tile = matmulTile(s);
  return pipeline(
    s,
    `matmul:${tile}:${bias}`,
    matmulShader(tile, bias),
    bias ? MATMUL_BIAS_BINDINGS : MATMUL_BINDINGS,
  );
}

/** Invocations per workgroup of the float16 row padding (kernels/f16-rows.ts): one per word, no tiles. */
export const F16_ROWS_WG = 64;

/** The float16 row padding that attention on odd-sized float16 tensors runs first (kernels/f16-rows.ts). */
export function f16RowsPipeline(s: DeviceState): Promise<GPUComputePipeline> {
  return pipeline(s, `f16-rows:${F16_ROWS_WG}`, padF16RowsShader(F16_ROWS_WG), F16_ROWS_BINDINGS);
}

export interface BackwardPipelines {
  delta: GPUComputePipeline;
  dkdv: GPUComputePipeline;
  dq: GPUComputePipeline;
  biasGrad: GPUComputePipeline;
  sinksGrad: GPUComputePipeline;
}

/**
 * Every backward pipeline of a variant for calls with these logit terms (the other options travel
 * in the uniform block), so a prepared backward compiles nothing on its first call. The dQ and
 * dK/dV kernels have a pipeline per {@link LogitTerms}, as the tiled forward: SwiftShader pays for
 * the softcap, bias and ALiBi code even where a flag switches it off (measured: the backward at
 * N 1024, H 1, D 64, causal took 0.53 s with `'dot'` against 0.63 s with `'all'`).
 */
export async function backwardPipelines(
  s: DeviceState,
  v: BackwardVariant,
  terms: LogitTerms,
): Promise<BackwardPipelines> {
  // Each tiled kernel is keyed by what its code depends on, so a change of the other's tiles reuses it.
  const sizes = { headDim: v.headDim, valueDim: v.valueDim, wg: v.wg, terms };
  const [delta, dkdv, dq, biasGrad, sinksGrad] = await Promise.all([
    pipeline(s, `backward-delta:${v.wg}`, deltaShader(v.wg), DELTA_BINDINGS),
    pipeline(
      s,
      `backward-dkdv${JSON.stringify({ ...sizes, tiles: v.kv })}`,
      dkdvShader(v, terms),
      DKDV_BINDINGS,
    ),
    pipeline(s, `backward-dq${JSON.stringify({ ...sizes, tiles: v.q })}`, dqShader(v, terms), DQ_BINDINGS),
    pipeline(s, `backward-bias:${v.wg}`, biasGradShader(v.wg), BIAS_GRAD_BINDINGS),
    pipeline(s, `backward-sinks:${v.wg}`, sinksGradShader(v.wg), SINKS_GRAD_BINDINGS),
  ]);
  return { delta, dkdv, dq, biasGrad, sinksGrad };
}

export interface CachePipelines {
  partial: GPUComputePipeline;
  merge: GPUComputePipeline;
}

const cacheKeys = (v: AttentionVariant, precision: KVCachePrecision) => ({
  partial: `cache-partial:${precision}${JSON.stringify(v)}`,
  merge: `cache-merge:${v.wg}`,
});

/** The KV cache's split-K partial kernel and its merge (kernels/cache-attention.ts) for a variant and storage. */
export async function cachePipelines(
  s: DeviceState,
  v: AttentionVariant,
  precision: KVCachePrecision = 'f32',
): Promise<CachePipelines> {
  const keys = cacheKeys(v, precision);
  const [partial, merge] = await Promise.all([
    pipeline(s, keys.partial, cachePartialShader(v, precision), cachePartialBindings(precision)),
    pipeline(s, keys.merge, cacheMergeShader(v.wg), CACHE_MERGE_BINDINGS),
  ]);
  return { partial, merge };
}

/** {@link cachePipelines} when both are already compiled, else `null` (nothing is started). */
export function compiledCachePipelines(
  s: DeviceState,
  v: AttentionVariant,
  precision: KVCachePrecision = 'f32',
): CachePipelines | null {
  const done = COMPILED.get(s.device);
  const keys = cacheKeys(v, precision);
  const partial = done?.get(keys.partial);
  const merge = done?.get(keys.merge);
  return partial === undefined || merge === undefined ? null : { partial, merge };
}
