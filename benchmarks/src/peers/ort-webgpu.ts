import { buildGqaModel } from '../onnx.js';
import { PEER_TOLERANCE, type PreparedDecode, type Subject, sliceTokens } from '../subject.js';
import { transposeHeads } from '../workloads.js';
import { type OrtModule, type OrtPeerOptions, type OrtTensor, resolveSessionOptions } from './ort.js';
import { placementCache } from './placement.js';

/** The few WebGPU calls the peer makes on onnxruntime's device (structural: no DOM types in this package). */
export interface GpuBufferLike {
  destroy(): void;
}
export interface GpuDeviceLike {
  createBuffer(descriptor: { size: number; usage: number }): GpuBufferLike;
  queue: { writeBuffer(buffer: GpuBufferLike, offset: number, data: Float32Array): void };
}

/** onnxruntime-web's WebGPU build: tensors over GPU buffers on its device. */
export interface OrtWebGpuModule extends OrtModule {
  Tensor: OrtModule['Tensor'] & {
    fromGpuBuffer(
      buffer: GpuBufferLike,
      options: { dataType: 'float32'; dims: readonly number[] },
    ): OrtTensor;
  };
}

/** The WebGPU GQA peer's options: where onnxruntime computes, and the device its cache lives on. */
export interface OrtWebGpuGqaOptions extends OrtPeerOptions {
  load(): Promise<OrtWebGpuModule>;
  expectedProvider: string;
  /** The device onnxruntime's sessions use (the page passes it in the EP options), after `load`. */
  device(): GpuDeviceLike;
}

// GPUBufferUsage.STORAGE | COPY_SRC | COPY_DST: what onnxruntime needs of a buffer it reads as a tensor
const ORT_BUFFER_USAGE = 0x80 | 0x04 | 0x08;

/**
 * onnxruntime-web WebGPU's `com.microsoft.GroupQueryAttention` as a peer of `@attnkit/webgpu`:
 * - prefill (causal only: GQA has no other mask): `q [1, N, Hq*D]`, `k`, `v [1, N, Hkv*D]`, no past,
 *   `present_*` left on the GPU (`preferredOutputLocation: 'gpu-buffer'`), `y` read back;
 * - decode: one new token against `N - 1` past tokens passed from the host each call (stateless);
 * - decode-cache: the past lives in GPU buffers on onnxruntime's device, made once; a step uploads
 *   the token's q/k/v, runs, leaves `present_*` (past + the token) on the GPU and reads `y` back;
 *   as a decoder feeding present back as past would, with the runner's rewind meaning the next step
 *   starts from the same past again (the new present is released).
 */
