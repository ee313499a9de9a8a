import {
  ALL_FEATURES,
  type AttentionBackend,
  type AttentionBackwardProblem,
  type AttentionFeature,
  type AttentionGradients,
  type AttentionProblem,
  type AttentionResult,
  AttnkitError,
  type BackendCapabilities,
  type BackendImplementation,
  createBackend,
  type FactoryOptionSchema,
  type MatmulProblem,
  validateFactoryOptions,
} from '@attnkit/spec';
import { type GlContextKind, type GlPass, type GlRuntime, type KernelOf, openGl } from './gl.js';
import { matmulKernel } from './kernels/forward.js';
import { type BackwardKernels, compileBackwardKernels, runBackward } from './run-backward.js';
import { compileForwardKernels, type ForwardKernels, planForward, runForward } from './run-forward.js';
import { runMatmul } from './run-matmul.js';

/** Sizes beyond 2^31 - 1 cannot index a GL texture or a typed array anyway. */
const MAX_OPTION = 2 ** 31 - 1;

/** Options of {@link createWebglBackend}. */
export interface WebglBackendOptions {
  /**
   * Keys per pass (the tile). Memory per pass is O(rows x tile); Lk itself is unbounded because the
   * running max and denominator carry between passes. Default 512, capped by MAX_TEXTURE_SIZE.
   */
  tileKeys?: number;
  /**
   * Largest `rows x tile` (and `rows x cols` for matmul) block one pass may hold, in elements.
   * Default 2^21 (each float texel is 16 bytes on the GPU: 32 MiB per block texture; the WebGL2
   * forward keeps four keys a texel, 8 MiB).
   */
  blockElements?: number;
  /**
   * Most query rows per pass. Smaller chunks let causal and sliding-window calls skip the key tiles
   * no row of the chunk can see. Default 256.
   */
  chunkRows?: number;
  /**
   * WebGL2 only: read q, k and v four floats a texel with texelFetch (GLSL helpers) from textures
   * packed once per call. Default true; false runs the portable kernels every GL kernel class runs
   * (what WebGL1 and headless-gl always use), re-uploading q, k and v for every pass.
   */
  vectorized?: boolean;
  /**
   * Browser context: `auto` (default) takes WebGL2 and falls back to WebGL1; `webgl` forces WebGL1
   * (gpu.js WebGLKernel), `webgl2` refuses to fall back.
   */
  context?: GlContextKind;
  /**
   * Profiling: called after every GL pass (kernel draw) with its name, output size and time in ms.
   * Each pass then waits for the GPU before and after its draw, so passes never overlap and every
   * call gets slower: for finding where a call's time goes, never for timing calls. Default none.
   */
  onPass?: (pass: GlPass) => void;
  /** Opens the GL runtime: a seam for tests (for example, to simulate a missing WebGL). */
  open?: () => Promise<GlRuntime>;
}

const OPTION_SCHEMA: FactoryOptionSchema<WebglBackendOptions> = {
  tileKeys: { kind: 'integer', min: 1, max: MAX_OPTION },
  blockElements: { kind: 'integer', min: 1, max: MAX_OPTION },
  // accepted and checked (it is public API), but attention() sizes its chunks from blockElements and
  // MAX_TEXTURE_SIZE only: the option has had no effect since before this validator (reported)
  chunkRows: { kind: 'integer', min: 1, max: MAX_OPTION },
  vectorized: { kind: 'boolean' },
  context: { kind: 'enum', values: ['auto', 'webgl2', 'webgl'] },
  onPass: { kind: 'function' },
  open: { kind: 'function' },
};

/**
 * float32 on the GPU with highp: dot products and sums accumulate in float32 (in another order than
 * the float64 reference) and GLSL exp/log are approximations of a few ulp, worse on real GPUs than on
 * SwiftShader. On SwiftShader the whole conformance suite stays under 1/20 of this (worst: a K = 256
 * matmul, 4.3e-6 absolute); the margin is for hardware exp/log. The same for every case.
 */
export const WEBGL_TOLERANCE = { atol: 1e-5, rtol: 1e-4, fudge: 2 } as const;

interface Kernels {
  forward: ForwardKernels;
  matmul: KernelOf<typeof matmulKernel>;
  backward: BackwardKernels;
}

/** Every forward feature, and the backward pass. */
const FEATURES: readonly AttentionFeature[] = [...ALL_FEATURES, 'backward'];

function baseCapabilities(): BackendCapabilities {
  return {
    features: FEATURES,
    limits: {},
    tolerance: WEBGL_TOLERANCE,
    deterministic: true,
    engine: 'gpu.js WebGL (not initialised)',
    threads: 1,
    notes: ['Capabilities are final after init(): the GL context decides the kernel class and limits.'],
  };
}

/** The BackendImplementation; exported for tests that inspect the runtime. */
export class WebglImplementation implements BackendImplementation {
  readonly name = 'webgl';
  // f16 storage: the textures are float32 either way; the kernels run on the inputs the gate rounded (the spec's definition).
  readonly f16Storage = 'rounded-on-host';
  private runtime: GlRuntime | null = null;
  private kernels: Kernels | null = null;
  private caps: BackendCapabilities = baseCapabilities();
  private readonly tileKeys: number;
  private readonly blockElements: number;
  private readonly vectorizedOption: boolean;
  private vectorized = false;
  private readonly open: () => Promise<GlRuntime>;
  private hostBytes = 0;

