import { buildAttentionModel, type OnnxVariant } from '../onnx.js';
import { PEER_TOLERANCE, type Subject } from '../subject.js';
import { causalMask, repeatKvHeads, transposeHeads } from '../workloads.js';
import { type PlacementProbe, placementCache } from './placement.js';

/** The part of the onnxruntime API the peer uses; onnxruntime-web and onnxruntime-node both fit it. */
export interface OrtTensor {
  readonly data: unknown;
  dispose?(): void;
}
export interface OrtSession {
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
export interface OrtModule {
  Tensor: {
    new (type: 'float32', data: Float32Array, dims: readonly number[]): OrtTensor;
    new (type: 'int32', data: Int32Array, dims: readonly number[]): OrtTensor;
  };
  InferenceSession: {
    create(model: Uint8Array, options?: Record<string, unknown>): Promise<OrtSession>;
  };
  env: { versions?: Record<string, string | undefined>; wasm?: { numThreads?: number } };
}

/** How to reach one onnxruntime and what to call it. */
export interface OrtPeerOptions {
  /** Id prefix: `ort-node`, `ort-web-1t`, `ort-web-mt`, `ort-webgpu`. */
  family: string;
  label: string;
  /** Loads the runtime and applies its settings (thread count, wasm paths) before the first session. */
  load(): Promise<OrtModule>;
  /**
   * Session options (execution providers, intra-op threads); a function when they exist only after
   * `load` (a WebGPU device the page made for onnxruntime).
   */
  sessionOptions: Record<string, unknown> | (() => Record<string, unknown>);
  /** Reported thread count. */
  threads: number;
  engine: string;
  /**
   * The execution provider the label promises (`CPUExecutionProvider` for the wasm and native CPU
   * builds, `WebGpuExecutionProvider`): a node placed elsewhere marks the row `fallback: <EP>`.
   */
  expectedProvider?: string;
  /** Where a model's nodes go, from onnxruntime's verbose log; absent: placement "unknown". */
  placement?: PlacementProbe;
  /** How the `mha` variant expresses causality (see `OnnxAttentionShape.mhaCausal`). */
  mhaCausal?: 'attribute' | 'bias';
}

/** The session options of a peer, resolved now. */
export function resolveSessionOptions(options: OrtPeerOptions): Record<string, unknown> {
  return typeof options.sessionOptions === 'function' ? options.sessionOptions() : options.sessionOptions;
}

/**
 * onnxruntime as a peer, one variant per ONNX formulation so each shows as its own column: the
 * standard Attention op, Microsoft's MultiHeadAttention, and a plain MatMul/Softmax graph. Inputs are
 * laid out as each op wants before timing (a model would produce them so); the timed call makes the
 * tensors, runs the session and reads the output back.
 */
export function ortPeer(variant: OnnxVariant, options: OrtPeerOptions): Subject {
  let ort: OrtModule | null = null;
  const placements =
    options.expectedProvider === undefined
      ? null
      : placementCache(options.expectedProvider, options.placement);
  return {
    id: `${options.family}-${variant}`,
    kind: 'peer',
    family: options.family,
    label: `${options.label} (${variant === 'attention' ? 'Attention op' : variant === 'mha' ? 'MultiHeadAttention op' : 'MatMul/Softmax graph'})`,
    tolerance: PEER_TOLERANCE,
    async init() {
      ort = await options.load();
      return { engine: options.engine, threads: options.threads, notes: [] };
    },
    async prepare(w, inputs) {
      const o = ort;
      if (o === null) throw new Error(`${options.family}: prepare before init`);
      const { queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, keyLength: Lk, headDim: D } = inputs.shape;
      const model = buildAttentionModel(variant, {
        queryHeads: Hq,
        kvHeads: Hkv,
        queryLength: Lq,
        keyLength: Lk,
        headDim: D,
        causal: w.causal,
        mhaCausal: options.mhaCausal,
      });
      // placement follows the graph's ops and inputs (a causal graph has a mask), not its sizes: one
      // probe per formulation and mask, since a Node probe is a process (see placementCache)
      const placement = await placements?.check(`${variant}/${w.causal && Lq > 1}`, model.bytes);
      const data: Record<string, Float32Array> = {};
      if (variant === 'attention') {
        Object.assign(data, { q: inputs.q, k: inputs.k, v: inputs.v });
      } else if (variant === 'matmul') {
        data.q = inputs.q;
        data.k = repeatKvHeads(inputs.k, Hkv, Hq);
        data.v = repeatKvHeads(inputs.v, Hkv, Hq);
        if (model.inputs.some((x) => x.name === 'mask')) data.mask = causalMask(Lq, Lk);
      } else {
        data.q = transposeHeads(inputs.q, Hq, Lq, D);
        data.k = transposeHeads(repeatKvHeads(inputs.k, Hkv, Hq), Hq, Lk, D);
        data.v = transposeHeads(repeatKvHeads(inputs.v, Hkv, Hq), Hq, Lk, D);
      }
      const session = await o.InferenceSession.create(model.bytes, resolveSessionOptions(options));
      return {
        ...(placement && { placement }),
        async run() {
          const feeds: Record<string, OrtTensor> = {};
          for (const input of model.inputs)
            feeds[input.name] = new o.Tensor('float32', data[input.name], input.dims);
          const result = await session.run(feeds);
          const out = result.o;
          let output = out.data as Float32Array;
          if (!(output instanceof Float32Array)) throw new Error('onnxruntime returned a non-float32 output');
          output = output.slice();
          out.dispose?.();
          // MHA's [L, H, D] output back to the spec's [H, L, D], for the correctness check
          return variant === 'mha' ? transposeHeads(output, Lq, Hq, D) : output;
        },
        async dispose() {
          await session.release();
        },
      };
    },
    memory() {
      return { hostBytes: null, deviceBytes: null };
    },
    async dispose() {
      ort = null;
      placements?.clear();
    },
  };
}
