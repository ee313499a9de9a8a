import type { AttentionOptions, AttentionShape } from '@attnkit/spec';
import type { DataSource } from '../random.js';
import type { ConformanceCase } from '../types.js';
import { type AttentionCaseSpec, at, attentionCase, biasOf, everyOption, full } from './helpers.js';

const BASE: AttentionShape = { batch: 2, queryHeads: 2, queryLength: 6, headDim: 4 };

type Pattern = [boolean, boolean, boolean, boolean];

function patternName(pattern: Pattern): string {
  const names = ['B', 'Hq', 'Lq', 'Lk'];
  return `[${pattern.map((on, axis) => (on ? names[axis] : '1')).join(',')}]`;
}

/** Every option of the spec's semantics alone, and every broadcast pattern of the bias. */
function optionCases(): ConformanceCase[] {
  const cases: ConformanceCase[] = [
    attentionCase('options/default-scale', 'default scale 1/sqrt(D)', { shape: BASE }),
    attentionCase('options/scale-0.37', 'explicit scale 0.37', { shape: BASE, options: { scale: 0.37 } }),
    attentionCase('options/scale-negative', 'negative scale -0.8', { shape: BASE, options: { scale: -0.8 } }),
    attentionCase('options/scale-zero', 'scale 0: uniform weights, output = mean of values', {
      shape: BASE,
      options: { scale: 0, returnLse: true },
    }),
    attentionCase('options/scale-large', 'scale 6: peaked softmax', { shape: BASE, options: { scale: 6 } }),
    attentionCase('options/causal', 'causal mask', { shape: BASE, options: { causal: true } }),
    attentionCase('options/window-1', 'slidingWindow 1 without causal: only the diagonal', {
      shape: BASE,
      options: { slidingWindow: 1 },
    }),
    attentionCase('options/window-3', 'slidingWindow 3 without causal: symmetric band', {
      shape: BASE,
      options: { slidingWindow: 3 },
    }),
    attentionCase('options/window-larger-than-sequence', 'slidingWindow 100 > L: no effect', {
      shape: BASE,
      options: { slidingWindow: 100 },
    }),
    attentionCase('options/window-3-causal', 'slidingWindow 3 with causal: band below the diagonal', {
      shape: BASE,
      options: { slidingWindow: 3, causal: true },
    }),
    attentionCase('options/window-1-causal', 'slidingWindow 1 with causal: each query sees only itself', {
      shape: BASE,
      options: { slidingWindow: 1, causal: true, returnLse: true },
    }),
    attentionCase('options/keyMask', 'keyMask: random padding per batch row', {
      shape: BASE,
      options: (data, s) => ({ keyMask: data.mask(s.batch * s.keyLength) }),
    }),
    attentionCase('options/keyMask-prefix', 'keyMask: right padding of different lengths per batch', {
      shape: BASE,
      options: (_data, s) => {
        const mask = new Uint8Array(s.batch * s.keyLength);
        for (let b = 0; b < s.batch; b++)
          for (let j = 0; j < s.keyLength - 2 * b - 1; j++) mask[b * s.keyLength + j] = 1;
        return { keyMask: mask };
      },
    }),
    attentionCase('options/alibi', 'alibiSlopes without causal (distance penalty both ways)', {
      shape: BASE,
      options: { alibiSlopes: new Float32Array([0.5, 0.125]) },
    }),
    attentionCase('options/alibi-causal', 'alibiSlopes with causal', {
      shape: BASE,
      options: { alibiSlopes: new Float32Array([0.25, 1]), causal: true },
    }),
    attentionCase('options/softcap-tight', 'softcap 0.5 on scale-4 scores (tanh saturates)', {
      shape: BASE,
      options: { softcap: 0.5, scale: 4 },
    }),
    attentionCase('options/softcap-loose', 'softcap 30 (almost linear)', {
      shape: BASE,
      options: { softcap: 30 },
    }),
    attentionCase('options/sinks', 'sinks: one extra logit per head in the denominator', {
      shape: BASE,
      options: { sinks: new Float32Array([0.5, -1]) },
    }),
    attentionCase('options/sinks-large', 'sinks 3: the sink takes most of the mass', {
      shape: BASE,
      options: { sinks: new Float32Array([3, 2.5]), returnLse: true },
    }),
    attentionCase('options/sinks-negative-infinity', 'a sink of -Infinity is no sink', {
      shape: BASE,
      options: { sinks: new Float32Array([Number.NEGATIVE_INFINITY, 0.25]), returnLse: true },
    }),
    attentionCase('options/returnLse', 'returnLse', { shape: BASE, options: { returnLse: true } }),
    attentionCase('options/returnWeights', 'returnWeights', {
      shape: BASE,
      options: { returnWeights: true },
    }),
    attentionCase('options/lse-and-weights', 'returnLse and returnWeights together', {
      shape: BASE,
      options: { returnLse: true, returnWeights: true },
    }),
    attentionCase('options/all', 'every option at once', {
      shape: BASE,
      options: everyOption,
    }),
  ];
  for (let bits = 0; bits < 16; bits++) {
    const pattern: Pattern = [(bits & 8) !== 0, (bits & 4) !== 0, (bits & 2) !== 0, (bits & 1) !== 0];
    cases.push(
      attentionCase(
        `options/bias-${patternName(pattern)}`,
        `bias of shape ${patternName(pattern)} broadcast`,
        {
          shape: { ...BASE, queryLength: 5, keyLength: 7 },
          options: (data, s) => ({ bias: biasOf(data, s, pattern) }),
        },
      ),
    );
  }
  return cases;
}

