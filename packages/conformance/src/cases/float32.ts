import type { AttentionInputs, AttentionShape } from '@attnkit/spec';
import type { DataSource } from '../random.js';
import type { ConformanceCase } from '../types.js';
import { attentionCase, biasOf, full } from './helpers.js';

/**
 * Cases whose logits are large and NOT exact in float32 (the `stability/` cases use integer data, so
 * float32 rounding never shows there). Every logit carries a rounding error of about |s| * 2^-24,
 * which `exp` turns into a relative weight error of the same size: far above atol 1e-6 once |s| is in
 * the tens. What a float32 backend may lose here is measured by the naive float32 composition
 * (`naive.ts`) and allowed as `fudge` times that.
 */

/** q and k near a common non-integer offset: logits of magnitude ~`level`, differences of order 1. */
function offsetInputs(level: number) {
  return (data: DataSource, shape: AttentionShape): AttentionInputs => {
    const s = full(shape);
    // dot(q, k) / sqrt(D) ~ sqrt(D) * c^2 = level, with a fractional c so nothing is exact.
    const c = Math.sqrt(level / Math.sqrt(s.headDim)) + 0.0123;
    const spread = 1.7 / Math.sqrt(c * Math.sqrt(s.headDim));
    const around = (length: number) => {
      const out = data.uniform(length, -spread, spread);
      for (let index = 0; index < length; index++) out[index] += c;
      return out;
    };
    return {
      q: around(s.batch * s.queryHeads * s.queryLength * s.headDim),
      k: around(s.batch * s.kvHeads * s.keyLength * s.headDim),
      v: data.uniform(s.batch * s.kvHeads * s.keyLength * s.valueDim),
      shape,
    };
  };
}

function largeLogitCases(): ConformanceCase[] {
  const dims = [1, 3, 16, 64, 256];
  return [
    attentionCase(
      'rounding/large-logits-d1-example',
      'D = 1, q = 70.123, k = [71.456, 71.47]: logits ~5000',
      {
        shape: { batch: 1, queryHeads: 1, queryLength: 1, keyLength: 2, headDim: 1 },
        inputs: (_data, shape) => ({
          q: new Float32Array([70.123]),
          k: new Float32Array([71.456, 71.47]),
          v: new Float32Array([1, -1]),
          shape,
        }),
        options: { scale: 1, returnLse: true, returnWeights: true },
      },
    ),
    ...dims.map((D) =>
      attentionCase(`rounding/large-logits-d${D}`, `D = ${D}, non-integer data, logits ~ 300, lse, weights`, {
        shape: { batch: 1, queryHeads: 2, queryLength: 5, keyLength: 37, headDim: D },
        inputs: offsetInputs(300),
        options: { returnLse: true, returnWeights: true },
      }),
    ),
    attentionCase('rounding/large-logits-d80-causal-gqa', 'logits ~ 2000, causal GQA 4:2, Lk 129', {
      shape: { batch: 1, queryHeads: 4, kvHeads: 2, queryLength: 9, keyLength: 129, headDim: 80 },
      inputs: offsetInputs(2000),
      options: { causal: true, returnLse: true },
    }),
    attentionCase('rounding/large-bias', 'bias ~ 700 with fractional parts on small scores', {
      shape: { batch: 2, queryHeads: 2, queryLength: 7, keyLength: 41, headDim: 8 },
      options: (data, shape) => {
        const bias = biasOf(data, shape);
        for (let index = 0; index < bias.data.length; index++) bias.data[index] = 700.37 + bias.data[index];
        return { bias, returnLse: true, returnWeights: true };
      },
    }),
  ];
}

function alibiCases(): ConformanceCase[] {
  // |slope * (p - j)| reaches tens to ~100; the product of a float32 slope and an integer distance
  // is not exact in float32, so rounding it before the add costs |term| * 2^-24 per logit.
  const slopes = new Float32Array([0.3713, -0.2917, 0.0971, -0.5379]);
  return [
    attentionCase(
      'rounding/alibi-large-both-signs',
      'ALiBi slopes of both signs, keys on both sides, Lk 200',
      {
        shape: { batch: 1, queryHeads: 4, queryLength: 64, keyLength: 200, headDim: 16 },
        options: { alibiSlopes: slopes, returnLse: true },
      },
    ),
    attentionCase('rounding/alibi-lq-gt-lk', 'ALiBi, Lq 300 > Lk 100 (negative positions), non-causal', {
      shape: { batch: 1, queryHeads: 4, queryLength: 300, keyLength: 100, headDim: 8 },
      options: { alibiSlopes: slopes, returnLse: true, returnWeights: true },
    }),
    attentionCase('rounding/alibi-lq-gt-lk-causal-window', 'ALiBi, Lq 160 > Lk 120, causal, window 90', {
      shape: { batch: 1, queryHeads: 4, queryLength: 160, keyLength: 120, headDim: 8 },
      options: { alibiSlopes: slopes, causal: true, slidingWindow: 90, returnLse: true },
    }),
  ];
}

function softcapCases(): ConformanceCase[] {
  return [
    attentionCase('rounding/softcap-near-cap', 'softcap 60, logits 59.5 to 301.7 (tanh near 1)', {
      shape: { batch: 1, queryHeads: 1, queryLength: 1, keyLength: 8, headDim: 1 },
      inputs: (_data, shape) => ({
        q: new Float32Array([1]),
        k: new Float32Array([60, 61, 59.5, 62.3, 120.7, 180.1, 300, 301.7]),
        v: new Float32Array([1, -1, 0.5, -0.25, 0.75, -0.5, 0.125, 1]),
        shape,
      }),
      options: { scale: 1, softcap: 60, returnLse: true, returnWeights: true },
    }),
    attentionCase('rounding/softcap-near-cap-random', 'softcap 30, logits ~ 25..45, D 16, lse', {
      shape: { batch: 1, queryHeads: 2, queryLength: 6, keyLength: 33, headDim: 16 },
      inputs: offsetInputs(35),
      options: { softcap: 30, returnLse: true, returnWeights: true },
    }),
  ];
}

/**
 * Decode over millions of keys: a float32 running sum of ~2^22 terms drifts by far more than atol.
 * 25M and 34M multiply-adds (D = Dv = 4): above a `maxWork` of 2e7 (the README's setting for a
 * slow backend) they are `omitted`, so they run where a backend affords them; a backend that
 * declares a smaller `limits.keyLength` must reject them as `unsupported`. A caller can also leave
 * them out by id (`filter: /^(?!longkeys\/)/`), as this repository's software-GPU runs do.
 */
function longKeyCases(): ConformanceCase[] {
  return [3 << 20, 4 << 20].map((Lk) =>
    attentionCase(`longkeys/decode-${Lk >> 20}m`, `decode, one query over ${Lk} keys (D = Dv = 4), lse`, {
      shape: { batch: 1, queryHeads: 1, queryLength: 1, keyLength: Lk, headDim: 4 },
      // positive values: the output (~1) is a sum of millions of like-signed terms, as is the
      // denominator, so a plain float32 running sum drifts (zero-mean values would hide it)
      inputs: (data, shape) => ({
        q: data.uniform(4),
        k: data.uniform(Lk * 4),
        v: data.uniform(Lk * 4, 0.5, 1.5),
        shape,
      }),
      options: { returnLse: true },
    }),
  );
}

export function float32Cases(): ConformanceCase[] {
  return [...largeLogitCases(), ...alibiCases(), ...softcapCases(), ...longKeyCases()];
}
