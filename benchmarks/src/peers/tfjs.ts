import { shapeSymbols } from '@attnkit/spec';
import type * as TfCore from '@tensorflow/tfjs-core';
import { PEER_TOLERANCE, type Subject } from '../subject.js';
import { causalMask, repeatKvHeads } from '../workloads.js';

/**
 * Which TF.js backend: `cpu` (plain JS kernels), `wasm` (XNNPACK, SIMD) or `webgl` (fragment
 * shaders, the peer of `@attnkit/webgl`; browser only).
 */
export type TfjsBackendName = 'cpu' | 'wasm' | 'webgl';

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
      else if (backend === 'webgl') {
        // the @tensorflow/tfjs package registers its webgl backend on the same core instance
        await import('@tensorflow/tfjs');
      } else {
        const wasm = await import('@tensorflow/tfjs-backend-wasm');
        if (options.wasmPaths !== undefined) wasm.setWasmPaths(options.wasmPaths);
      }
      const ok = await core.setBackend(backend);
      if (!ok || core.getBackend() !== backend)
        throw new Error(`TF.js backend "${backend}" did not initialise`);
      tf = core;
      const notes: string[] = [];
      if (backend === 'wasm') notes.push('TF.js wasm uses one thread under Node');
      let engine = `TF.js ${core.version_core} ${backend}`;
      if (backend === 'webgl') {
        // half-float render targets would round every intermediate to 11 bits: refuse, never compare those
        if (!core.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED'))
          throw new Error('TF.js webgl: no float32 render targets here (it would compute in float16)');
        engine += ` (WebGL ${core.env().getNumber('WEBGL_VERSION')}, float32 textures)`;
      }
      return { engine, threads: 1, notes };
    },
    async prepare(w, inputs) {
      const t = tf;
      if (t === null) throw new Error('tfjs: prepare before init');
      const { Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(inputs.shape);
      // The kv heads are repeated once, outside the timing (a grouped-query layout TF.js cannot
      // express); the tensors themselves are made in each run, from host arrays.
      const kData = repeatKvHeads(inputs.k, Hkv, Hq);
      const vData = repeatKvHeads(inputs.v, Hkv, Hq);
      // decode's single query sees every key under bottom-right causality: no mask needed
      const mask = w.causal && Lq > 1 ? t.tensor2d(causalMask(Lq, Lk), [Lq, Lk]) : null;
      const scale = t.scalar(1 / Math.sqrt(D));
      return {
        // Host arrays in, host array out, as every other prefill subject: attnkit's attention() and
        // onnxruntime's feeds take q, k, v from the host on every call, so the run makes (uploads)
        // them too. A tensor made once in prepare would be uploaded at the first run and stay on the
        // device, and the timed runs would skip that work. The causal mask is a constant of the
        // workload (attnkit's causal flag uploads nothing either): made once, outside the timing.
        async run() {
          const out = t.tidy(() => {
            const q = t.tensor3d(inputs.q, [Hq, Lq, D]);
            const k = t.tensor3d(kData, [Hq, Lk, D]);
            const v = t.tensor3d(vData, [Hq, Lk, Dv]);
            let s = t.mul(t.matMul(q, k, false, true), scale);
            if (mask !== null) s = t.add(s, mask);
            return t.matMul(t.softmax(s), v);
          });
          const data = (await out.data()) as Float32Array;
          out.dispose();
          return data;
        },
        dispose() {
          for (const x of [mask, scale]) x?.dispose();
        },
      };
    },
    async prepareBackward(w, inputs) {
      const t = tf;
      if (t === null) throw new Error('tfjs: prepareBackward before init');
      const { gradOutput } = inputs;
      if (gradOutput === undefined) throw new Error(`tfjs: ${w.id} has no gradOutput`);
      // tfjs-core registers no gradient functions; the @tensorflow/tfjs package (what a user imports to
      // train) registers TF.js's own, on the same core instance
      await import('@tensorflow/tfjs');
      // the gradients must come from the backend named in the id, not a fallback TF.js chose
      if (t.getBackend() !== backend) throw new Error(`TF.js runs on "${t.getBackend()}", not "${backend}"`);
      const { Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(inputs.shape);
      const group = Hq / Hkv;
      const q = t.tensor3d(inputs.q, [Hq, Lq, D]);
      const k = t.tensor3d(repeatKvHeads(inputs.k, Hkv, Hq), [Hq, Lk, D]);
      const v = t.tensor3d(repeatKvHeads(inputs.v, Hkv, Hq), [Hq, Lk, Dv]);
      const dy = t.tensor3d(gradOutput, [Hq, Lq, Dv]);
      const mask = w.causal && Lq > 1 ? t.tensor2d(causalMask(Lq, Lk), [Lq, Lk]) : null;
      const scale = t.scalar(1 / Math.sqrt(D));
      // the composed attention as a user differentiates it: tf.grads tapes this function and walks the
      // tape back, keeping every intermediate (the Lq x Lk scores and probabilities) alive meanwhile
      const attention = (qq: TfCore.Tensor, kk: TfCore.Tensor, vv: TfCore.Tensor) => {
        let s = t.mul(t.matMul(qq, kk, false, true), scale);
        if (mask !== null) s = t.add(s, mask);
        return t.matMul(t.softmax(s), vv);
      };
      const gradients = t.grads((qq, kk, vv) => attention(qq, kk, vv));
      // a repeated kv head's gradient is the sum over the query heads that read it
      const sumGroups = (x: TfCore.Tensor, length: number, dim: number) =>
        group === 1 ? x : t.sum(t.reshape(x, [Hkv, group, length, dim]), 1);
      const read = async (x: TfCore.Tensor) => {
        const data = (await x.data()) as Float32Array;
        x.dispose();
        return data;
      };
      return {
        backwardIncludesForward: true,
        async forward() {
          const out = t.tidy(() => attention(q, k, v));
          return { output: await read(out), lse: null };
        },
        async backward() {
          const [dq, dk, dv] = t.tidy(() => {
            const [gq, gk, gv] = gradients([q, k, v], dy);
            return [gq, sumGroups(gk, Lk, D), sumGroups(gv, Lk, Dv)];
          });
          return { gradQ: await read(dq), gradK: await read(dk), gradV: await read(dv) };
        },
        dispose() {
          for (const x of [q, k, v, dy, mask, scale]) x?.dispose();
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
