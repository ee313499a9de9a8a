/**
 * The cpu backend's factory and lifecycle: options validated once, the scratch arena and the open KV
 * caches owned here, every call handed to a kernel in `kernels/` through the spec's gate.
 */
import {
  ALL_FEATURES,
  type AttentionBackend,
  type BackendCapabilities,
  createBackend,
  type FactoryOptionSchema,
  validateFactoryOptions,
} from '@attnkit/spec';
import { blockedAttention } from './kernels/attention.js';
import { blockedBackward } from './kernels/backward.js';
import { CpuKVCache } from './kernels/cache.js';
import { blockedMatmul } from './kernels/matmul.js';
import { Scratch } from './scratch.js';

/** Options of {@link createCpuBackend}. Tile sizes change speed only, never results beyond rounding. */
export interface CpuBackendOptions {
  /**
   * Query rows per head in one block. Default: `min(32, floor(64 / G))` where `G = Hq / Hkv`, so a
   * block holds about 64 rows across the heads that share a K/V tile.
   */
  queryBlock?: number;
  /** Keys per tile. Default 64 (a 64 x 64 float32 K tile is 16 KiB: it stays in L1). */
  keyBlock?: number;
}

/**
 * The declared tolerance: float64 inside, one rounding to float32 at the end, so no multiple of the
 * naive float32 error is needed (`fudge` 0: it passes every `rounding/` case on atol/rtol alone).
 */
export const CPU_TOLERANCE = { atol: 1e-6, rtol: 1e-5, fudge: 0 } as const;

const DEFAULT_KEY_BLOCK = 64;
/** Tiles beyond this only cost memory: the scratch is `rows * keyBlock` float64. */
const MAX_BLOCK = 4096;

const OPTION_SCHEMA: FactoryOptionSchema<CpuBackendOptions> = {
  queryBlock: { kind: 'integer', min: 1, max: MAX_BLOCK },
  keyBlock: { kind: 'integer', min: 1, max: MAX_BLOCK },
};

/**
 * Creates the pure TypeScript backend. It holds no resources until a call needs scratch memory;
 * `dispose()` drops that memory. Single-threaded and deterministic.
 *
 * @example
 * ```ts
 * const backend = createCpuBackend();
 * const { output } = await backend.attention({ q, k, v, shape }, { causal: true });
 * await backend.dispose();
 * ```
 */
export function createCpuBackend(options?: CpuBackendOptions): AttentionBackend {
  const checked = validateFactoryOptions('createCpuBackend', options, OPTION_SCHEMA);
  const sizes = {
    queryBlock: checked.queryBlock ?? null,
    keyBlock: checked.keyBlock ?? DEFAULT_KEY_BLOCK,
  };
  const scratch = new Scratch();
  /** Open KV caches: their pages count in memory(); each removes itself when disposed. */
  const caches = new Set<CpuKVCache>();
  const cacheBytes = () => {
    let bytes = 0;
    for (const cache of caches) bytes += cache.bytes();
    return bytes;
  };
  const capabilities: BackendCapabilities = {
    features: [...ALL_FEATURES, 'kvCache', 'backward'],
    // No limits beyond the spec's own element cap, which validation already enforces on every tensor
    limits: {},
    tolerance: CPU_TOLERANCE,
    deterministic: true,
    engine: `TypeScript, blocked online softmax (float64 accumulation, key tile ${sizes.keyBlock})`,
    threads: 1,
    notes: [
      "precision 'f16-storage': q, k and v rounded to binary16 on the host by the gate (withF16StoredInputs), then the usual kernel: the spec's result, no memory saved",
    ],
  };
  return createBackend({
    name: 'cpu',
    capabilities: () => capabilities,
    init: async () => {},
    // f16 storage: the kernel runs on the inputs the gate rounded (the spec's definition); no binary16 path of its own.
    f16Storage: 'rounded-on-host',
    attention: async (problem) => blockedAttention(problem, scratch, sizes),
    // float64, four query rows at a time, from its own float64 statistics (backward.ts says why)
    attentionBackward: async (problem) => blockedBackward(problem),
    matmul: async (problem) => blockedMatmul(problem, scratch),
    createKVCache: (config) => {
      const cache = new CpuKVCache(config, (disposed) => caches.delete(disposed));
      caches.add(cache);
      return cache;
    },
    memory: () => ({ hostBytes: scratch.bytes() + cacheBytes(), deviceBytes: 0 }),
    // The gate disposes every open cache before this runs.
    dispose: async () => scratch.release(),
  });
}

/** Zero-argument factory, the module's default export (what the conformance CLI imports). */
export default function createDefaultCpuBackend(): AttentionBackend {
  return createCpuBackend();
}
