import {
  ALL_FEATURES,
  type AttentionBackend,
  type AttentionOptions,
  type AttentionProblem,
  type AttentionResult,
  type AttentionShape,
  AttnkitError,
  type BackendCapabilities,
  type BackendImplementation,
  type BackendMemory,
  createBackend,
  describeValue,
  type LayerInputs,
  type MatmulProblem,
  type MatmulShape,
  type ResolvedOptions,
  type ResolvedShape,
  resolveOptions,
  resolveShape,
  validateLayer,
} from '@attnkit/spec';
import { type AcquiredDevice, acquireDevice, type DeviceOptions } from './device.js';
import {
  ATTENTION_PARAM_FIELDS,
  ATTENTION_PARAMS_BYTES,
  type AttentionParamField,
  type AttentionVariant,
  attentionShader,
  Flags,
  MATMUL_PARAMS_BYTES,
  matmulShader,
  weightsShader,
} from './kernels.js';
import { BufferPool, MAP_READ_MODE, STORAGE_USAGE, Usage } from './pool.js';

/** Options of {@link createWebGpuBackend}. */
export interface WebGpuBackendOptions extends DeviceOptions {
  /** Invocations per attention workgroup (default 64, capped by the device). */
  workgroupSize?: number;
}

/**
 * Memory layout of q/k/v/output buffers on the device path. `bhld` is the spec's `[B, H, L, D]`;
 * `blhd` is `[B, L, H, D]`, what a projection `[B*L, H*D]` produces, so matmul output feeds
 * attention (and attention output feeds the output projection) without a transpose.
 */
export type TensorLayout = 'bhld' | 'blhd';

/** Device-resident attention inputs: buffers made on this backend's device. */
export interface GpuAttentionInputs {
  q: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  shape: AttentionShape;
  /** Layout of q, k, v and the returned output. Default `bhld`. */
  layout?: TensorLayout;
}

/** Device-resident attention results. The buffers belong to the backend: `release()` them when done. */
export interface GpuAttentionResult {
  output: GPUBuffer;
  lse?: GPUBuffer;
  weights?: GPUBuffer;
}

/** Device-resident matmul inputs. */
export interface GpuMatmulInputs {
  a: GPUBuffer;
  b: GPUBuffer;
  bias?: GPUBuffer;
  shape: MatmulShape;
}

/** The WebGPU backend: the spec contract plus a device-resident path. */
export interface WebGpuBackend extends AttentionBackend {
  /** The device in use (after `init()`). */
  readonly device: GPUDevice;
  /** Attention on buffers already on the device; nothing is read back. */
  attentionBuffers(inputs: GpuAttentionInputs, options?: AttentionOptions): Promise<GpuAttentionResult>;
  /** `a @ b (+ bias)` on device buffers; returns a backend buffer. */
  matmulBuffers(inputs: GpuMatmulInputs): Promise<GPUBuffer>;
  /** The multi-head attention layer, every projection and the attention on the device, one readback. */
  multiHeadAttention(inputs: LayerInputs, options?: AttentionOptions): Promise<AttentionResult>;
  /** Copies a `Float32Array` into a new backend buffer (release it when done). */
  upload(data: Float32Array): Promise<GPUBuffer>;
  /** Reads `elements` floats from the start of a buffer. */
  read(buffer: GPUBuffer, elements: number): Promise<Float32Array>;
  /** Hands a buffer returned by this backend back to its pool. */
  release(buffer: GPUBuffer): void;
}

interface Pipelines {
  attention: GPUComputePipeline;
  weights: GPUComputePipeline | null;
}

interface Strides {
  b: number;
  h: number;
  l: number;
}

interface DeviceState {
  acquired: AcquiredDevice;
  device: GPUDevice;
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
}

const NAME = 'webgpu';

/**
 * Pipelines per device and variant, shared by every backend on that device (a caller-owned device
 * used by several backends compiles each variant once). Weak: they go with the device.
 */
const PIPELINES = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();
const NAN_BITS = 0x7fc00000;

/**
 * Measured against the float64 reference on SwiftShader and Chromium's WebGPU: f32 accumulation plus
 * WGSL's `exp` (a few ULP, growing with |x|) and `tanh` for softcap.
 */
const TOLERANCE = { atol: 2e-5, rtol: 2e-4 } as const;

function deviceError(message: string, cause?: unknown): AttnkitError {
  return new AttnkitError('device', message, {
    argument: 'device',
    expected: 'a working GPUDevice',
    actual: message,
    ...(cause !== undefined && { cause }),
  });
}

function unsupported(argument: string, expected: string, actual: number | string, context = 'attention') {
  return new AttnkitError(
    'unsupported',
    `${context}: ${argument} must be ${expected} on backend "${NAME}", got ${actual}`,
    { argument, expected, actual: String(actual) },
  );
}

function isGpuBuffer(value: unknown): value is GPUBuffer {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as GPUBuffer).size === 'number' &&
    typeof (value as GPUBuffer).usage === 'number' &&
    typeof (value as GPUBuffer).destroy === 'function'
  );
}

