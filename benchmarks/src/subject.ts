import type { AttentionBackend, BackendFactory, Tolerance } from '@attnkit/spec';
import type { Workload, WorkloadInputs } from './workloads.js';

/** One timed call, ready to repeat: inputs are already where the subject keeps them. */
export interface PreparedRun {
  /** Runs attention once and resolves with the output `[B, Hq, Lq, Dv]` read back to the host. */
  run(): Promise<Float32Array>;
  /** onnxruntime peers: where the session's nodes ran. */
  placement?: PlacementCheck;
  /** Frees what `prepare` made. */
  dispose(): Promise<void> | void;
}

/** What a forward pass of a backward workload hands to the backward. */
export interface ForwardPass {
  /** `[B, Hq, Lq, Dv]`, read back to the host. */
  output: Float32Array;
  /** `[B, Hq, Lq]`; `null` for a subject whose backward does not read it (TF.js differentiates its own graph). */
  lse: Float32Array | null;
}

/** The gradients every backward subject returns, read back to the host. */
export interface GradientSet {
  /** `[B, Hq, Lq, D]`. */
  gradQ: Float32Array;
  /** `[B, Hkv, Lk, D]`, summed over the query heads of a group. */
  gradK: Float32Array;
  /** `[B, Hkv, Lk, Dv]`, summed like `gradK`. */
  gradV: Float32Array;
}

/** One forward + backward, ready to repeat: inputs and `gradOutput` are already where the subject keeps them. */
export interface PreparedBackward {
  /** The forward alone (with lse where the subject's backward reads it). */
  forward(): Promise<ForwardPass>;
  /** The backward from that forward's result. */
  backward(forward: ForwardPass): Promise<GradientSet>;
  /**
   * True when `backward` cannot start from a forward's result and runs the forward again inside
   * (`tf.grads` differentiates by re-running its graph on a tape): then `backward` alone is the
   * forward + backward time, and the backward's own time is derived as `backward - forward`.
   */
  readonly backwardIncludesForward: boolean;
  dispose(): Promise<void> | void;
}

/** Where onnxruntime put a decode session's nodes, against the provider its label promises. */
export interface PlacementCheck {
  expected: string;
  /** Provider -> nodes, from the session's verbose log; `null` when the log was not available. */
  nodes: Record<string, number> | null;
  /** The other providers that got nodes (`CPUExecutionProvider`), or `null` when all sat on `expected`. */
  fallback: string | null;
}

/**
 * One decode step of a `decode-cache` workload, ready to repeat. The subject holds the first
 * `Lk - 1` tokens (a resident cache, or for a stateless call the caller's K/V arrays); a step
 * appends the last token's K/V, attends with its query and reads `[B, Hq, 1, Dv]` back.
 */
export interface PreparedDecode {
  /** The timed step. */
  step(): Promise<Float32Array>;
  /** Untimed, after each step: back to `Lk - 1` tokens, so every step attends over the same `Lk`. */
  rewind?(): Promise<void>;
  /** onnxruntime peers: where the session's nodes ran. */
  placement?: PlacementCheck;
  dispose(): Promise<void> | void;
}

/** What a subject reports after `init`. */
export interface SubjectInfo {
  /** What actually runs, e.g. "wasm simd128, 2 threads" or "onnxruntime-node 1.30 (CPU EP)". */
  engine: string;
  threads: number;
  notes: readonly string[];
}

/** Bytes a subject holds right now; `null` where it cannot be measured. */
export interface SubjectMemory {
  hostBytes: number | null;
  deviceBytes: number | null;
}

/**
 * Anything the bench can time: an attnkit backend or a peer library. Peers and backends sit behind the
 * same interface so the runner treats them alike and a ratio compares like with like.
 */
export interface Subject {
  /** Stable id, used as the JSON key and table column: `cpu`, `ort-web-1t-attention`. */
  readonly id: string;
  /** `attnkit` for our backends, `peer` for the libraries we compare against. */
  readonly kind: 'attnkit' | 'peer';
  /** Peers with several variants share a family (`ort-web-1t`), for best-of reporting. */
  readonly family: string;
  /** Human description. */
  readonly label: string;
  /** The correctness tolerance applied to this subject's outputs. */
  readonly tolerance: Tolerance;
  init(): Promise<SubjectInfo>;
  prepare(w: Workload, inputs: WorkloadInputs): Promise<PreparedRun>;
  /**
   * A forward + backward of a `backward` workload. Absent: the subject has no backward pass (the
   * runner reports its backward rows "not applicable").
   */
  prepareBackward?(w: Workload, inputs: WorkloadInputs): Promise<PreparedBackward>;
  /**
   * Why this subject, initialised, cannot run the workload at all (not an error: an attnkit backend
   * whose capabilities lack `backward`), or `null` when it can.
   */
  notApplicable?(w: Workload): string | null;
  /** A `decode-cache` step. Absent: the subject has no decode path (its rows are "not applicable"). */
  prepareDecode?(w: Workload, inputs: WorkloadInputs): Promise<PreparedDecode>;
  memory(): SubjectMemory;
  dispose(): Promise<void>;
}

/** The tolerance applied to peers (float32 libraries with their own summation orders). */
export const PEER_TOLERANCE: Tolerance = { atol: 2e-4, rtol: 2e-3 };

