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
  kvHeadFor,
  type MatmulProblem,
  queryPosition,
  validateFactoryOptions,
  visibleKeyRange,
} from '@attnkit/spec';
import {
  type GlContextKind,
  type GlInput,
  type GlKernel,
  type GlRuntime,
  type GlTexture,
  openGl,
} from './gl.js';
import {
  rowMaxKernel as backwardRowMaxKernel,
  rowSumKernel as backwardRowSumKernel,
  delta4Kernel,
  deltaKernel,
  gradBiasKernel,
  gradKV4Kernel,
  gradKVKernel,
  gradQ4Kernel,
  gradQKernel,
  rowMax4Kernel,
  rowSum4Kernel,
  sinkTermsKernel,
} from './kernels/backward.js';
import {
  accumulateKernel,
  finalizeKernel,
  initAccKernel,
  initMaxKernel,
  matmulKernel,
  packKernel,
  probsKernel,
  ROW_INFO,
  rowMaxKernel,
  scoresKernel,
  weightsKernel,
} from './kernels/forward.js';
import { type BackwardKernels, runBackward } from './run-backward.js';

/** Sizes beyond 2^31 - 1 cannot index a GL texture or a typed array anyway. */
const MAX_OPTION = 2 ** 31 - 1;

/** Options of {@link createWebglBackend}. */
export interface WebglBackendOptions {
  /**
   * Keys per pass (the tile). Memory per pass is O(rows x tile); Lk itself is unbounded because the
   * running max and denominator carry between passes. Default 256, capped by MAX_TEXTURE_SIZE.
   */
  tileKeys?: number;
  /**
   * Largest `rows x tile` (and `rows x cols` for matmul) block one pass may hold, in elements.
   * Default 2^21 (each float texel is 16 bytes on the GPU: 32 MiB per block texture).
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
  scores: GlKernel;
  /** Two instances each, alternated by tile: see init(). */
  rowMax: readonly [GlKernel, GlKernel];
  probs: GlKernel;
  accumulate: readonly [GlKernel, GlKernel];
  initMax: GlKernel;
  initAcc: GlKernel;
  finalize: GlKernel;
  weights: GlKernel;
  matmul: GlKernel;
  pack: GlKernel;
  backward: BackwardKernels;
}

/** Every forward feature, and the backward pass. */
const FEATURES: readonly AttentionFeature[] = [...ALL_FEATURES, 'backward'];

const DUMMY = new Float32Array(1);

/**
 * Copies `[rows, from]` into `[rows, to]` with zero padding (or returns it when no padding is needed);
 * `onePastEnd` puts a 1 in column `from` of every row.
 */