function comboCases(): ConformanceCase[] {
  const combos: [string, string, AttentionCaseSpec][] = [
    [
      'causal-keyMask',
      'causal and keyMask',
      { shape: BASE, options: (d, s) => ({ causal: true, keyMask: d.mask(s.batch * s.keyLength) }) },
    ],
    [
      'causal-bias',
      'causal and full bias',
      { shape: BASE, options: (d, s) => ({ causal: true, bias: biasOf(d, s) }) },
    ],
    [
      'causal-alibi-lse',
      'causal, alibi, lse',
      { shape: BASE, options: { causal: true, alibiSlopes: new Float32Array([0.3, 0.7]), returnLse: true } },
    ],
    [
      'causal-softcap',
      'causal and softcap',
      { shape: BASE, options: { causal: true, softcap: 1.5, scale: 2 } },
    ],
    [
      'causal-sinks-lse',
      'causal, sinks, lse (the sink enters lse)',
      { shape: BASE, options: { causal: true, sinks: new Float32Array([1, -0.5]), returnLse: true } },
    ],
    [
      'window-keyMask',
      'slidingWindow and keyMask',
      { shape: BASE, options: (d, s) => ({ slidingWindow: 2, keyMask: d.mask(s.batch * s.keyLength) }) },
    ],
    [
      'window-bias-alibi',
      'slidingWindow (no causal), bias and alibi',
      {
        shape: BASE,
        options: (d, s) => ({
          slidingWindow: 3,
          bias: biasOf(d, s, [false, true, true, true]),
          alibiSlopes: new Float32Array([0.2, 0.4]),
        }),
      },
    ],
    [
      'softcap-bias-alibi',
      'softcap applies before bias and alibi',
      {
        shape: BASE,
        options: (d, s) => ({
          softcap: 0.75,
          scale: 3,
          bias: biasOf(d, s),
          alibiSlopes: new Float32Array([0.5, 0.25]),
          returnLse: true,
        }),
      },
    ],
    [
      'sinks-keyMask-weights',
      'sinks, keyMask and weights (weights exclude the sink)',
      {
        shape: BASE,
        options: (d, s) => ({
          sinks: new Float32Array([0.5, 1.5]),
          keyMask: d.mask(s.batch * s.keyLength),
          returnWeights: true,
        }),
      },
    ],
    [
      'keyMask-bias-per-batch',
      'keyMask with a per-batch bias [B,1,1,Lk]',
      {
        shape: BASE,
        options: (d, s) => ({
          keyMask: d.mask(s.batch * s.keyLength),
          bias: biasOf(d, s, [true, false, false, true]),
        }),
      },
    ],
    ['scale-softcap', 'explicit scale then softcap', { shape: BASE, options: { scale: 1.7, softcap: 1 } }],
    [
      'all-gqa-cross',
      'every option with GQA and Lq < Lk',
      {
        shape: { batch: 2, queryHeads: 4, kvHeads: 2, queryLength: 4, keyLength: 9, headDim: 6, valueDim: 5 },
        options: (d, s) => ({
          causal: true,
          slidingWindow: 5,
          keyMask: d.mask(s.batch * s.keyLength, 0.8),
          bias: biasOf(d, s, [false, true, true, true]),
          alibiSlopes: d.uniform(s.queryHeads, 0, 0.5),
          softcap: 3,
          sinks: d.uniform(s.queryHeads),
          returnLse: true,
          returnWeights: true,
        }),
      },
    ],
    [
      'all-causal-lq-gt-lk',
      'every option with causal and Lq > Lk (leading rows fully masked)',
      {
        shape: { batch: 1, queryHeads: 3, kvHeads: 1, queryLength: 8, keyLength: 5, headDim: 3 },
        options: (d, s) => ({
          causal: true,
          slidingWindow: 2,
          keyMask: d.mask(s.batch * s.keyLength, 0.8),
          bias: biasOf(d, s),
          alibiSlopes: d.uniform(s.queryHeads, 0, 0.5),
          softcap: 4,
          sinks: d.uniform(s.queryHeads),
          returnLse: true,
          returnWeights: true,
        }),
      },
    ],
    [
      'all-no-causal-odd',
      'every option but causal, odd sizes',
      {
        shape: { batch: 3, queryHeads: 3, queryLength: 7, keyLength: 5, headDim: 7, valueDim: 3 },
        options: (d, s) => ({
          scale: 0.4,
          slidingWindow: 3,
          keyMask: d.mask(s.batch * s.keyLength, 0.8),
          bias: biasOf(d, s, [true, false, true, false]),
          alibiSlopes: d.uniform(s.queryHeads, 0, 0.5),
          softcap: 5,
          sinks: d.uniform(s.queryHeads),
          returnLse: true,
          returnWeights: true,
        }),
      },
    ],
  ];
  return combos.map(([name, title, spec]) => attentionCase(`combos/${name}`, title, spec));
}

