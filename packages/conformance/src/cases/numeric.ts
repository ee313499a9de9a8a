import type { AttentionShape } from '@attnkit/spec';
import type { DataSource } from '../random.js';
import type { ConformanceCase } from '../types.js';
import { attentionCase, biasOf, full, layerCase, matmulCase } from './helpers.js';

const SHAPE: AttentionShape = { batch: 1, queryHeads: 2, queryLength: 5, headDim: 4 };

/** Inputs with one value planted in `tensor` at flat `index`. */
function planted(tensor: 'q' | 'k' | 'v', index: number, value: number) {
  return (data: DataSource, shape: AttentionShape) => {
    const s = full(shape);
    const inputs = {
      q: data.uniform(s.batch * s.queryHeads * s.queryLength * s.headDim),
      k: data.uniform(s.batch * s.kvHeads * s.keyLength * s.headDim),
      v: data.uniform(s.batch * s.kvHeads * s.keyLength * s.valueDim),
      shape,
    };
    inputs[tensor][index] = value;
    return inputs;
  };
}

function nonFiniteCases(): ConformanceCase[] {
  const full3 = { returnLse: true, returnWeights: true };
  return [
    attentionCase('nonfinite/nan-in-q', 'NaN in one query: that row is NaN, the others are not', {
      shape: SHAPE,
      inputs: planted('q', 6, Number.NaN),
      options: full3,
    }),
    attentionCase('nonfinite/inf-in-q', '+Infinity in one query element (IEEE: +-Inf logits, NaN rows)', {
      shape: SHAPE,
      inputs: planted('q', 9, Number.POSITIVE_INFINITY),
      options: full3,
    }),
    attentionCase('nonfinite/neg-inf-in-k', '-Infinity in one key element', {
      shape: SHAPE,
      inputs: planted('k', 13, Number.NEGATIVE_INFINITY),
      options: full3,
    }),
    attentionCase('nonfinite/nan-in-k', 'NaN in a visible key: every row that sees it is NaN', {
      shape: SHAPE,
      inputs: planted('k', 4, Number.NaN),
      options: { causal: true, ...full3 },
    }),
    attentionCase('nonfinite/nan-in-v', 'NaN in a visible value: that column of rows that see it is NaN', {
      shape: SHAPE,
      inputs: planted('v', 5, Number.NaN),
      options: { causal: true },
    }),
    attentionCase('nonfinite/inf-in-v', '+Infinity in a visible value', {
      shape: SHAPE,
      inputs: planted('v', 10, Number.POSITIVE_INFINITY),
      options: { returnLse: true },
    }),
    attentionCase('nonfinite/mixed-inf-in-v', '+Infinity and -Infinity in one value column: NaN', {
      shape: { batch: 1, queryHeads: 1, queryLength: 3, headDim: 2 },
      inputs: (data, shape) => {
        const v = data.uniform(6);
        v[0] = Number.POSITIVE_INFINITY;
        v[4] = Number.NEGATIVE_INFINITY;
        return { q: data.uniform(6), k: data.uniform(6), v, shape };
      },
    }),
    attentionCase('nonfinite/nan-in-bias', 'NaN in a visible bias entry', {
      shape: SHAPE,
      options: (data, s) => {
        const bias = biasOf(data, s);
        bias.data[7] = Number.NaN;
        return { bias, ...full3 };
      },
    }),
    attentionCase('nonfinite/pos-inf-in-bias', '+Infinity in a bias entry: the row is NaN (Inf - Inf)', {
      shape: SHAPE,
      options: (data, s) => {
        const bias = biasOf(data, s, [false, false, true, true]);
        bias.data[3] = Number.POSITIVE_INFINITY;
        return { bias, ...full3 };
      },
    }),
    attentionCase('nonfinite/neg-inf-in-bias', '-Infinity in bias entries: those keys get weight 0', {
      shape: SHAPE,
      options: (data, s) => {
        const bias = biasOf(data, s, [false, true, true, true]);
        bias.data[1] = Number.NEGATIVE_INFINITY;
        bias.data[12] = Number.NEGATIVE_INFINITY;
        return { bias, ...full3 };
      },
    }),
    attentionCase('nonfinite/nan-in-q-causal-gqa', 'NaN in a query with causal GQA', {
      shape: { batch: 1, queryHeads: 4, kvHeads: 2, queryLength: 4, headDim: 3 },
      inputs: planted('q', 3 * 12 + 5, Number.NaN),
      options: { causal: true, returnLse: true },
    }),
    matmulCase(
      'nonfinite/matmul-nan-inf',
      'matmul with NaN and Infinity in a and b',
      5,
      4,
      3,
      true,
      (inputs) => {
        inputs.a[2] = Number.NaN;
        inputs.b[7] = Number.POSITIVE_INFINITY;
      },
    ),
  ];
}

function layerCases(): ConformanceCase[] {
  const self = { batch: 2, queryLength: 5, modelDim: 8, queryHeads: 2, headDim: 4 };
  return [
    layerCase('layer/self', 'multi-head attention layer, self-attention', self, false, false),
    layerCase('layer/self-biases', 'layer with projection biases', self, false, true),
    layerCase('layer/self-causal-lse-weights', 'layer, causal, lse and weights', self, false, true, {
      causal: true,
      returnLse: true,
      returnWeights: true,
    }),
    layerCase(
      'layer/cross',
      'layer, cross-attention from x to a context',
      { ...self, keyLength: 7 },
      true,
      false,
    ),
    layerCase(
      'layer/cross-biases-keyMask',
      'cross-attention layer with biases and a padding mask',
      { ...self, keyLength: 7 },
      true,
      true,
      (data) => ({ keyMask: data.mask(2 * 7) }),
    ),
    layerCase(
      'layer/gqa-causal',
      'GQA layer (4:2) with causal and Dv != D',
      { batch: 1, queryLength: 6, modelDim: 12, queryHeads: 4, kvHeads: 2, headDim: 3, valueDim: 2 },
      false,
      true,
      { causal: true },
    ),
    layerCase(
      'layer/mqa-cross-options',
      'MQA cross layer with alibi, sinks and softcap',
      { batch: 1, queryLength: 3, keyLength: 6, modelDim: 6, queryHeads: 3, kvHeads: 1, headDim: 2 },
      true,
      true,
      {
        alibiSlopes: new Float32Array([0.25, 0.5, 1]),
        sinks: new Float32Array([0, 1, -1]),
        softcap: 2,
        returnLse: true,
      },
    ),
  ];
}

function matmulCases(): ConformanceCase[] {
  return [
    matmulCase('matmul/1x1x1', 'matmul 1x1 @ 1x1', 1, 1, 1, false),
    matmulCase('matmul/3x5x7', 'matmul 3x5 @ 5x7', 3, 5, 7, false),
    matmulCase('matmul/1x129x3-bias', 'matmul 1x129 @ 129x3 + bias', 1, 129, 3, true),
    matmulCase('matmul/17x33x9-bias', 'matmul 17x33 @ 33x9 + bias', 17, 33, 9, true),
    matmulCase('matmul/64x80x64', 'matmul 64x80 @ 80x64', 64, 80, 64, false),
    matmulCase('matmul/7x256x5-bias', 'matmul 7x256 @ 256x5 + bias', 7, 256, 5, true),
    matmulCase('matmul/65x3x130', 'matmul 65x3 @ 3x130', 65, 3, 130, false),
  ];
}

export function numericCases(): ConformanceCase[] {
  return [...nonFiniteCases(), ...layerCases(), ...matmulCases()];
}