/** `[1, H, L, D]` rows `from..to` of every head, as a new `[1, H, to - from, D]` buffer. */
export function sliceTokens(
  x: Float32Array,
  heads: number,
  length: number,
  dim: number,
  from: number,
  to: number,
): Float32Array {
  const out = new Float32Array(heads * (to - from) * dim);
  for (let h = 0; h < heads; h++)
    out.set(x.subarray((h * length + from) * dim, (h * length + to) * dim), h * (to - from) * dim);
  return out;
}

/**
 * How an attnkit subject runs `decode-cache`: `cache` through `createKVCache` (needs `kvCache` in
 * the capabilities), `stateless` through `attention` over the whole K/V each step (the baseline).
 */
export type DecodePath = 'cache' | 'stateless';

/** A decode step through the backend's resident cache: prefill `Lk - 1` tokens once, then append + attend. */
async function cacheDecode(b: AttentionBackend, inputs: WorkloadInputs): Promise<PreparedDecode> {
  const { batch: B, kvHeads: Hkv, queryHeads: Hq, keyLength: Lk, headDim: D, valueDim: Dv } = inputs.shape;
  const past = Lk - 1;
  const cache = await b.createKVCache({ batch: B, kvHeads: Hkv, headDim: D, valueDim: Dv, capacity: Lk });
  try {
    if (past > 0)
      await cache.append({
        k: sliceTokens(inputs.k, Hkv, Lk, D, 0, past),
        v: sliceTokens(inputs.v, Hkv, Lk, Dv, 0, past),
        tokens: past,
      });
  } catch (error) {
    await cache.dispose();
    throw error;
  }
  const k = sliceTokens(inputs.k, Hkv, Lk, D, past, Lk);
  const v = sliceTokens(inputs.v, Hkv, Lk, Dv, past, Lk);
  const query = { q: inputs.q, queryHeads: Hq, queryLength: 1 };
  return {
    async step() {
      await cache.append({ k, v, tokens: 1 });
      return (await cache.attention(query, { causal: true })).output;
    },
    rewind: () => cache.truncate(past),
    dispose: () => cache.dispose(),
  };
}

/** Wraps an attnkit backend factory as a {@link Subject}. */
export function backendSubject(
  id: string,
  label: string,
  factory: BackendFactory,
  decodePath: DecodePath = 'cache',
): Subject {
  let backend: AttentionBackend | null = null;
  let tolerance: Tolerance = { atol: 1e-4, rtol: 1e-3 };
  const subject: Subject = {
    id,
    kind: 'attnkit',
    family: id,
    label,
    get tolerance() {
      return tolerance;
    },
    async init() {
      backend = await factory();
      await backend.init();
      const caps = backend.capabilities;
      tolerance = caps.tolerance;
      return { engine: caps.engine, threads: caps.threads, notes: caps.notes };
    },
    async prepare(w, inputs) {
      const b = backend;
      if (b === null) throw new Error(`${id}: prepare before init`);
      const call = { q: inputs.q, k: inputs.k, v: inputs.v, shape: inputs.shape };
      const options = { causal: w.causal };
      return {
        run: async () => (await b.attention(call, options)).output,
        dispose() {},
      };
    },
    notApplicable(w) {
      if (backend === null) return null;
      if (w.mode === 'decode-cache')
        return decodePath === 'stateless' || backend.capabilities.features.includes('kvCache')
          ? null
          : "capabilities do not list 'kvCache' (no createKVCache yet)";
      if (w.mode !== 'backward') return null;
      // read from the capabilities, so a backend picks the mode up the day it lists the feature
      return backend.capabilities.features.includes('backward')
        ? null
        : "capabilities do not list 'backward' (no attentionBackward yet)";
    },
    async prepareBackward(w, inputs) {
      const b = backend;
      if (b === null) throw new Error(`${id}: prepareBackward before init`);
      const { gradOutput } = inputs;
      if (gradOutput === undefined) throw new Error(`${id}: ${w.id} has no gradOutput`);
      const call = { q: inputs.q, k: inputs.k, v: inputs.v, shape: inputs.shape };
      const options = { causal: w.causal };
      return {
        backwardIncludesForward: false,
        forward: async () => {
          const result = await b.attention(call, { ...options, returnLse: true });
          return { output: result.output, lse: result.lse };
        },
        backward: async (forward) => {
          if (forward.lse === null) throw new Error(`${id}: backward without the forward's lse`);
          const grads = await b.attentionBackward(
            { ...call, output: forward.output, lse: forward.lse, gradOutput },
            options,
          );
          return { gradQ: grads.gradQ, gradK: grads.gradK, gradV: grads.gradV };
        },
        dispose() {},
      };
    },
    async prepareDecode(w, inputs) {
      const b = backend;
      if (b === null) throw new Error(`${id}: prepareDecode before init`);
      if (decodePath === 'cache') return cacheDecode(b, inputs);
      // the stateless baseline: the caller keeps the K/V and passes all of it every step
      const call = { q: inputs.q, k: inputs.k, v: inputs.v, shape: inputs.shape };
      return {
        step: async () => (await b.attention(call, { causal: w.causal })).output,
        dispose() {},
      };
    },
    memory() {
      if (backend === null) return { hostBytes: null, deviceBytes: null };
      const m = backend.memory();
      return { hostBytes: m.hostBytes, deviceBytes: m.deviceBytes };
    },
    async dispose() {
      await backend?.dispose();
      backend = null;
    },
  };
  return subject;
}