function sizeCases(): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  for (const L of [1, 3, 7, 129]) {
    for (const D of [1, 3, 80, 256]) {
      const causal = L > 1 && (D === 3 || D === 256);
      cases.push(
        attentionCase(`sizes/L${L}-D${D}`, `L = ${L}, D = ${D}${causal ? ', causal' : ''}, with lse`, {
          shape: { batch: 1, queryHeads: 1, queryLength: L, headDim: D },
          options: { causal, returnLse: true },
        }),
      );
    }
  }
  const more: [string, string, AttentionShape, AttentionOptions][] = [
    ['Dv5-D3', 'Dv = 5, D = 3', { batch: 2, queryHeads: 2, queryLength: 7, headDim: 3, valueDim: 5 }, {}],
    [
      'Dv1-D80',
      'Dv = 1, D = 80',
      { batch: 1, queryHeads: 2, queryLength: 7, headDim: 80, valueDim: 1 },
      { causal: true },
    ],
    [
      'Dv256-D1',
      'Dv = 256, D = 1',
      { batch: 1, queryHeads: 1, queryLength: 7, headDim: 1, valueDim: 256 },
      { returnLse: true },
    ],
    [
      'Dv80-D256-L129-causal',
      'Dv = 80, D = 256, L = 129, causal',
      { batch: 1, queryHeads: 1, queryLength: 129, headDim: 256, valueDim: 80 },
      { causal: true },
    ],
    [
      'L129-gqa-causal',
      'L = 129, GQA 4:2, causal, lse',
      { batch: 1, queryHeads: 4, kvHeads: 2, queryLength: 129, headDim: 7 },
      { causal: true, returnLse: true },
    ],
    [
      'B3-H5-L7-D5',
      'odd batch and heads: B = 3, H = 5',
      { batch: 3, queryHeads: 5, queryLength: 7, headDim: 5 },
      { causal: true },
    ],
    [
      'L64-D64',
      'L = 64, D = 64 (a common tile size)',
      { batch: 1, queryHeads: 2, queryLength: 64, headDim: 64 },
      { causal: true },
    ],
    [
      'L65-D33',
      'L = 65, D = 33 (one past a tile)',
      { batch: 1, queryHeads: 1, queryLength: 65, headDim: 33 },
      {},
    ],
  ];
  for (const [name, title, shape, options] of more)
    cases.push(attentionCase(`sizes/${name}`, title, { shape, options }));
  return cases;
}

