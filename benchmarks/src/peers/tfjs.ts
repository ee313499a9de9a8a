import type * as TfCore from '@tensorflow/tfjs-core';
import { PEER_TOLERANCE, type Subject } from '../subject.js';
import { causalMask, repeatKvHeads } from '../workloads.js';

/** Which TF.js backend: `cpu` (plain JS kernels) or `wasm` (XNNPACK, SIMD). */
export type TfjsBackendName = 'cpu' | 'wasm';

/** Where the TF.js wasm binaries live: a directory path (Node) or URL prefix (browser) ending in `/`. */
export interface TfjsPeerOptions {
  wasmPaths?: string;
}

/**
 * TF.js 4.22 as a user writes attention with it: `softmax(q k^T * scale + mask) v`, one head per batch
 * entry, key/value heads repeated for grouped-query workloads (TF.js has no grouped matmul).
 */
export function tfjsPeer(backend: TfjsBackendName, options: TfjsPeerOptions = {}): Subject {
  let tf: typeof TfCore | null = null;
  return {
    id: `tfjs-${backend}`,
    kind: 'peer',
    family: `tfjs-${backend}`,
    label: `TF.js 4.22 ${backend}`,
    tolerance: PEER_TOLERANCE,
    async init() {
      const core = await import('@tensorflow/tfjs-core');
      if (backend === 'cpu') await import('@tensorflow/tfjs-backend-cpu');
      else {
        const wasm = await import('@tensorflow/tfjs-backend-wasm');
        if (options.wasmPaths !== undefined) wasm.setWasmPaths(options.wasmPaths);
      }
      const ok = await core.setBackend(backend);
      if (!ok || core.getBackend() !== backend)
        throw new Error(`TF.js backend "${backend}" did not initialise`);
      tf = core;
      const notes: string[] = [];
      if (backend === 'wasm') notes.push('TF.js wasm uses one thread under Node');
      return { engine: `TF.js ${core.version_core} ${backend}`, threads: 1, notes };
    },
    async prepare(w, inputs) {
      const t = tf;
      if (t === null) throw new Error('tfjs: prepare before init');
      const {
        queryHeads: Hq,
        kvHeads: Hkv,
        queryLength: Lq,
        keyLength: Lk,
        headDim: D,
        valueDim: Dv,
      } = inputs.shape;
      const q = t.tensor3d(inputs.q, [Hq, Lq, D]);
      const k = t.tensor3d(repeatKvHeads(inputs.k, Hkv, Hq), [Hq, Lk, D]);
      const v = t.tensor3d(repeatKvHeads(inputs.v, Hkv, Hq), [Hq, Lk, Dv]);
      // decode's single query sees every key under bottom-right causality: no mask needed
      const mask = w.causal && Lq > 1 ? t.tensor2d(causalMask(Lq, Lk), [Lq, Lk]) : null;
      const scale = t.scalar(1 / Math.sqrt(D));
      return {
        async run() {
          const out = t.tidy(() => {
            let s = t.mul(t.matMul(q, k, false, true), scale);
            if (mask !== null) s = t.add(s, mask);
            return t.matMul(t.softmax(s), v);
          });
          const data = (await out.data()) as Float32Array;
          out.dispose();
          return data;
        },
        dispose() {
          for (const x of [q, k, v, mask, scale]) x?.dispose();
        },
      };
    },
    memory() {
      return { hostBytes: tf === null ? null : tf.memory().numBytes, deviceBytes: null };
    },
    async dispose() {
      tf?.disposeVariables();
    },
  };
}