function checkBuffer(context: string, argument: string, value: unknown, elements: number): GPUBuffer {
  if (!isGpuBuffer(value)) {
    throw new AttnkitError(
      'invalid-argument',
      `${context}: ${argument} must be a GPUBuffer, got ${describeValue(value)}`,
      { argument, expected: 'a GPUBuffer', actual: describeValue(value) },
    );
  }
  if ((value.usage & Usage.STORAGE) === 0) {
    throw new AttnkitError(
      'invalid-argument',
      `${context}: ${argument}.usage must include STORAGE (0x80), got 0x${value.usage.toString(16)}`,
      { argument: `${argument}.usage`, expected: 'STORAGE bit set', actual: `0x${value.usage.toString(16)}` },
    );
  }
  if (value.size < elements * 4) {
    throw new AttnkitError(
      'invalid-argument',
      `${context}: ${argument}.size must be at least ${elements * 4} bytes (${elements} floats), got ${value.size}`,
      {
        argument: `${argument}.size`,
        expected: `at least ${elements * 4} bytes`,
        actual: String(value.size),
      },
    );
  }
  return value;
}

function stridesFor(layout: TensorLayout, heads: number, length: number, dim: number): Strides {
  return layout === 'bhld'
    ? { b: heads * length * dim, h: length * dim, l: dim }
    : { b: length * heads * dim, h: dim, l: heads * dim };
}

type AttentionOptionsPart = ResolvedOptions;

/** Everything the encoder needs for one attention, whatever its source. */
interface AttentionPlan {
  shape: ResolvedShape;
  options: AttentionOptionsPart;
  layout: TensorLayout;
  variant: AttentionVariant;
}

class WebGpuImplementation implements BackendImplementation {
  readonly name = NAME;
  private state: DeviceState | null = null;
  private readonly inFlight = new Set<Promise<unknown>>();
  private disposed = false;

  constructor(private readonly options: WebGpuBackendOptions) {}

  get device(): GPUDevice {
    return this.ready().device;
  }

  capabilities(): BackendCapabilities {
    const s = this.state;
    const notes = [
      'device-resident path: attentionBuffers, matmulBuffers, multiHeadAttention (whole layer on the device)',
    ];
    if (s === null) {
      return {
        features: ALL_FEATURES,
        limits: {},
        tolerance: TOLERANCE,
        deterministic: true,
        engine: 'WebGPU (WGSL), not initialised',
        threads: 1,
        notes,
      };
    }
    const dimLimit = Math.floor((s.limits.workgroupFloats - 6) / 4);
    return {
      features: ALL_FEATURES,
      limits: { headDim: dimLimit, valueDim: dimLimit, tensorElements: s.limits.tensorElements },
      tolerance: TOLERANCE,
      deterministic: true,
      engine: `WebGPU (WGSL) on ${s.acquired.description}`,
      threads: 1,
      notes: [
        ...notes,
        ...s.acquired.notes,
        `tiles sized from the device: ${s.limits.workgroupFloats * 4} B workgroup storage, ` +
          `${s.limits.invocations} invocations, ${s.limits.storageBinding} B storage binding`,
      ],
    };
  }

  async init(): Promise<void> {
    if (this.state !== null) return;
    const acquired = await acquireDevice(this.options);
    const { device } = acquired;
    const l = device.limits;
    const storageBinding = Math.min(l.maxStorageBufferBindingSize, l.maxBufferSize);
    const pool = new BufferPool(device, l.maxBufferSize);
    const state: DeviceState = {
      acquired,
      device,
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
    };
    state.lostPromise.then((info) => {
      state.lost = info;
    });
    this.state = state;
  }

  private recovering: Promise<void> | null = null;

  /**
   * A device this backend acquired and then lost (driver reset, GPU removed) is replaced on the next
   * call: the call that saw the loss rejected with `device`, later ones run on a fresh device. A
   * caller's device is never replaced: calls keep rejecting with `device`.
   */
  private async live(): Promise<void> {
    const s = this.state;
    if (this.disposed || s === null || s.lost === null || !s.acquired.owned) return;
    if (this.recovering === null) {
      this.recovering = (async () => {
        s.pool.destroyAll();
        if (this.state === s) this.state = null;
        await this.init();
      })().finally(() => {
        this.recovering = null;
      });
    }
    await this.recovering;
  }

  private ready(): DeviceState {
    if (this.disposed) {
      throw new AttnkitError('disposed', `webgpu: backend "${NAME}" has been disposed`, {
        argument: 'backend',
        expected: 'a backend that has not been disposed',
        actual: 'disposed',
      });
    }
    const s = this.state;
    if (s === null) {
      throw new AttnkitError('unavailable', 'webgpu: backend used before init()', {
        argument: 'backend',
        expected: 'an initialised backend',
        actual: 'not initialised',
      });
    }
    if (s.lost !== null)
      throw deviceError(`webgpu: the GPU device was lost (${s.lost.reason}): ${s.lost.message}`);
    return s;
  }

  /** Tracks work so `dispose` waits for it. */
  track<T>(work: Promise<T>): Promise<T> {
    this.inFlight.add(work);
    const untrack = () => this.inFlight.delete(work);
    work.then(untrack, untrack);
    return work;
  }

  // ---------- pipelines ----------