/** q = [100, 1], k_j = [±100, small integer]: every logit is exactly ±1e4 + small integer in float32. */
function largeLogits(sign: 1 | -1) {
  return (data: DataSource, shape: AttentionShape) => {
    const s = full(shape);
    const q = new Float32Array(s.batch * s.queryHeads * s.queryLength * 2);
    for (let r = 0; r < q.length; r += 2) {
      q[r] = 100;
      q[r + 1] = data.integer(-2, 2);
    }
    const k = new Float32Array(s.batch * s.kvHeads * s.keyLength * 2);
    for (let r = 0; r < k.length; r += 2) {
      k[r] = 100 * sign;
      k[r + 1] = data.integer(-2, 2);
    }
    return { q, k, v: data.uniform(s.batch * s.kvHeads * s.keyLength * s.valueDim), shape };
  };
}

function stabilityCases(): ConformanceCase[] {
  const shape: AttentionShape = { batch: 1, queryHeads: 2, queryLength: 9, headDim: 2, valueDim: 4 };
  return [
    attentionCase('stability/large-logits', 'logits ~ +1e4 (exact in float32), scale 1, lse', {
      shape,
      inputs: largeLogits(1),
      options: { scale: 1, returnLse: true },
    }),
    attentionCase('stability/large-negative-logits', 'logits ~ -1e4, scale 1, lse', {
      shape,
      inputs: largeLogits(-1),
      options: { scale: 1, returnLse: true },
    }),
    attentionCase(
      'stability/large-logits-causal-sinks',
      'logits ~ 1e4 with causal, sinks near 1e4, lse, weights',
      {
        shape,
        inputs: largeLogits(1),
        options: {
          scale: 1,
          causal: true,
          sinks: new Float32Array([10000, 9999]),
          returnLse: true,
          returnWeights: true,
        },
      },
    ),
    attentionCase('stability/large-logits-softcap', 'logits ~ 1e4 through softcap 20', {
      shape,
      inputs: largeLogits(1),
      options: { scale: 1, softcap: 20, returnLse: true },
    }),
    attentionCase('stability/large-bias', 'bias ~ 1e4 + small integers on small scores', {
      shape: { batch: 1, queryHeads: 2, queryLength: 6, headDim: 3 },
      options: (data, s) => {
        const bias = biasOf(data, s, [false, false, true, true]);
        for (let i = 0; i < bias.data.length; i++) bias.data[i] = 10000 + data.integer(-3, 3);
        return { bias, returnLse: true };
      },
    }),
    attentionCase('stability/dominant-key', 'one key 1000 above the rest: weights underflow to exact 0', {
      shape: { batch: 1, queryHeads: 1, queryLength: 5, headDim: 2 },
      inputs: (data, shape) => {
        const q = new Float32Array(10).fill(1);
        const k = new Float32Array(10);
        k[4] = 500;
        k[5] = 500;
        return { q, k, v: data.uniform(10), shape };
      },
      options: { scale: 1, returnWeights: true, returnLse: true },
    }),
    attentionCase('stability/all-equal-scores', 'q = 0: every score equal, output is the mean of values', {
      shape: { batch: 1, queryHeads: 2, queryLength: 7, headDim: 5 },
      inputs: (data, shape) => {
        const s = full(shape);
        return {
          q: new Float32Array(2 * 7 * 5),
          k: data.uniform(2 * 7 * 5),
          v: data.uniform(s.batch * s.kvHeads * s.keyLength * s.valueDim),
          shape,
        };
      },
      options: { returnLse: true, returnWeights: true },
    }),
    attentionCase('stability/all-equal-keys-L129-causal', 'identical keys, L = 129, causal: running means', {
      shape: { batch: 1, queryHeads: 1, queryLength: 129, headDim: 4 },
      inputs: (data, shape) => {
        const k = new Float32Array(129 * 4);
        for (let j = 0; j < 129; j++) k.set([0.5, -0.25, 1, 0.75], j * 4);
        return { q: data.uniform(129 * 4), k, v: data.uniform(129 * 4), shape };
      },
      options: { causal: true, returnLse: true },
    }),
    attentionCase('stability/tiny-scale', 'scale 1e-6: nearly uniform', {
      shape: BASE,
      options: { scale: 1e-6, returnLse: true },
    }),
  ];
}