  constructor(given?: WebglBackendOptions) {
    const options = validateFactoryOptions('createWebglBackend', given, OPTION_SCHEMA);
    // 512: fewer passes than 256 (each a draw per kernel), measured 5-20% faster on SwiftShader at D 64
    this.tileKeys = options.tileKeys ?? 512;
    this.blockElements = options.blockElements ?? 1 << 21;
    this.vectorizedOption = options.vectorized ?? true;
    const context = options.context ?? 'auto';
    const onPass = options.onPass;
    this.open = options.open ?? (() => openGl({ context, ...(onPass && { onPass }) }));
  }

  /** The GL runtime after init (kernel class, renderer), or null. */
  get gl(): GlRuntime | null {
    return this.runtime;
  }

  capabilities(): BackendCapabilities {
    return this.caps;
  }

  async init(): Promise<void> {
    if (this.runtime !== null) return;
    const runtime = await this.open();
    const vectorized = this.vectorizedOption && runtime.kernelClass === 'WebGL2Kernel';
    try {
      this.kernels = {
        forward: compileForwardKernels(runtime, vectorized),
        matmul: runtime.kernel(matmulKernel),
        backward: compileBackwardKernels(runtime),
      };
    } catch (error) {
      await runtime.destroy();
      throw error;
    }
    this.runtime = runtime;
    this.vectorized = vectorized;
    const max = runtime.maxTextureSize;
    this.caps = {
      features: FEATURES,
      // Dv + 1 columns (values and the denominator) share one texture row.
      limits: { valueDim: max - 1 },
      tolerance: WEBGL_TOLERANCE,
      deterministic: true,
      engine: `gpu.js ${runtime.kernelClass} on ${runtime.renderer}`,
      threads: 1,
      notes: [
        `${runtime.version}; MAX_TEXTURE_SIZE ${max}. Keys are processed in tiles of ${Math.min(this.tileKeys, max)} ` +
          'with a running max and sum, so Lk is not bounded by the texture size.',
        'Single precision (float32) with highp shaders; gpu.js CPU/webasm fallback is refused, never used.',
        "precision 'f16-storage': q, k and v rounded to binary16 on the host by the gate (withF16StoredInputs), then uploaded as float32 textures: the spec's result, no memory saved",
      ],
    };
  }

  private ready(): { runtime: GlRuntime; kernels: Kernels } {
    if (this.runtime === null || this.kernels === null) {
      throw new AttnkitError('unavailable', 'webgl: backend used before init() resolved', {
        argument: 'backend',
        expected: 'an initialised backend',
        actual: 'not initialised',
      });
    }
    return { runtime: this.runtime, kernels: this.kernels };
  }

  async attention(problem: AttentionProblem): Promise<AttentionResult> {
    const { runtime, kernels } = this.ready();
    const plan = planForward(
      problem,
      runtime.maxTextureSize,
      this.tileKeys,
      this.blockElements,
      this.vectorized,
    );
    // with f16 storage, the gate's rounded copies of q, k and v are host memory this call holds too
    const rounded =
      problem.precision === 'f16-storage'
        ? problem.q.byteLength + problem.k.byteLength + problem.v.byteLength
        : 0;
    this.hostBytes = plan.hostBytes + rounded;
    try {
      return runForward(runtime, kernels.forward, problem, plan, this.vectorized);
    } finally {
      this.hostBytes = 0;
    }
  }

  async matmul(problem: MatmulProblem): Promise<Float32Array> {
    const { runtime, kernels } = this.ready();
    return runMatmul(runtime, kernels.matmul, problem, this.blockElements);
  }

  async attentionBackward(problem: AttentionBackwardProblem): Promise<AttentionGradients> {
    const { runtime, kernels } = this.ready();
    const { shape, keyMask } = problem;
    // Host copies held during the call: the float key mask, the per-row table, the per-head table
    // and (WebGL2) q, k, v, dO padded to whole texels.
    const { batch: B, queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, keyLength: Lk } = shape;
    const pad = (n: number) => (this.vectorized && n % 4 !== 0 ? Math.ceil(n / 4) * 4 : 0);
    const rowsQ = B * Hq * Lq;
    const rowsK = B * Hkv * Lk;
    this.hostBytes =
      4 *
      ((keyMask?.length ?? 0) +
        rowsQ * 8 +
        Hq * 4 +
        (rowsQ + rowsK) * (pad(shape.headDim) + pad(shape.valueDim)));
    try {
      return runBackward(runtime, kernels.backward, problem, this.blockElements, this.vectorized);
    } finally {
      this.hostBytes = 0;
    }
  }

  memory() {
    return { hostBytes: this.hostBytes, deviceBytes: this.runtime?.deviceBytes() ?? 0 };
  }

  async dispose(): Promise<void> {
    const runtime = this.runtime;
    this.runtime = null;
    this.kernels = null;
    if (runtime !== null) await runtime.destroy();
  }
}

/**
 * Creates the WebGL backend. It acquires nothing until `init()` (or the first call); `init()` rejects
 * with `unavailable` and the reason where no GL kernel class of gpu.js can run.
 */
export function createWebglBackend(options?: WebglBackendOptions): AttentionBackend {
  return createBackend(new WebglImplementation(options));
}