  private pipeline(key: string, code: string): Promise<GPUComputePipeline> {
    const { device } = this.ready();
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

  private attentionVariant(shape: ResolvedShape): AttentionVariant {
    const s = this.ready();
    const floats = s.limits.workgroupFloats;
    // Capacity buckets (powers of two from 8): a new head size rarely means a new shader.
    const bucket = (n: number) => Math.max(8, 2 ** Math.ceil(Math.log2(n)));
    const fits = (D: number, Dv: number, bq: number, bk: number) =>
      bq * D + bk * D + bk * Dv + 2 * bq * bk + bq * Dv + 4 * bq <= floats;
    const wg = Math.max(1, Math.min(this.options.workgroupSize ?? 64, s.limits.invocations));
    const tiles: [number, number][] = [
      [16, 32],
      [16, 16],
      [8, 16],
      [8, 8],
      [4, 8],
      [4, 4],
      [2, 4],
      [1, 4],
      [1, 2],
      [1, 1],
    ];
    // Decoding (few query rows) would waste most of a 16-row tile.
    const rowCap = Math.max(1, 2 ** Math.ceil(Math.log2(Math.min(shape.queryLength, 16))));
    for (const [bqWanted, bk] of tiles) {
      const bq = Math.min(bqWanted, rowCap);
      let D = bucket(shape.headDim);
      let Dv = bucket(shape.valueDim);
      if (!fits(D, Dv, bq, bk)) {
        D = shape.headDim;
        Dv = shape.valueDim;
      }
      if (fits(D, Dv, bq, bk)) {
        return {
          headDim: D,
          valueDim: Dv,
          bq,
          bk,
          wg,
        };
      }
    }
    throw unsupported(
      'shape.headDim + shape.valueDim',
      `small enough for ${floats * 4} bytes of workgroup storage (at most ${Math.floor((floats - 6) / 2)})`,
      shape.headDim + shape.valueDim,
    );
  }

  private async attentionPipelines(v: AttentionVariant, weights: boolean): Promise<Pipelines> {
    const key = JSON.stringify(v);
    const [attention, w] = await Promise.all([
      this.pipeline(`attention${key}`, attentionShader(v)),
      weights ? this.pipeline(`weights${key}`, weightsShader(v)) : Promise.resolve(null),
    ]);
    return { attention, weights: w };
  }

  private matmulTile(): number {
    return this.ready().limits.invocations >= 256 ? 16 : 8;
  }

  private matmulPipeline(bias: boolean): Promise<GPUComputePipeline> {
    const tile = this.matmulTile();
    return this.pipeline(`matmul:${tile}:${bias}`, matmulShader(tile, bias));
  }

  // ---------- helpers ----------

  private dispatchSize(groups: number, context: string): [number, number] {
    const max = this.ready().limits.workgroupsPerDim;
    const x = Math.min(groups, max);
    const y = Math.ceil(groups / x);
    if (y > max) throw unsupported('workgroups', `at most ${max * max}`, groups, context);
    return [x, y];
  }

  private checkElements(context: string, argument: string, elements: number): void {
    const limit = this.ready().limits.tensorElements;
    if (elements > limit) throw unsupported(argument, `at most ${limit} elements`, elements, context);
  }

  private uploadFloats(data: Float32Array): GPUBuffer {
    const { device, pool } = this.ready();
    const buffer = pool.acquire(Math.max(4, data.byteLength), STORAGE_USAGE);
    if (data.byteLength > 0)
      device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    return buffer;
  }

  private uploadBytes(data: Uint8Array): GPUBuffer {
    const { device, pool } = this.ready();
    // writeBuffer wants a multiple of 4 bytes; the shader reads the mask as packed u32 words.
    const padded = new Uint8Array(Math.ceil(Math.max(4, data.byteLength) / 4) * 4);
    padded.set(data);
    const buffer = pool.acquire(padded.byteLength, STORAGE_USAGE);
    device.queue.writeBuffer(buffer, 0, padded.buffer, 0, padded.byteLength);
    return buffer;
  }

  private uniform(words: ArrayBuffer): GPUBuffer {
    const { device, pool } = this.ready();
    const buffer = pool.acquire(words.byteLength, Usage.UNIFORM | Usage.COPY_DST);
    device.queue.writeBuffer(buffer, 0, words);
    return buffer;
  }

  /**
   * Runs `encode` (which must not await) inside validation, out-of-memory and internal error scopes,
   * so a failure of this call is reported to this call even when calls overlap.
   */
  private async guarded<T>(context: string, encode: () => T): Promise<T> {
    const { device } = this.ready();
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    device.pushErrorScope('internal');
    let result: T | undefined;
    let thrown: unknown = null;
    try {
      result = encode();
    } catch (error) {
      thrown = error ?? new Error('unknown');
    }
    const errors = await Promise.all([
      device.popErrorScope(),
      device.popErrorScope(),
      device.popErrorScope(),
    ]);
    if (thrown !== null) throw thrown;
    const kinds = ['internal', 'validation', 'out-of-memory'];
    for (let n = 0; n < errors.length; n++) {
      const error = errors[n];
      if (error) throw deviceError(`${context}: WebGPU ${kinds[n]} error: ${error.message}`, error);
    }
    return result as T;
  }

  /** Resolves with `work`, or rejects with `device` as soon as the device is lost. */
  private untilLost<T>(work: Promise<T>, context: string): Promise<T> {
    const s = this.ready();
    const lost = s.lostPromise.then((info): never => {
      throw deviceError(`${context}: the GPU device was lost (${info.reason}): ${info.message}`);
    });
    return Promise.race([work, lost]);
  }

  /** Maps staging buffers filled by an already submitted command buffer and copies them out. */
  private async readStaging(context: string, staging: { buffer: GPUBuffer; bytes: number }[]) {
    const { pool } = this.ready();
    try {
      await this.untilLost(
        Promise.all(staging.map((s) => s.buffer.mapAsync(MAP_READ_MODE, 0, s.bytes))),
        context,
      );
      return staging.map((s) => new Float32Array(s.buffer.getMappedRange(0, s.bytes).slice(0)));
    } catch (error) {
      if (error instanceof AttnkitError) throw error;
      throw deviceError(`${context}: reading results back failed: ${String(error)}`, error);
    } finally {
      for (const s of staging) {
        if (s.buffer.mapState === 'mapped') s.buffer.unmap();
        if (s.buffer.mapState === 'unmapped') pool.release(s.buffer);
      }
    }
  }

  private copyToStaging(encoder: GPUCommandEncoder, source: GPUBuffer, bytes: number) {
    const { pool } = this.ready();
    const buffer = pool.acquire(bytes, Usage.MAP_READ | Usage.COPY_DST);
    encoder.copyBufferToBuffer(source, 0, buffer, 0, bytes);
    return { buffer, bytes };
  }

  // ---------- attention ----------

  private plan(shape: ResolvedShape, options: AttentionOptionsPart, layout: TensorLayout, context: string) {
    const { batch: B, queryHeads: Hq, queryLength: Lq, keyLength: Lk } = shape;
    if (options.bias !== null) this.checkElements(context, 'options.bias.data', options.bias.data.length);
    if (options.returnWeights) this.checkElements(context, 'weights', B * Hq * Lq * Lk);
    this.checkElements(context, 'lse', 3 * B * Hq * Lq);
    const variant = this.attentionVariant(shape);
    return { shape, options, layout, variant } satisfies AttentionPlan;
  }

  /** Uploads the option tensors and encodes the fused kernel (and the weights pass). Never awaits. */
  private encodeAttention(
    encoder: GPUCommandEncoder,
    plan: AttentionPlan,
    pipelines: Pipelines,
    inputs: { q: GPUBuffer; k: GPUBuffer; v: GPUBuffer },
    context: string,
  ): { output: GPUBuffer; rows: GPUBuffer | null; weights: GPUBuffer | null; temps: GPUBuffer[] } {
    const { device, pool } = this.ready();
    const { shape, options: o, layout, variant } = plan;
    const {
      batch: B,
      queryHeads: Hq,
      kvHeads: Hkv,
      queryLength: Lq,
      keyLength: Lk,
      headDim: D,
      valueDim: Dv,
    } = shape;
    const temps: GPUBuffer[] = [];
    const qTiles = Math.ceil(Lq / variant.bq);
    const groups = B * Hq * qTiles;
    const [gx, gy] = this.dispatchSize(groups, context);
    const qs = stridesFor(layout, Hq, Lq, D);
    const ks = stridesFor(layout, Hkv, Lk, D);
    const vs = stridesFor(layout, Hkv, Lk, Dv);
    const os = stridesFor(layout, Hq, Lq, Dv);
    const bs = o.bias?.strides ?? [0, 0, 0, 0];
    // Past Lq + Lk every key is inside the window; clamping keeps the value in i32 range.
    const window = o.slidingWindow === null ? 0 : Math.min(o.slidingWindow, Lq + Lk + 1);
    const values: Record<AttentionParamField, number> = {
      batch: B,
      hq: Hq,
      hkv: Hkv,
      lq: Lq,
      lk: Lk,
      qTiles,
      total: groups,
      groupsX: gx,
      window,
      qsB: qs.b,
      qsH: qs.h,
      qsL: qs.l,
      ksB: ks.b,
      ksH: ks.h,
      ksL: ks.l,
      vsB: vs.b,
      vsH: vs.h,
      vsL: vs.l,
      osB: os.b,
      osH: os.h,
      osL: os.l,
      bsB: bs[0],
      bsH: bs[1],
      bsI: bs[2],
      bsJ: bs[3],
      scale: o.scale,
      softcap: o.softcap ?? 1,
      nanBits: NAN_BITS,
      d: D,
      dv: Dv,
      bk: variant.bk,
      flags:
        (o.causal ? Flags.causal : 0) |
        (o.slidingWindow !== null ? Flags.window : 0) |
        (o.bias !== null ? Flags.bias : 0) |
        (o.keyMask !== null ? Flags.keyMask : 0) |
        (o.alibiSlopes !== null ? Flags.alibi : 0) |
        (o.softcap !== null ? Flags.softcap : 0) |
        (o.sinks !== null ? Flags.sinks : 0) |
        (o.returnLse || o.returnWeights ? Flags.rows : 0),
    };
    const params = (overrides: Partial<Record<AttentionParamField, number>>) => {
      const buffer = new ArrayBuffer(ATTENTION_PARAMS_BYTES);
      const u32 = new Uint32Array(buffer);
      const f32 = new Float32Array(buffer);
      ATTENTION_PARAM_FIELDS.forEach((field, n) => {
        const value = overrides[field] ?? values[field];
        if (field === 'scale' || field === 'softcap') f32[n] = value;
        else u32[n] = value;
      });
      return this.uniform(buffer);
    };
    const uniform = params({});
    temps.push(uniform);
    // Absent options bind a small read-only stand-in; the flags word keeps the shader off it.
    const dummy = this.ready().dummy;
    const bias = o.bias === null ? dummy : this.uploadFloats(o.bias.data);
    const mask = o.keyMask === null ? dummy : this.uploadBytes(o.keyMask);
    let head = dummy;
    if (o.alibiSlopes !== null || o.sinks !== null) {
      const values = new Float32Array(2 * Hq);
      if (o.alibiSlopes !== null) values.set(o.alibiSlopes, 0);
      if (o.sinks !== null) values.set(o.sinks, Hq);
      head = this.uploadFloats(values);
    }
    const optional = [bias, mask, head];
    for (const buffer of optional) if (buffer !== dummy) temps.push(buffer);
    const rowsCount = B * Hq * Lq;
    const output = pool.acquire(B * Hq * Lq * Dv * 4, STORAGE_USAGE);
    const wantRows = o.returnLse || o.returnWeights;
    // ROWS is written, so it cannot share the read-only stand-in.
    const rowsBuffer = pool.acquire(wantRows ? 3 * rowsCount * 4 : 16, STORAGE_USAGE);
    const rows = wantRows ? rowsBuffer : null;
    if (!wantRows) temps.push(rowsBuffer);
    const entries: GPUBindGroupEntry[] = [
      { binding: 0, resource: { buffer: uniform, size: ATTENTION_PARAMS_BYTES } },
      { binding: 1, resource: { buffer: inputs.q } },
      { binding: 2, resource: { buffer: inputs.k } },
      { binding: 3, resource: { buffer: inputs.v } },
      { binding: 4, resource: { buffer: output } },
    ];
    let next = 5;
    entries.push({ binding: next++, resource: { buffer: rowsBuffer } });
    for (const buffer of optional) entries.push({ binding: next++, resource: { buffer } });
    const pass = encoder.beginComputePass({ label: 'attnkit:attention' });
    pass.setPipeline(pipelines.attention);
    pass.setBindGroup(
      0,
      device.createBindGroup({ layout: pipelines.attention.getBindGroupLayout(0), entries }),
    );
    pass.dispatchWorkgroups(gx, gy);
    let weights: GPUBuffer | null = null;
    if (o.returnWeights && pipelines.weights !== null && rows !== null) {
      const count = rowsCount * Lk;
      const wGroups = Math.ceil(count / variant.wg);
      const [wx, wy] = this.dispatchSize(wGroups, context);
      const wUniform = params({ total: wGroups, groupsX: wx });
      temps.push(wUniform);
      weights = pool.acquire(count * 4, STORAGE_USAGE);
      const wEntries: GPUBindGroupEntry[] = [
        { binding: 0, resource: { buffer: wUniform, size: ATTENTION_PARAMS_BYTES } },
        { binding: 1, resource: { buffer: inputs.q } },
        { binding: 2, resource: { buffer: inputs.k } },
        { binding: 3, resource: { buffer: rows } },
        { binding: 4, resource: { buffer: weights } },
      ];
      let wNext = 5;
      for (const buffer of optional) wEntries.push({ binding: wNext++, resource: { buffer } });
      pass.setPipeline(pipelines.weights);
      pass.setBindGroup(
        0,
        device.createBindGroup({ layout: pipelines.weights.getBindGroupLayout(0), entries: wEntries }),
      );
      pass.dispatchWorkgroups(wx, wy);
    }
    pass.end();
    return { output, rows, weights, temps };
  }

  async attention(problem: AttentionProblem): Promise<AttentionResult> {
    await this.live();
    const context = 'attention';
    const plan = this.plan(problem.shape, problem, 'bhld', context);
    const pipelines = await this.attentionPipelines(plan.variant, problem.returnWeights);
    const { device, pool } = this.ready();
    const { batch: B, queryHeads: Hq, queryLength: Lq, keyLength: Lk, valueDim: Dv } = problem.shape;
    const staging = await this.guarded(context, () => {
      const encoder = device.createCommandEncoder();
      const q = this.uploadFloats(problem.q);
      const k = this.uploadFloats(problem.k);
      const v = this.uploadFloats(problem.v);
      const out = this.encodeAttention(encoder, plan, pipelines, { q, k, v }, context);
      const reads = [this.copyToStaging(encoder, out.output, B * Hq * Lq * Dv * 4)];
      if (problem.returnLse && out.rows !== null)
        reads.push(this.copyToStaging(encoder, out.rows, B * Hq * Lq * 4));
      if (out.weights !== null) reads.push(this.copyToStaging(encoder, out.weights, B * Hq * Lq * Lk * 4));
      device.queue.submit([encoder.finish()]);
      // The queue orders later writes after this submission, so these can be reused at once.
      for (const buffer of [q, k, v, out.output, ...out.temps]) pool.release(buffer);
      if (out.rows !== null) pool.release(out.rows);
      if (out.weights !== null) pool.release(out.weights);
      return reads;
    });
    const [output, ...rest] = await this.readStaging(context, staging);
    const result: AttentionResult = { output };
    if (problem.returnLse) result.lse = rest.shift();
    if (problem.returnWeights) result.weights = rest.shift();
    return result;
  }

  async attentionBuffers(
    inputs: GpuAttentionInputs,
    options: AttentionOptions = {},
  ): Promise<GpuAttentionResult> {
    await this.live();
    const context = 'attentionBuffers';
    if (typeof inputs !== 'object' || inputs === null) {
      throw new AttnkitError(
        'invalid-argument',
        `${context}: inputs must be an object, got ${describeValue(inputs)}`,
        {
          argument: 'inputs',
          expected: 'an object { q, k, v, shape }',
          actual: describeValue(inputs),
        },
      );
    }
    const shape = resolveShape(inputs.shape, context);
    const resolved = resolveOptions(options, shape, context);
    const layout = inputs.layout ?? 'bhld';
    if (layout !== 'bhld' && layout !== 'blhd') {
      throw new AttnkitError(
        'invalid-argument',
        `${context}: layout must be "bhld" or "blhd", got ${describeValue(layout)}`,
        { argument: 'layout', expected: '"bhld" or "blhd"', actual: describeValue(layout) },
      );
    }
    const {
      batch: B,
      queryHeads: Hq,
      kvHeads: Hkv,
      queryLength: Lq,
      keyLength: Lk,
      headDim: D,
      valueDim: Dv,
    } = shape;
    const q = checkBuffer(context, 'q', inputs.q, B * Hq * Lq * D);
    const k = checkBuffer(context, 'k', inputs.k, B * Hkv * Lk * D);
    const v = checkBuffer(context, 'v', inputs.v, B * Hkv * Lk * Dv);
    for (const [name, n] of [
      ['q', B * Hq * Lq * D],
      ['k', B * Hkv * Lk * D],
      ['v', B * Hkv * Lk * Dv],
      ['output', B * Hq * Lq * Dv],
    ] as const)
      this.checkElements(context, name, n);
    const plan = this.plan(shape, resolved, layout, context);
    const pipelines = await this.attentionPipelines(plan.variant, resolved.returnWeights);
    const { device, pool } = this.ready();
    return this.guarded(context, () => {
      const encoder = device.createCommandEncoder();
      const out = this.encodeAttention(encoder, plan, pipelines, { q, k, v }, context);
      let lse: GPUBuffer | undefined;
      if (resolved.returnLse && out.rows !== null) {
        lse = pool.acquire(B * Hq * Lq * 4, STORAGE_USAGE);
        encoder.copyBufferToBuffer(out.rows, 0, lse, 0, B * Hq * Lq * 4);
      }
      device.queue.submit([encoder.finish()]);
      for (const buffer of out.temps) pool.release(buffer);
      if (out.rows !== null) pool.release(out.rows);
      const result: GpuAttentionResult = { output: out.output };
      if (lse !== undefined) result.lse = lse;
      if (out.weights !== null) result.weights = out.weights;
      return result;
    });
  }

  // ---------- matmul ----------

  private encodeMatmul(
    encoder: GPUCommandEncoder,
    pipeline: GPUComputePipeline,
    a: GPUBuffer,
    b: GPUBuffer,
    bias: GPUBuffer | null,
    shape: MatmulShape,
    context: string,
  ): { output: GPUBuffer; temps: GPUBuffer[] } {
    const { device, pool } = this.ready();
    const tile = this.matmulTile();
    const tilesN = Math.ceil(shape.n / tile);
    const total = Math.ceil(shape.m / tile) * tilesN;
    const [gx, gy] = this.dispatchSize(total, context);
    const uniform = this.uniform(
      new Uint32Array([shape.m, shape.k, shape.n, tilesN, total, gx, 0, 0]).buffer,
    );
    const output = pool.acquire(shape.m * shape.n * 4, STORAGE_USAGE);
    const entries: GPUBindGroupEntry[] = [
      { binding: 0, resource: { buffer: uniform, size: MATMUL_PARAMS_BYTES } },
      { binding: 1, resource: { buffer: a } },
      { binding: 2, resource: { buffer: b } },
      { binding: 3, resource: { buffer: output } },
    ];
    if (bias !== null) entries.push({ binding: 4, resource: { buffer: bias } });
    const pass = encoder.beginComputePass({ label: 'attnkit:matmul' });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries }));
    pass.dispatchWorkgroups(gx, gy);
    pass.end();
    return { output, temps: [uniform] };
  }

  private checkMatmul(context: string, shape: MatmulShape): void {
    this.checkElements(context, 'a', shape.m * shape.k);
    this.checkElements(context, 'b', shape.k * shape.n);
    this.checkElements(context, 'output', shape.m * shape.n);
  }

  async matmul(problem: MatmulProblem): Promise<Float32Array> {
    await this.live();
    const context = 'matmul';
    this.checkMatmul(context, problem.shape);
    const pipeline = await this.matmulPipeline(problem.bias !== null);
    const { device, pool } = this.ready();
    const staging = await this.guarded(context, () => {
      const encoder = device.createCommandEncoder();
      const a = this.uploadFloats(problem.a);
      const b = this.uploadFloats(problem.b);
      const bias = problem.bias === null ? null : this.uploadFloats(problem.bias);
      const out = this.encodeMatmul(encoder, pipeline, a, b, bias, problem.shape, context);
      const read = this.copyToStaging(encoder, out.output, problem.shape.m * problem.shape.n * 4);
      device.queue.submit([encoder.finish()]);
      for (const buffer of [a, b, out.output, ...out.temps]) pool.release(buffer);
      if (bias !== null) pool.release(bias);
      return [read];
    });
    const [output] = await this.readStaging(context, staging);
    return output;
  }

  async matmulBuffers(inputs: GpuMatmulInputs): Promise<GPUBuffer> {
    await this.live();
    const context = 'matmulBuffers';
    const shape = inputs?.shape;
    for (const dim of ['m', 'k', 'n'] as const) {
      const value: unknown = shape?.[dim];
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
        throw new AttnkitError(
          'invalid-argument',
          `${context}: shape.${dim} must be a positive integer, got ${describeValue(value)}`,
          { argument: `shape.${dim}`, expected: 'a positive integer', actual: describeValue(value) },
        );
      }
    }
    const a = checkBuffer(context, 'a', inputs.a, shape.m * shape.k);
    const b = checkBuffer(context, 'b', inputs.b, shape.k * shape.n);
    const bias = inputs.bias === undefined ? null : checkBuffer(context, 'bias', inputs.bias, shape.n);
    this.checkMatmul(context, shape);
    const pipeline = await this.matmulPipeline(bias !== null);
    const { device, pool } = this.ready();
    return this.guarded(context, () => {
      const encoder = device.createCommandEncoder();
      const out = this.encodeMatmul(encoder, pipeline, a, b, bias, shape, context);
      device.queue.submit([encoder.finish()]);
      for (const buffer of out.temps) pool.release(buffer);
      return out.output;
    });
  }

  // ---------- the layer ----------

  async multiHeadAttention(inputs: LayerInputs, options: AttentionOptions = {}): Promise<AttentionResult> {
    await this.live();
    const context = 'multiHeadAttention';
    const r = validateLayer(inputs, options);
    const { batch: B, queryLength: Lq, keyLength: Lk, modelDim: M, queryHeads: Hq, kvHeads: Hkv } = r;
    const { headDim: D, valueDim: Dv } = r;
    const shape: ResolvedShape = {
      batch: B,
      queryHeads: Hq,
      kvHeads: Hkv,
      queryLength: Lq,
      keyLength: Lk,
      headDim: D,
      valueDim: Dv,
    };
    const resolved = resolveOptions(options, shape, context);
    const w = inputs.weights;
    const sizes: [string, number][] = [
      ['x', B * Lq * M],
      ['context', B * Lk * M],
      ['q', B * Lq * Hq * D],
      ['k', B * Lk * Hkv * D],
      ['v', B * Lk * Hkv * Dv],
      ['merged', B * Lq * Hq * Dv],
      ['weights.wq', M * Hq * D],
      ['weights.wk', M * Hkv * D],
      ['weights.wv', M * Hkv * Dv],
      ['weights.wo', Hq * Dv * M],
    ];
    for (const [name, n] of sizes) this.checkElements(context, name, n);
    const plan = this.plan(shape, resolved, 'blhd', context);
    const [pipelines, mmBias, mmPlain] = await Promise.all([
      this.attentionPipelines(plan.variant, resolved.returnWeights),
      this.matmulPipeline(true),
      this.matmulPipeline(false),
    ]);
    const { device, pool } = this.ready();
    const staging = await this.guarded(context, () => {
      const encoder = device.createCommandEncoder();
      const held: GPUBuffer[] = [];
      const up = (data: Float32Array | undefined) => {
        if (data === undefined) return null;
        const buffer = this.uploadFloats(data);
        held.push(buffer);
        return buffer;
      };
      const x = up(inputs.x)!;
      const source = inputs.context === undefined ? x : up(inputs.context)!;
      const project = (a: GPUBuffer, rows: number, weight: Float32Array, n: number, bias?: Float32Array) => {
        const biasBuffer = up(bias);
        const out = this.encodeMatmul(
          encoder,
          biasBuffer === null ? mmPlain : mmBias,
          a,
          up(weight)!,
          biasBuffer,
          { m: rows, k: M, n },
          context,
        );
        held.push(out.output, ...out.temps);
        return out.output;
      };
      const q = project(x, B * Lq, w.wq, Hq * D, w.bq);
      const k = project(source, B * Lk, w.wk, Hkv * D, w.bk);
      const v = project(source, B * Lk, w.wv, Hkv * Dv, w.bv);
      const att = this.encodeAttention(encoder, plan, pipelines, { q, k, v }, context);
      held.push(att.output, ...att.temps);
      if (att.rows !== null) held.push(att.rows);
      if (att.weights !== null) held.push(att.weights);
      const woBias = up(w.bo);
      const out = this.encodeMatmul(
        encoder,
        woBias === null ? mmPlain : mmBias,
        att.output,
        up(w.wo)!,
        woBias,
        { m: B * Lq, k: Hq * Dv, n: M },
        context,
      );
      held.push(out.output, ...out.temps);
      const reads = [this.copyToStaging(encoder, out.output, B * Lq * M * 4)];
      if (resolved.returnLse && att.rows !== null)
        reads.push(this.copyToStaging(encoder, att.rows, B * Hq * Lq * 4));
      if (att.weights !== null) reads.push(this.copyToStaging(encoder, att.weights, B * Hq * Lq * Lk * 4));
      device.queue.submit([encoder.finish()]);
      for (const buffer of held) pool.release(buffer);
      return reads;
    });
    const [output, ...rest] = await this.readStaging(context, staging);
    const result: AttentionResult = { output };
    if (resolved.returnLse) result.lse = rest.shift();
    if (resolved.returnWeights) result.weights = rest.shift();
    return result;
  }

  // ---------- buffers in and out ----------

  async upload(data: Float32Array): Promise<GPUBuffer> {
    await this.live();
    if (Object.prototype.toString.call(data) !== '[object Float32Array]') {
      throw new AttnkitError(
        'invalid-argument',
        `upload: data must be a Float32Array, got ${describeValue(data)}`,
        {
          argument: 'data',
          expected: 'a Float32Array',
          actual: describeValue(data),
        },
      );
    }
    this.checkElements('upload', 'data', data.length);
    return this.guarded('upload', () => this.uploadFloats(data));
  }

  async read(buffer: GPUBuffer, elements: number): Promise<Float32Array> {
    await this.live();
    const context = 'read';
    if (!Number.isInteger(elements) || elements < 0) {
      throw new AttnkitError(
        'invalid-argument',
        `${context}: elements must be an integer >= 0, got ${elements}`,
        {
          argument: 'elements',
          expected: 'an integer >= 0',
          actual: describeValue(elements),
        },
      );
    }
    checkBuffer(context, 'buffer', buffer, elements);
    if (elements === 0) return new Float32Array(0);
    const { device } = this.ready();
    const staging = await this.guarded(context, () => {
      const encoder = device.createCommandEncoder();
      const read = this.copyToStaging(encoder, buffer, elements * 4);
      device.queue.submit([encoder.finish()]);
      return [read];
    });
    const [out] = await this.readStaging(context, staging);
    return out;
  }

  release(buffer: GPUBuffer): void {
    this.state?.pool.release(buffer);
  }

  memory(): BackendMemory {
    return { hostBytes: 0, deviceBytes: this.state?.pool.deviceBytes ?? 0 };
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    await Promise.allSettled([...this.inFlight]);
    const s = this.state;
    this.state = null;
    if (s === null) return;
    s.pool.destroyAll();
    if (s.acquired.owned) s.device.destroy();
  }

  /** For the wrapper's extra methods: rejects after dispose. */
  assertOpen(method: string): void {
    if (this.disposed) {
      throw new AttnkitError('disposed', `${method}: backend "${NAME}" has been disposed`, {
        argument: 'backend',
        expected: 'a backend that has not been disposed',
        actual: 'disposed',
      });
    }
  }
}