function maskedCases(): ConformanceCase[] {
  const shape: AttentionShape = { batch: 2, queryHeads: 2, queryLength: 5, headDim: 3 };
  const s = full(shape);
  const maskedFirstBatch = () => {
    const mask = new Uint8Array(2 * 5);
    mask.set([1, 0, 1, 1, 0], 5);
    return mask;
  };
  /** Poisons value rows (or key rows) at masked keys of batch 1 and all of batch 0. */
  const poison = (tensor: 'k' | 'v', value: number) => (data: DataSource, sh: AttentionShape) => {
    const t = full(sh);
    const inputs = {
      q: data.uniform(t.batch * t.queryHeads * t.queryLength * t.headDim),
      k: data.uniform(t.batch * t.kvHeads * t.keyLength * t.headDim),
      v: data.uniform(t.batch * t.kvHeads * t.keyLength * t.valueDim),
      shape: sh,
    };
    const mask = maskedFirstBatch();
    const dim = tensor === 'k' ? t.headDim : t.valueDim;
    for (let b = 0; b < t.batch; b++)
      for (let h = 0; h < t.kvHeads; h++)
        for (let j = 0; j < t.keyLength; j++)
          if (mask[b * t.keyLength + j] === 0)
            for (let d = 0; d < dim; d++) inputs[tensor][at(t.kvHeads, t.keyLength, dim, b, h, j, d)] = value;
    return inputs;
  };
  return [
    attentionCase(
      'masked/keyMask-whole-batch',
      'a batch row with every key masked: zeros, lse -inf, weights 0',
      {
        shape,
        options: { keyMask: maskedFirstBatch(), returnLse: true, returnWeights: true },
      },
    ),
    attentionCase('masked/keyMask-everything', 'every key masked everywhere', {
      shape,
      options: { keyMask: new Uint8Array(s.batch * s.keyLength), returnLse: true, returnWeights: true },
    }),
    attentionCase(
      'masked/causal-lq-gt-lk',
      'causal with Lq > Lk: rows at negative positions are fully masked',
      {
        shape: { batch: 1, queryHeads: 2, queryLength: 7, keyLength: 3, headDim: 4 },
        options: { causal: true, returnLse: true, returnWeights: true },
      },
    ),
    attentionCase('masked/window-lq-gt-lk', 'slidingWindow 2, causal, Lq > Lk: masked leading rows', {
      shape: { batch: 1, queryHeads: 1, queryLength: 6, keyLength: 2, headDim: 3 },
      options: { causal: true, slidingWindow: 2, returnLse: true, returnWeights: true },
    }),
    attentionCase('masked/with-sinks', 'fully masked rows with sinks: output 0, lse = sink, weights 0', {
      shape,
      options: {
        keyMask: maskedFirstBatch(),
        sinks: new Float32Array([0.5, -2]),
        returnLse: true,
        returnWeights: true,
      },
    }),
    attentionCase('masked/nan-in-masked-values', 'NaN in value rows of masked keys never leaks', {
      shape,
      inputs: poison('v', Number.NaN),
      options: { keyMask: maskedFirstBatch(), returnLse: true, returnWeights: true },
    }),
    attentionCase('masked/inf-in-masked-values', 'Infinity in value rows of masked keys never leaks', {
      shape,
      inputs: poison('v', Number.POSITIVE_INFINITY),
      options: { keyMask: maskedFirstBatch() },
    }),
    attentionCase('masked/nan-in-masked-keys', 'NaN in key rows of masked keys never leaks', {
      shape,
      inputs: poison('k', Number.NaN),
      options: { keyMask: maskedFirstBatch(), returnLse: true },
    }),
    attentionCase(
      'masked/nan-in-future-values-causal',
      'NaN in values above the causal diagonal never leaks',
      {
        shape: { batch: 1, queryHeads: 1, queryLength: 6, headDim: 3 },
        inputs: (data, sh) => {
          const v = data.uniform(18);
          v[5 * 3 + 1] = Number.NaN; // only the last query sees key 5
          v[4 * 3] = Number.POSITIVE_INFINITY;
          return { q: data.uniform(18), k: data.uniform(18), v, shape: sh };
        },
        options: { causal: true, returnWeights: true },
      },
    ),
    attentionCase('masked/nan-bias-at-masked', 'NaN bias at causally masked positions never leaks', {
      shape: { batch: 1, queryHeads: 2, queryLength: 5, headDim: 3 },
      options: (data, sh) => {
        const bias = biasOf(data, sh, [false, true, true, true]);
        for (let h = 0; h < 2; h++)
          for (let i = 0; i < 5; i++)
            for (let j = i + 1; j < 5; j++) bias.data[(h * 5 + i) * 5 + j] = Number.NaN;
        return { causal: true, bias, returnLse: true };
      },
    }),
    attentionCase('masked/neg-inf-bias-row', 'a bias row of -Infinity masks the whole row: zeros, lse -inf', {
      shape: { batch: 1, queryHeads: 1, queryLength: 4, headDim: 3 },
      options: (data, sh) => {
        const bias = biasOf(data, sh, [false, false, true, true]);
        bias.data.fill(Number.NEGATIVE_INFINITY, 4, 8);
        return { bias, returnLse: true, returnWeights: true };
      },
    }),
    attentionCase(
      'masked/neg-inf-bias-key-nan-value',
      'a key with -Infinity bias has weight 0: its NaN value never leaks',
      {
        shape: { batch: 1, queryHeads: 1, queryLength: 4, headDim: 3 },
        inputs: (data, sh) => {
          const v = data.uniform(12);
          v[2 * 3 + 1] = Number.NaN;
          return { q: data.uniform(12), k: data.uniform(12), v, shape: sh };
        },
        options: (data, sh) => {
          const bias = biasOf(data, sh, [false, false, false, true]);
          bias.data[2] = Number.NEGATIVE_INFINITY;
          return { bias, returnWeights: true };
        },
      },
    ),
  ];
}

