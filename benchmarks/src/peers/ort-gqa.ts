import { buildGqaDecodeModel } from '../onnx.js';
import { PEER_TOLERANCE, type Subject, sliceTokens } from '../subject.js';
import type { OrtModule, OrtPeerOptions, OrtTensor } from './ort.js';

/**
 * Where onnxruntime placed a session's nodes, read from its verbose log ("Node placements"):
 * execution provider -> node count. `null` when the log could not be obtained (then the row is not
 * marked either way and says so).
 */
export type NodePlacement = Record<string, number> | null;

/** The GQA peer's extra: how to find where a session's nodes ran. */
export interface OrtGqaPeerOptions extends OrtPeerOptions {
  /** The execution provider the label promises (`CPUExecutionProvider`, `WasmExecutionProvider`...). */
  expectedProvider: string;
  /** Creates a session of `model` with verbose logging and returns where its nodes went. */
  placement?(model: Uint8Array): Promise<NodePlacement>;
}

/**
 * Parses onnxruntime's verbose session log. ORT 1.17+ writes, per provider, either
 * `All nodes placed on [CPUExecutionProvider]. Number of nodes: 1` or
 * `Node(s) placed on [CPUExecutionProvider]. Number of nodes: 3` under a "Node placements" header.
 */
export function parseNodePlacements(log: string): NodePlacement {
  const placement: Record<string, number> = {};
  const pattern = /(?:All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)/g;
  for (let m = pattern.exec(log); m !== null; m = pattern.exec(log))
    placement[m[1]] = (placement[m[1]] ?? 0) + Number(m[2]);
  return Object.keys(placement).length === 0 ? null : placement;
}

/** The providers other than `expected` that got nodes, e.g. `CPUExecutionProvider` for a WebGPU label. */
export function fallbackProviders(placement: NodePlacement, expected: string): string[] {
  if (placement === null) return [];
  return Object.keys(placement).filter((ep) => ep !== expected && (placement[ep] ?? 0) > 0);
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
  const placements = new Map<string, NodePlacement>();
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
      // placement depends on the op, its types and head sizes, not on the cache length: probed once
      // per head layout (at the series' gate), since each probe starts a process
      const key = `${Hq}/${Hkv}/${D}`;
      let placement = placements.get(key);
      if (placement === undefined && options.placement !== undefined) {
        placement = await options.placement(model.bytes);
        placements.set(key, placement);
      }
      placement ??= null;
      const fallback = fallbackProviders(placement, options.expectedProvider);
      const data: Record<string, Float32Array | Int32Array> = {
        q: inputs.q,
        k: sliceTokens(inputs.k, Hkv, Lk, D, past, Lk),
        v: sliceTokens(inputs.v, Hkv, Lk, D, past, Lk),
        past_key: sliceTokens(inputs.k, Hkv, Lk, D, 0, past),
        past_value: sliceTokens(inputs.v, Hkv, Lk, D, 0, past),
        seqlens_k: new Int32Array([past]),
        total_sequence_length: new Int32Array([Lk]),
      };
      const session = await o.InferenceSession.create(model.bytes, options.sessionOptions);
      return {
        placement: {
          expected: options.expectedProvider,
          nodes: placement,
          fallback: fallback.length > 0 ? fallback.join(', ') : null,
        },
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
