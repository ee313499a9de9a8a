import type { AttentionOptions, AttentionShape } from '@attnkit/spec';
import { expectRejection } from '../check.js';
import { DataSource } from '../random.js';
import type { ConformanceCase } from '../types.js';
import { attentionCase, customCase, everyOption, full, uniformInputs } from './helpers.js';

// Stateless attention with `precision: 'f16-storage'` (spec README, "f16 storage"): every result is
// checked twice by compareAttention, against the reference on q/k/v rounded to binary16 with the
// backend's float32 tolerance alone, and against the reference on the original inputs with the
// spec's declared bound on top. A backend without the `f16Storage` feature must reject each
// `unsupported`.

const F16: AttentionOptions = { precision: 'f16-storage' };

/** Uniform inputs in `[-scale, scale)`. */
function scaled(scale: number) {
  return (data: DataSource, shape: AttentionShape) => {
    const inputs = uniformInputs(data, shape);
    for (const t of [inputs.q, inputs.k, inputs.v]) for (let i = 0; i < t.length; i++) t[i] *= scale;
    return inputs;
  };
}

/** Every `f16-storage/*` case. */
export function f16StorageCases(): ConformanceCase[] {
  const base: AttentionShape = { batch: 2, queryHeads: 2, queryLength: 6, headDim: 4 };
  return [
    attentionCase('f16-storage/basic', 'q, k, v stored as binary16, default options', {
      shape: base,
      options: { ...F16, returnLse: true },
    }),
    attentionCase(
      'f16-storage/odd-dims',
      'odd head and value sizes (D 5, Dv 3): a row ends inside a packed word',
      {
        shape: { batch: 1, queryHeads: 2, queryLength: 7, keyLength: 9, headDim: 5, valueDim: 3 },
        options: { ...F16, returnLse: true },
      },
    ),
    attentionCase(
      'f16-storage/gqa-causal-tiled',
      'grouped-query causal prefill long enough for tiled kernels (Lq 40, D 64)',
      {
        shape: { batch: 1, queryHeads: 4, kvHeads: 2, queryLength: 40, headDim: 64 },
        options: { ...F16, causal: true, returnLse: true },
      },
    ),
    attentionCase('f16-storage/cross-valuedim', 'cross-attention with Dv != D (Lq 18, Lk 33, D 8, Dv 12)', {
      shape: { batch: 2, queryHeads: 2, queryLength: 18, keyLength: 33, headDim: 8, valueDim: 12 },
      options: F16,
    }),
    attentionCase('f16-storage/all-options', 'every option at once, lse and weights returned', {
      shape: { ...base, keyLength: 9 },
      options: (data, s) => ({ ...F16, ...everyOption(data, s) }),
    }),
    attentionCase(
      'f16-storage/large-values',
      'values near the top of binary16 (|x| up to 60000), scale 1e-9',
      {
        shape: base,
        inputs: scaled(60000),
        options: { ...F16, scale: 1e-9, returnLse: true },
      },
    ),
    attentionCase(
      'f16-storage/subnormal-values',
      'values in binary16 subnormal range (|x| < 2^-14): rounded or flushed',
      {
        shape: base,
        inputs: scaled(2 ** -15),
        options: { ...F16, scale: 1e4, returnLse: true },
      },
    ),
    attentionCase(
      'f16-storage/non-finite',
      'NaN in q and +Infinity in v pass through binary16 storage as in float32',
      {
        shape: { batch: 1, queryHeads: 2, queryLength: 5, headDim: 4 },
        inputs: (data, shape) => {
          const inputs = uniformInputs(data, shape);
          inputs.q[6] = Number.NaN;
          inputs.v[10] = Number.POSITIVE_INFINITY;
          return inputs;
        },
        options: { ...F16, causal: true, returnLse: true, returnWeights: true },
      },
    ),
    customCase(
      'f16-storage/bad-input/out-of-range',
      'a finite q, k or v value binary16 rounds to infinity (|x| >= 65520) rejects invalid-argument naming it',
      0,
      async (context) => {
        const backend = await context.backend();
        const shape = full(base);
        for (const name of ['q', 'k', 'v'] as const) {
          const data = uniformInputs(new DataSource(7), shape);
          data[name][3] = name === 'k' ? -65520 : 1e6;
          const outcome = await expectRejection(() => backend.attention(data, F16), 'invalid-argument', name);
          if (!outcome.ok) return { ...outcome, message: `${name}: ${outcome.message}` };
        }
        return { ok: true, expectation: 'reject-invalid-argument', message: null };
      },
    ),
    customCase(
      'f16-storage/bad-input/not-an-attention-call',
      "multiHeadAttention and attentionBackward reject precision 'f16-storage' invalid-argument naming options.precision",
      0,
      async (context) => {
        const backend = await context.backend();
        const shape = full(base);
        const data = uniformInputs(new DataSource(9), shape);
        const rows = shape.batch * shape.queryHeads * shape.queryLength;
        const output = new Float32Array(rows * shape.valueDim);
        const backward = await expectRejection(
          () =>
            backend.attentionBackward(
              { ...data, output, lse: new Float32Array(rows), gradOutput: output },
              F16,
            ),
          'invalid-argument',
          'options.precision',
        );
        if (!backward.ok) return { ...backward, message: `attentionBackward: ${backward.message}` };
        const M = 8;
        const square = () => new Float32Array(M * M);
        const layer = await expectRejection(
          () =>
            backend.multiHeadAttention(
              {
                x: new Float32Array(2 * M),
                weights: { wq: square(), wk: square(), wv: square(), wo: square() },
                shape: { batch: 1, queryLength: 2, modelDim: M, queryHeads: 2, headDim: 4 },
              },
              F16,
            ),
          'invalid-argument',
          'options.precision',
        );
        return layer.ok ? layer : { ...layer, message: `multiHeadAttention: ${layer.message}` };
      },
    ),
  ];
}