function positionCases(): ConformanceCase[] {
  const cross = (Lq: number, Lk: number): AttentionShape => ({
    batch: 1,
    queryHeads: 2,
    queryLength: Lq,
    keyLength: Lk,
    headDim: 4,
  });
  const list: [string, string, AttentionShape, AttentionOptions][] = [
    [
      'causal-lq-lt-lk',
      'causal with Lq < Lk: bottom-right aligned (KV cache)',
      cross(3, 9),
      { causal: true, returnLse: true },
    ],
    ['causal-lq-gt-lk', 'causal with Lq > Lk', cross(9, 4), { causal: true }],
    ['window-lq-lt-lk', 'slidingWindow 2 (no causal) with Lq < Lk', cross(3, 9), { slidingWindow: 2 }],
    [
      'window-causal-lq-lt-lk',
      'slidingWindow 2 with causal, Lq < Lk',
      cross(3, 9),
      { slidingWindow: 2, causal: true },
    ],
    [
      'window-lq-gt-lk',
      'slidingWindow 3 (no causal) with Lq > Lk: negative positions',
      cross(8, 3),
      { slidingWindow: 3, returnLse: true },
    ],
    [
      'alibi-lq-lt-lk',
      'alibi distance uses absolute positions with Lq < Lk',
      cross(3, 8),
      { alibiSlopes: new Float32Array([0.5, 0.25]) },
    ],
    [
      'alibi-lq-gt-lk',
      'alibi with Lq > Lk (negative distances without causal)',
      cross(8, 3),
      { alibiSlopes: new Float32Array([0.5, 0.25]) },
    ],
    ['decode', 'decode: Lq = 1 against 37 keys', cross(1, 37), {}],
    ['decode-causal', 'decode with causal (sees every key)', cross(1, 37), { causal: true, returnLse: true }],
    ['decode-window', 'decode with causal slidingWindow 8', cross(1, 37), { causal: true, slidingWindow: 8 }],
    [
      'decode-alibi-sinks',
      'decode with alibi, sinks, lse, weights',
      cross(1, 37),
      {
        alibiSlopes: new Float32Array([0.1, 0.3]),
        sinks: new Float32Array([0, 1]),
        returnLse: true,
        returnWeights: true,
      },
    ],
    [
      'decode-gqa',
      'decode with GQA 8:2',
      { batch: 2, queryHeads: 8, kvHeads: 2, queryLength: 1, keyLength: 33, headDim: 8 },
      { causal: true, returnLse: true },
    ],
  ];
  return list.map(([name, title, shape, options]) =>
    attentionCase(`positions/${name}`, title, { shape, options }),
  );
}