/**
 * Creates the WebGPU backend. It acquires nothing until `init()` (or the first call): then it uses
 * `options.device`, or asks `navigator.gpu` (browsers) or Dawn from the optional `webgpu` package (Node)
 * for an adapter and device, sized to the adapter's limits.
 */
export function createWebGpuBackend(options: WebGpuBackendOptions = {}): WebGpuBackend {
  const impl = new WebGpuImplementation(options);
  const base = createBackend(impl);
  const run = <T>(method: string, work: () => Promise<T>): Promise<T> => {
    try {
      impl.assertOpen(method);
    } catch (error) {
      return Promise.reject(error);
    }
    return impl.track(base.init().then(work));
  };
  // defineProperty, not a getter in Object.assign: assign would read the device before init.
  Object.defineProperty(base, 'device', { get: () => impl.device, enumerable: true });
  return Object.assign(base as AttentionBackend & { readonly device: GPUDevice }, {
    attentionBuffers: (inputs: GpuAttentionInputs, opts?: AttentionOptions) =>
      run('attentionBuffers', () => impl.attentionBuffers(inputs, opts)),
    matmulBuffers: (inputs: GpuMatmulInputs) => run('matmulBuffers', () => impl.matmulBuffers(inputs)),
    multiHeadAttention: (inputs: LayerInputs, opts?: AttentionOptions) =>
      run('multiHeadAttention', () => impl.multiHeadAttention(inputs, opts)),
    upload: (data: Float32Array) => run('upload', () => impl.upload(data)),
    read: (buffer: GPUBuffer, elements: number) => run('read', () => impl.read(buffer, elements)),
    release: (buffer: GPUBuffer) => impl.release(buffer),
  });
}
