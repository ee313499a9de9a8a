import { shapeSymbols } from '@attnkit/spec';
import { PEER_TOLERANCE, type Subject } from '../subject.js';
import { naiveBackward, naiveForwardWithLse } from './naive-backward.js';

/**
 * The obvious JavaScript: for each query, one loop for the scores, one for the softmax, one for the
 * weighted sum; a full score row, plain numbers, no blocking. The first column of the goals table in benchmarks/README.md.
 */
export function naivePeer(): Subject {
  return {
    id: 'naive-js',
    kind: 'peer',
    family: 'naive-js',
    label: 'naive JS (three loops; backward: textbook matrix formulas with Lq x Lk buffers)',
    tolerance: PEER_TOLERANCE,
    async init() {
      return {
        engine: 'plain JavaScript loops, float64 arithmetic, Float32Array storage',
        threads: 1,
        notes: [],
      };
    },
    async prepare(w, inputs) {
      const { q, k, v, shape } = inputs;
      const { Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(shape);
      const scale = 1 / Math.sqrt(D);
      const group = Hq / Hkv;
      const offset = Lk - Lq;
      return {
        async run() {
          const out = new Float32Array(Hq * Lq * Dv);
          const scores = new Float64Array(Lk);
          for (let h = 0; h < Hq; h++) {
            const g = Math.floor(h / group);
            for (let i = 0; i < Lq; i++) {
              const qBase = (h * Lq + i) * D;
              const end = w.causal ? Math.min(Lk, i + offset + 1) : Lk;
              let max = Number.NEGATIVE_INFINITY;
              for (let j = 0; j < end; j++) {
                const kBase = (g * Lk + j) * D;
                let dot = 0;
                for (let d = 0; d < D; d++) dot += q[qBase + d] * k[kBase + d];
                scores[j] = dot * scale;
                if (scores[j] > max) max = scores[j];
              }
              let sum = 0;
              for (let j = 0; j < end; j++) {
                scores[j] = Math.exp(scores[j] - max);
                sum += scores[j];
              }
              const oBase = (h * Lq + i) * Dv;
              for (let j = 0; j < end; j++) {
                const p = scores[j] / sum;
                const vBase = (g * Lk + j) * Dv;
                for (let d = 0; d < Dv; d++) out[oBase + d] += p * v[vBase + d];
              }
            }
          }
          return out;
        },
        dispose() {},
      };
    },
    async prepareBackward(w, inputs) {
      const { gradOutput } = inputs;
      if (gradOutput === undefined) throw new Error(`naive-js: ${w.id} has no gradOutput`);
      return {
        backwardIncludesForward: false,
        forward: async () => naiveForwardWithLse(inputs, w.causal),
        backward: async (forward) => naiveBackward(inputs, w.causal, gradOutput, forward),
        dispose() {},
      };
    },
    memory() {
      return { hostBytes: null, deviceBytes: null };
    },
    async dispose() {},
  };
}