function headCases(): ConformanceCase[] {
  const list: [string, string, AttentionShape, AttentionCaseSpec['options']][] = [
    [
      'gqa-4-2',
      'GQA: 4 query heads on 2 kv heads',
      { batch: 2, queryHeads: 4, kvHeads: 2, queryLength: 5, headDim: 4 },
      {},
    ],
    [
      'gqa-6-3-causal',
      'GQA 6:3, causal',
      { batch: 1, queryHeads: 6, kvHeads: 3, queryLength: 6, headDim: 3 },
      { causal: true },
    ],
    [
      'gqa-6-2-lse-weights',
      'GQA 6:2 with lse and weights',
      { batch: 2, queryHeads: 6, kvHeads: 2, queryLength: 4, headDim: 5 },
      { returnLse: true, returnWeights: true },
    ],
    [
      'mqa-4-1',
      'MQA: 4 query heads on 1 kv head',
      { batch: 2, queryHeads: 4, kvHeads: 1, queryLength: 5, headDim: 4 },
      {},
    ],
    [
      'mqa-8-1-causal-lse',
      'MQA 8:1, causal, lse',
      { batch: 1, queryHeads: 8, kvHeads: 1, queryLength: 7, headDim: 6 },
      { causal: true, returnLse: true },
    ],
    [
      'gqa-bias-per-query-head',
      'GQA with a bias that differs per query head',
      { batch: 1, queryHeads: 4, kvHeads: 2, queryLength: 5, headDim: 3 },
      (d, s) => ({ bias: biasOf(d, s, [false, true, true, true]) }),
    ],
    [
      'gqa-alibi-sinks',
      'GQA with alibi slopes and sinks per query head',
      { batch: 1, queryHeads: 4, kvHeads: 2, queryLength: 5, headDim: 3 },
      {
        alibiSlopes: new Float32Array([0.1, 0.2, 0.4, 0.8]),
        sinks: new Float32Array([0, 0.5, -0.5, 1]),
        returnLse: true,
      },
    ],
    [
      'gqa-cross-valueDim',
      'GQA 6:3 with Lq != Lk and Dv != D',
      { batch: 2, queryHeads: 6, kvHeads: 3, queryLength: 3, keyLength: 7, headDim: 4, valueDim: 6 },
      { causal: true },
    ],
  ];
  return list.map(([name, title, shape, options]) =>
    attentionCase(`heads/${name}`, title, { shape, options }),
  );
}

function crossCases(): ConformanceCase[] {
  const list: [string, string, AttentionShape, AttentionCaseSpec['options']][] = [
    [
      'lq3-lk11',
      'cross-attention: 3 queries, 11 keys',
      { batch: 2, queryHeads: 2, queryLength: 3, keyLength: 11, headDim: 4 },
      {},
    ],
    [
      'lq11-lk3',
      'cross-attention: 11 queries, 3 keys',
      { batch: 2, queryHeads: 2, queryLength: 11, keyLength: 3, headDim: 4 },
      { returnLse: true },
    ],
    [
      'keyMask',
      'cross-attention with a padding mask on the source',
      { batch: 2, queryHeads: 2, queryLength: 4, keyLength: 9, headDim: 4 },
      (d, s) => ({ keyMask: d.mask(s.batch * s.keyLength) }),
    ],
    [
      'valueDim',
      'cross-attention with Dv != D',
      { batch: 1, queryHeads: 2, queryLength: 5, keyLength: 8, headDim: 6, valueDim: 3 },
      {},
    ],
    [
      'bias',
      'cross-attention with a [1,1,Lq,Lk] bias',
      { batch: 2, queryHeads: 2, queryLength: 4, keyLength: 6, headDim: 4 },
      (d, s) => ({ bias: biasOf(d, s, [false, false, true, true]) }),
    ],
    [
      'lq1-lk129',
      'one query over 129 keys',
      { batch: 1, queryHeads: 1, queryLength: 1, keyLength: 129, headDim: 16 },
      { returnWeights: true },
    ],
  ];
  return list.map(([name, title, shape, options]) =>
    attentionCase(`cross/${name}`, title, { shape, options }),
  );
}

export function semanticCases(): ConformanceCase[] {
  return [
    ...optionCases(),
    ...comboCases(),
    ...sizeCases(),
    ...stabilityCases(),
    ...maskedCases(),
    ...positionCases(),
    ...headCases(),
    ...crossCases(),
  ];
}