function padRows(data: Float32Array, from: number, to: number, onePastEnd = false): Float32Array {
  if (from === to) return data;
  const rows = data.length / from;
  const out = new Float32Array(rows * to);
  for (let r = 0; r < rows; r++) {
    out.set(data.subarray(r * from, (r + 1) * from), r * to);
    if (onePastEnd) out[r * to + from] = 1;
  }
  return out;
}

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
    this.tileKeys = options.tileKeys ?? 256;
    this.blockElements = options.blockElements ?? 1 << 21;
    this.vectorizedOption = options.vectorized ?? true;
    const context = options.context ?? 'auto';
    this.open = options.open ?? (() => openGl({ context }));
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
        scores: runtime.kernel(scoresKernel(vectorized)),
        // A gpu.js kernel that reads its own previous output swaps in a texture it remembers from an
        // earlier run (of any earlier shape); the running max and accumulator therefore alternate
        // between two compiled instances so no kernel ever reads its own output.
        rowMax: [runtime.kernel(rowMaxKernel(vectorized)), runtime.kernel(rowMaxKernel(vectorized))],
        probs: runtime.kernel(probsKernel(vectorized)),
        accumulate: [
          runtime.kernel(accumulateKernel(vectorized)),
          runtime.kernel(accumulateKernel(vectorized)),
        ],
        initMax: runtime.kernel(initMaxKernel),
        initAcc: runtime.kernel(initAccKernel(vectorized)),
        finalize: runtime.kernel(finalizeKernel(vectorized)),
        weights: runtime.kernel(weightsKernel(vectorized)),
        matmul: runtime.kernel(matmulKernel),
        pack: runtime.kernel(packKernel),
        backward: {
          rowMax: runtime.kernel(backwardRowMaxKernel),
          rowSum: runtime.kernel(backwardRowSumKernel),
          rowMax4: runtime.kernel(rowMax4Kernel),
          rowSum4: runtime.kernel(rowSum4Kernel),
          delta: runtime.kernel(deltaKernel),
          delta4: runtime.kernel(delta4Kernel),
          gradQ: runtime.kernel(gradQKernel),
          gradKV: runtime.kernel(gradKVKernel),
          gradQ4: runtime.kernel(gradQ4Kernel),
          gradKV4: runtime.kernel(gradKV4Kernel),
          gradBias: runtime.kernel(gradBiasKernel),
          sinkTerms: runtime.kernel(sinkTermsKernel),
        },
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
    const { shape } = problem;
    const {
      batch: B,
      queryHeads: Hq,
      kvHeads: Hkv,
      queryLength: Lq,
      keyLength: Lk,
      headDim: D,
      valueDim: Dv,
    } = shape;
    const rows = B * Hq * Lq;
    const max = runtime.maxTextureSize;
    const tile = Math.max(1, Math.min(this.tileKeys, Lk, max));
    const chunkRows = Math.max(
      1,
      Math.min(rows, max, Math.floor(this.blockElements / Math.max(tile, Dv + 1))),
    );
    const negInf = Number.NEGATIVE_INFINITY;

    const output = new Float32Array(rows * Dv);
    const lse = problem.returnLse ? new Float32Array(rows) : undefined;
    const weights = problem.returnWeights ? new Float32Array(rows * Lk) : undefined;

    const released: GlTexture[] = [];
    const release = (t: GlTexture | null) => {
      if (t !== null) released.push(t);
    };
    const flush = () => {
      for (const t of released.splice(0)) runtime.release(t);
    };
    // q, k and v on the device for the whole call; released in the finally below.
    const held: GlTexture[] = [];

    // WebGL2 reads q and k a texel (4 floats) at a time: rows padded to a multiple of 4 with zeros.
    const webgl2 = this.vectorized;
    const width = webgl2 ? Math.ceil(D / 4) * 4 : D;
    const toDevice = (data: Float32Array, columns: number, rowCount: number): GlInput | GlTexture => {
      const uploaded = runtime.input(data, columns, rowCount);
      if (!webgl2) return uploaded;
      const texels = Math.ceil(data.length / 4);
      const texWidth = Math.min(texels, max);
      const packed = kernels.pack.run([texWidth, Math.ceil(texels / texWidth)], [uploaded, texWidth, texels]);
      held.push(packed);
      return packed;
    };
    const q = toDevice(padRows(problem.q, D, width), width, B * Hq * Lq);
    const k = toDevice(padRows(problem.k, D, width), width, B * Hkv * Lk);
    const dotLength = webgl2 ? width / 4 : D;
    // Vectorized: value rows padded to 4 * groups columns, a 1 in column Dv (the denominator
    // accumulates as one more value column), zeros after it.
    const groups = Math.ceil((Dv + 1) / 4);
    const v = webgl2
      ? toDevice(padRows(problem.v, Dv, groups * 4, true), groups * 4, B * Hkv * Lk)
      : toDevice(problem.v, Dv, B * Hkv * Lk);
    const accWidth = webgl2 ? groups : Dv + 1;
    // Vectorized kernels read bias and mask from packed textures (the dummy too: a kernel's argument
    // types must not change between calls, or gpu.js rebuilds it).
    let bias = toDevice(DUMMY, 1, 1);
    let biasKeyStride = 0;
    if (problem.bias !== null) {
      const [, , , lkDim] = problem.bias.shape;
      bias = toDevice(problem.bias.data, lkDim, problem.bias.data.length / lkDim);
      biasKeyStride = lkDim === 1 ? 0 : 1;
    }
    const keyMask =
      problem.keyMask === null
        ? toDevice(DUMMY, 1, 1)
        : toDevice(
            Float32Array.from(problem.keyMask, (x) => (x !== 0 ? 1 : 0)),
            Lk,
            B,
          );
    this.hostBytes = (problem.keyMask?.length ?? 0) * 4 + chunkRows * ROW_INFO.width * 4;

    try {
      for (let r0 = 0; r0 < rows; r0 += chunkRows) {
        const rc = Math.min(chunkRows, rows - r0);
        const info = new Float32Array(rc * ROW_INFO.width);
        let firstKey = Lk;
        let lastKey = 0;
        for (let rr = 0; rr < rc; rr++) {
          const row = r0 + rr;
          const i = row % Lq;
          const bh = (row - i) / Lq;
          const h = bh % Hq;
          const b = (bh - h) / Hq;
          const g = kvHeadFor(h, Hq, Hkv);
          const position = queryPosition(i, Lq, Lk);
          const base = rr * ROW_INFO.width;
          info[base + ROW_INFO.qRow] = row;
          info[base + ROW_INFO.kvBase] = (b * Hkv + g) * Lk;
          info[base + ROW_INFO.position] = position;
          info[base + ROW_INFO.batch] = b;
          if (problem.bias !== null) {
            const [sb, sh, si] = problem.bias.strides;
            const lkDim = problem.bias.shape[3];
            info[base + ROW_INFO.biasRow] = (b * sb + h * sh + i * si) / lkDim;
          }
          info[base + ROW_INFO.slope] = problem.alibiSlopes === null ? 0 : problem.alibiSlopes[h];
          info[base + ROW_INFO.sink] = problem.sinks === null ? negInf : problem.sinks[h];
          const range = visibleKeyRange(position, Lk, problem.causal, problem.slidingWindow);
          if (range.end > range.start) {
            firstKey = Math.min(firstKey, range.start);
            lastKey = Math.max(lastKey, range.end);
          }
        }
        const rowInfo = runtime.input(info, ROW_INFO.width, rc);
        let m = kernels.initMax.run([1, rc], [rowInfo]);
        let acc = kernels.initAcc.run([accWidth, rc], [rowInfo, Dv, negInf]);
        // Tiles wholly outside every row's causal/window range are skipped: they hold only -inf logits.
        const tileStarts: number[] = [];
        for (let j0 = Math.floor(firstKey / tile) * tile; j0 < lastKey; j0 += tile) tileStarts.push(j0);
        const logitArgs = (j0: number) => [
          bias,
          keyMask,
          rowInfo,
          j0,
          Lk,
          biasKeyStride,
          problem.bias !== null ? 1 : 0,
          problem.keyMask !== null ? 1 : 0,
          problem.causal ? 1 : 0,
          problem.slidingWindow ?? 0,
          negInf,
        ];
        const scoreArgs = (j0: number) => [
          q,
          k,
          ...logitArgs(j0),
          dotLength,
          problem.scale,
          problem.softcap ?? 0,
        ];
        for (const [n, j0] of tileStarts.entries()) {
          const s = kernels.scores.run([tile, rc], scoreArgs(j0));
          const mNew = kernels.rowMax[n % 2].run([1, rc], [s, m, tile, ...logitArgs(j0)]);
          const p = kernels.probs.run([tile, rc], [s, mNew, ...logitArgs(j0)]);
          const accNew = kernels.accumulate[n % 2].run(
            [accWidth, rc],
            [p, v, acc, m, mNew, rowInfo, j0, tile, webgl2 ? groups : Dv, negInf],
          );
          release(s);
          release(p);
          release(m);
          release(acc);
          flush();
          m = mNew;
          acc = accNew;
        }
        const done = kernels.finalize.run([Dv + 1, rc], [acc, m, Dv, groups, negInf]);
        const values = runtime.read(done);
        release(done);
        for (let rr = 0; rr < rc; rr++) {
          const from = rr * (Dv + 1);
          output.set(values.subarray(from, from + Dv), (r0 + rr) * Dv);
          if (lse) lse[r0 + rr] = values[from + Dv];
        }
        if (weights) {
          for (const j0 of tileStarts) {
            const s = kernels.scores.run([tile, rc], scoreArgs(j0));
            const w = kernels.weights.run([tile, rc], [s, m, acc, Dv, groups, ...logitArgs(j0)]);
            const block = runtime.read(w);
            release(s);
            release(w);
            flush();
            const width = Math.min(tile, Lk - j0);
            for (let rr = 0; rr < rc; rr++) {
              weights.set(block.subarray(rr * tile, rr * tile + width), (r0 + rr) * Lk + j0);
            }
          }
        }
        release(m);
        release(acc);
        flush();
      }
    } finally {
      flush();
      for (const t of held) runtime.release(t);
      this.hostBytes = 0;
    }
    return { output, ...(lse && { lse }), ...(weights && { weights }) };
  }

  async matmul(problem: MatmulProblem): Promise<Float32Array> {
    const { runtime, kernels } = this.ready();
    const { m, k: K, n } = problem.shape;
    const max = runtime.maxTextureSize;
    const cols = Math.min(n, max);
    const rowsPer = Math.max(1, Math.min(m, max, Math.floor(this.blockElements / cols)));
    const a = runtime.input(problem.a, K, m);
    const b = runtime.input(problem.b, n, K);
    const bias = problem.bias === null ? runtime.input(DUMMY, 1, 1) : runtime.input(problem.bias, n, 1);
    const out = new Float32Array(m * n);
    for (let m0 = 0; m0 < m; m0 += rowsPer) {
      const rc = Math.min(rowsPer, m - m0);
      for (let n0 = 0; n0 < n; n0 += cols) {
        const cc = Math.min(cols, n - n0);
        const t = kernels.matmul.run([cc, rc], [a, b, bias, m0, n0, K, problem.bias === null ? 0 : 1]);
        const block = runtime.read(t);
        runtime.release(t);
        for (let r = 0; r < rc; r++) out.set(block.subarray(r * cc, (r + 1) * cc), (m0 + r) * n + n0);
      }
    }
    return out;
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
