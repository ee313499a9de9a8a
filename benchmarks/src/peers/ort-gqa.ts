import { buildGqaDecodeModel } from '../onnx.js';
import { PEER_TOLERANCE, type Subject, sliceTokens } from '../subject.js';
import { type OrtModule, type OrtPeerOptions, type OrtTensor, resolveSessionOptions } from './ort.js';
import { placementCache } from './placement.js';

export { fallbackProviders, type NodePlacement, parseNodePlacements } from './placement.js';

/** The GQA peer's options: the placement check is required here. */
export interface OrtGqaPeerOptions extends OrtPeerOptions {
  expectedProvider: string;
}

/**
 * onnxruntime's decode op as a peer: one `com.microsoft.GroupQueryAttention` node with past/present
 * K/V, the op transformers.js runs per token. A `decode-cache` workload of `Lk = n` keys is one step
 * with the first `n - 1` tokens as `past_key` / `past_value` and the last one as the new token's
 * `k` / `v`; the step is `session.run` (it writes `present_*` itself, as in a decoder) and reading
 * `y` back. `y` is `[1, 1, Hq*D]`, the spec's `[1, Hq, 1, D]` in the same order for one query.
 */
export function ortGqaPeer(options: OrtGqaPeerOptions): Subject {
  let ort: OrtModule | null = null;
  const placements = placementCache(options.expectedProvider, options.placement);
  return {
    id: `${options.family}-gqa`,
    kind: 'peer',
    family: options.family,
    label: `${options.label} (GroupQueryAttention op, past/present K/V)`,
    tolerance: PEER_TOLERANCE,
    async init() {
      ort = await options.load();
      return { engine: options.engine, threads: options.threads, notes: [] };
    },
    notApplicable(w) {
      return w.mode === 'decode-cache' ? null : 'GroupQueryAttention runs only in the decode-cache mode';
    },
    async prepare() {
      throw new Error(`${options.family}-gqa: only the decode-cache mode (prepareDecode)`);
    },
    async prepareDecode(_w, inputs) {
      const o = ort;
      if (o === null) throw new Error(`${options.family}: prepareDecode before init`);
      const { queryHeads: Hq, kvHeads: Hkv, keyLength: Lk, headDim: D } = inputs.shape;
      if (Lk < 2) throw new Error('GroupQueryAttention decode needs at least one past token');
      const past = Lk - 1;
      const model = buildGqaDecodeModel({ queryHeads: Hq, kvHeads: Hkv, pastLength: past, headDim: D });
      const placement = await placements.check(`${Hq}/${Hkv}/${D}`, model.bytes);
      const data: Record<string, Float32Array | Int32Array> = {
        q: inputs.q,
        k: sliceTokens(inputs.k, Hkv, Lk, D, past, Lk),
        v: sliceTokens(inputs.v, Hkv, Lk, D, past, Lk),
        past_key: sliceTokens(inputs.k, Hkv, Lk, D, 0, past),
        past_value: sliceTokens(inputs.v, Hkv, Lk, D, 0, past),
        seqlens_k: new Int32Array([past]),
        total_sequence_length: new Int32Array([Lk]),
      };
      const session = await o.InferenceSession.create(model.bytes, resolveSessionOptions(options));
      return {
        placement,
        async step() {
          const feeds: Record<string, OrtTensor> = {};
          for (const input of model.inputs)
            feeds[input.name] =
              input.type === 'int32'
                ? new o.Tensor('int32', data[input.name] as Int32Array, input.dims)
                : new o.Tensor('float32', data[input.name] as Float32Array, input.dims);
          const result = await session.run(feeds);
          const y = result[model.output];
          if (!(y.data instanceof Float32Array)) throw new Error('onnxruntime returned a non-float32 output');
          const output = y.data.slice();
          for (const t of Object.values(result)) t.dispose?.();
          return output;
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
      placements.clear();
    },
  };
}