export function ortWebGpuGqaPeer(options: OrtWebGpuGqaOptions): Subject {
  let ort: OrtWebGpuModule | null = null;
  const placements = placementCache(options.expectedProvider, options.placement);
  const sessionOptions = () => ({
    ...resolveSessionOptions(options),
    preferredOutputLocation: { present_key: 'gpu-buffer', present_value: 'gpu-buffer' },
  });
  const feedsOf = (
    o: OrtWebGpuModule,
    model: ReturnType<typeof buildGqaModel>,
    data: Record<string, Float32Array | Int32Array | OrtTensor>,
  ) => {
    const feeds: Record<string, OrtTensor> = {};
    for (const input of model.inputs) {
      const d = data[input.name];
      if (d instanceof Int32Array) feeds[input.name] = new o.Tensor('int32', d, input.dims);
      else if (d instanceof Float32Array) feeds[input.name] = new o.Tensor('float32', d, input.dims);
      else feeds[input.name] = d;
    }
    return feeds;
  };
  const readY = (result: Record<string, OrtTensor>, name: string) => {
    const y = result[name];
    if (!(y.data instanceof Float32Array)) throw new Error('onnxruntime returned a non-float32 output');
    const output = y.data.slice();
    for (const t of Object.values(result)) t.dispose?.();
    return output;
  };
  return {
    id: `${options.family}-gqa`,
    kind: 'peer',
    family: options.family,
    label: `${options.label} (GroupQueryAttention op)`,
    tolerance: PEER_TOLERANCE,
    async init() {
      ort = await options.load();
      return { engine: options.engine, threads: options.threads, notes: [] };
    },
    notApplicable(w) {
      if (w.mode === 'backward') return 'onnxruntime has no backward here';
      if (w.mode === 'prefill' && !w.causal) return 'GroupQueryAttention is always causal';
      return null;
    },
    async prepare(w, inputs) {
      const o = ort;
      if (o === null) throw new Error(`${options.family}-gqa: prepare before init`);
      const { queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, keyLength: Lk, headDim: D } = inputs.shape;
      if (w.mode === 'prefill' && Lq !== Lk) throw new Error('GroupQueryAttention prefill needs Lq = Lk');
      // a decode call is one token after Lk - 1 past tokens handed over from the host
      const past = Lk - Lq;
      const model = buildGqaModel({
        queryHeads: Hq,
        kvHeads: Hkv,
        newTokens: Lq,
        pastLength: past,
        headDim: D,
      });
      const placement = await placements.check(`${w.mode}/${Hq}/${Hkv}/${D}`, model.bytes);
      const data: Record<string, Float32Array | Int32Array> = {
        q: transposeHeads(inputs.q, Hq, Lq, D),
        k: transposeHeads(sliceTokens(inputs.k, Hkv, Lk, D, past, Lk), Hkv, Lq, D),
        v: transposeHeads(sliceTokens(inputs.v, Hkv, Lk, D, past, Lk), Hkv, Lq, D),
        seqlens_k: new Int32Array([Lk - 1]),
        total_sequence_length: new Int32Array([Lk]),
      };
      if (past > 0) {
        data.past_key = sliceTokens(inputs.k, Hkv, Lk, D, 0, past);
        data.past_value = sliceTokens(inputs.v, Hkv, Lk, D, 0, past);
      }
      const session = await o.InferenceSession.create(model.bytes, sessionOptions());
      return {
        placement,
        async run() {
          const y = readY(await session.run(feedsOf(o, model, data)), model.output);
          // y is [1, Lq, Hq*D]: the spec's [Hq, Lq, D] for the check
          return transposeHeads(y, Lq, Hq, D);
        },
        async dispose() {
          await session.release();
        },
      };
    },
    async prepareDecode(_w, inputs): Promise<PreparedDecode> {
      const o = ort;
      if (o === null) throw new Error(`${options.family}-gqa: prepareDecode before init`);
      const { queryHeads: Hq, kvHeads: Hkv, keyLength: Lk, headDim: D } = inputs.shape;
      if (Lk < 2) throw new Error('GroupQueryAttention decode needs at least one past token');
      const past = Lk - 1;
      const model = buildGqaModel({
        queryHeads: Hq,
        kvHeads: Hkv,
        newTokens: 1,
        pastLength: past,
        headDim: D,
      });
      const placement = await placements.check(`decode-cache/${Hq}/${Hkv}/${D}`, model.bytes);
      const device = options.device();
      const upload = (x: Float32Array) => {
        const buffer = device.createBuffer({ size: x.byteLength, usage: ORT_BUFFER_USAGE });
        device.queue.writeBuffer(buffer, 0, x);
        return buffer;
      };
      // the cache before the step, resident on onnxruntime's device: uploaded once, never per step
      const pastKey = upload(sliceTokens(inputs.k, Hkv, Lk, D, 0, past));
      const pastValue = upload(sliceTokens(inputs.v, Hkv, Lk, D, 0, past));
      const dims = [1, Hkv, past, D];
      const data: Record<string, Float32Array | Int32Array | OrtTensor> = {
        q: inputs.q,
        k: sliceTokens(inputs.k, Hkv, Lk, D, past, Lk),
        v: sliceTokens(inputs.v, Hkv, Lk, D, past, Lk),
        past_key: o.Tensor.fromGpuBuffer(pastKey, { dataType: 'float32', dims }),
        past_value: o.Tensor.fromGpuBuffer(pastValue, { dataType: 'float32', dims }),
        seqlens_k: new Int32Array([past]),
        total_sequence_length: new Int32Array([Lk]),
      };
      const session = await o.InferenceSession.create(model.bytes, sessionOptions()).catch((error) => {
        pastKey.destroy();
        pastValue.destroy();
        throw error;
      });
      return {
        placement,
        // y [1, 1, Hq*D] is the spec's [1, Hq, 1, D]; present_* (GPU) are released by readY
        step: async () => readY(await session.run(feedsOf(o, model, data)), model.output),
        async dispose() {
          await session.release();
          pastKey.destroy();
          pastValue.destroy();
        },
      };
    },
    memory() {
      return { hostBytes: null, deviceBytes: null };
    },
    async dispose() {
      ort = null;
      placements.clear();
    },
  };
}
