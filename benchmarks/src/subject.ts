import type { AttentionBackend, BackendFactory, Tolerance } from '@attnkit/spec';
import type { Workload, WorkloadInputs } from './workloads.js';

/** One timed call, ready to repeat: inputs are already where the subject keeps them. */
export interface PreparedRun {
  /** Runs attention once and resolves with the output `[B, Hq, Lq, Dv]` read back to the host. */
  run(): Promise<Float32Array>;
  /** Frees what `prepare` made. */
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
  memory(): SubjectMemory;
  dispose(): Promise<void>;
}

/** The tolerance applied to peers (float32 libraries with their own summation orders). */
export const PEER_TOLERANCE: Tolerance = { atol: 2e-4, rtol: 2e-3 };

/** Wraps an attnkit backend factory as a {@link Subject}. */
export function backendSubject(id: string, label: string, factory: BackendFactory): Subject {
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
