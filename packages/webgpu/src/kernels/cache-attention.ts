/**
 * The KV cache's two kernels ("flash-decoding"): a split-K partial kernel, where each workgroup takes
 * one (row, kv head, tile of the group's query rows, key range) and leaves an unnormalised partial
 * (output, max, sum), and a merge kernel that combines each query row's partials by log-sum-exp in a
 * fixed order (split 0, 1, ...), so results are deterministic. Prefill (many query rows) runs the same
 * partial kernel tiled over query rows with one split, then the merge, which only normalises.
 */
import type { KVCachePrecision } from '@attnkit/spec';
import { binding, bindingDeclarations, PARAMS_BINDING } from '../bindings.js';
import {
  type AttentionVariant,
  FLOAT_HELPERS,
  Flags,
  keyBandCode,
  LOGIT_PARAM_FIELDS,
  ONLINE_SOFTMAX_INIT,
  ONLINE_SOFTMAX_STEP,
  onlineSoftmaxEntry,
  paramsBytes,
  paramsStruct,
  SCORE_CELL,
  visibleCode,
} from './shared.js';

/**
 * Words of the cache kernels' uniform block, in order (`scale` and `softcap` f32, the rest u32).
 * The names the forward's logit code reads (`d`, `scale`, `softcap`, `flags`, `bs*`, `nanBits`) mean
 * what they mean there; `bs*` are always 0 (a cache call has no bias).
 */
export const CACHE_PARAM_FIELDS = [
  'batch',
  'hq',
  'hkv',
  'lq',
  /** Tokens each (row, kv head) stream has room for: the stride between streams, in tokens. */
  'cap',
  /** Tiles of the `G * Lq` query rows of a kv head (G = Hq / Hkv), `bq` rows each. */
  'rowTiles',
  /** Key ranges per row, and the keys of each (a multiple of `bk`). */
  'splits',
  'chunk',
  /** Workgroups (partial kernel) or invocation groups (merge) of this dispatch, and the x fold. */
  'total',
  'groupsX',
  'window',
  ...LOGIT_PARAM_FIELDS,
] as const;

export type CacheParamField = (typeof CACHE_PARAM_FIELDS)[number];

export const CACHE_PARAMS_BYTES = paramsBytes(CACHE_PARAM_FIELDS);

const CACHE_PARAMS_STRUCT = paramsStruct(CACHE_PARAM_FIELDS);

/*
 * The shared logit code indexes BIAS under the bias flag, which a cache call never sets: a one-float
 * private array stands in, so no binding is spent on it (the partial kernel uses seven of eight).
 */
const NO_BIAS = 'var<private> BIAS: array<f32, 1>;';

/*
 * f16 storage: a token's values are packed two a word (value 2w in the low half of word w, rows
 * padded to whole words), unpacked with core WGSL unpack2x16float (no shader-f16 needed) into the
 * same f32 workgroup tiles, so everything after the load is the f32 kernel.
 */
const F16_LOAD = `fn loadF16(buffer: ptr<storage, array<u32>, read>, row: u32, d: u32) -> f32 {
  return unpack2x16float((*buffer)[row + d / 2u])[d % 2u];
}`;

/**
 * The partial kernel's bindings: q, the cache's K and V, HEAD (ALiBi slopes, sinks), LEN (each
 * row's length), the partials PO and PM. With `precision` `'f16-storage'`, K and V are `array<u32>`
 * of packed binary16 pairs ({@link F16_LOAD}).
 */
export function cachePartialBindings(precision: KVCachePrecision) {
  const stored = precision === 'f16-storage' ? 'array<u32>' : 'array<f32>';
  return [
    PARAMS_BINDING,
    binding('Q', 'read'),
    binding('K', 'read', stored),
    binding('V', 'read', stored),
    binding('HEAD', 'read'),
    binding('LEN', 'read', 'array<u32>'),
    binding('PO', 'read_write'),
    binding('PM', 'read_write'),
  ] as const;
}

/** The merge kernel's bindings: the partials, HEAD (ALiBi slopes, sinks), the output and lse. */
export const CACHE_MERGE_BINDINGS = [
  PARAMS_BINDING,
  binding('PO', 'read'),
  binding('PM', 'read'),
  binding('HEAD', 'read'),
  binding('O', 'read_write'),
  binding('LSE', 'read_write'),
] as const;

/**
 * Partials of the cached attention. One workgroup per (b, kv head, row tile, split); row `n` of the
 * tile is query head `kvh * G + n / Lq`, query `n % Lq`, at position `LEN[b] - Lq + i`. Keys are read
 * at `K[((b * Hkv + kvh) * cap + j) * D + d]` for `j < LEN[b]`. The online softmax is the fused
 * forward's (kernels/attention.ts): tiles of `bk` keys staged in workgroup memory, running max and sum per row,
 * each tile's weighted values summed before one add into the accumulator.
 * Writes, per (query row, split): PO the accumulator (relative to the split's max), PM the max (NaN
 * when a NaN or +inf logit was seen, -inf when no key was visible) and the sum.
 * Bindings: {@link cachePartialBindings}.
 */
export function cachePartialShader(v: AttentionVariant, precision: KVCachePrecision = 'f32'): string {
  const f16 = precision === 'f16-storage';
  return `${CACHE_PARAMS_STRUCT}
${bindingDeclarations(cachePartialBindings(precision))}
${NO_BIAS}
${FLOAT_HELPERS}
${f16 ? F16_LOAD : ''}
${onlineSoftmaxEntry(v)}
  let split = g % P.splits;
  let tile = (g / P.splits) % P.rowTiles;
  let kvh = (g / (P.splits * P.rowTiles)) % P.hkv;
  let b = g / (P.splits * P.rowTiles * P.hkv);
  let G = P.hq / P.hkv;
  let nRows = G * P.lq;
  let n0 = tile * BQ;
  let nLast = min(n0 + BQ, nRows) - 1u;
  let lk = LEN[b];
  let off = i32(lk) - i32(P.lq);
  // Query positions the tile spans: one head's consecutive queries, or every query when it crosses heads.
  var iMin = n0 % P.lq;
  var iMax = nLast % P.lq;
  if (n0 / P.lq != nLast / P.lq) { iMin = 0u; iMax = P.lq - 1u; }

  // This split's keys, narrowed to the band any row of the tile can see.
  let jFirst = split * P.chunk;
  let jEnd = min(lk, jFirst + P.chunk);
  // (chunk is a multiple of bk, so the aligned start stays inside this split.)
${keyBandCode('i32(jFirst)', 'i32(jEnd)', 'iMin', 'iMax')}
  let stream = (b * P.hkv + kvh) * P.cap;

  for (var e = lid; e < BQ * D; e += WG) {
    let n = n0 + e / D;
    let h = kvh * G + n / P.lq;
    let i = n % P.lq;
    qs[e] = select(0.0, Q[((b * P.hq + h) * P.lq + i) * D + e % D], n < nRows);
  }
${ONLINE_SOFTMAX_INIT}

  for (var kt = tStart; kt < tEnd; kt += BK) {
    workgroupBarrier();
    for (var e = lid; e < BK * D; e += WG) {
      let j = kt + e / D;
      ks[e] = select(0.0, ${f16 ? 'loadF16(&K, (stream + j) * ((D + 1u) / 2u), e % D)' : 'K[(stream + j) * D + e % D]'}, j < jEnd);
    }
    for (var e = lid; e < BK * DV; e += WG) {
      let j = kt + e / DV;
      vs[e] = select(0.0, ${f16 ? 'loadF16(&V, (stream + j) * ((DV + 1u) / 2u), e % DV)' : 'V[(stream + j) * DV + e % DV]'}, j < jEnd);
    }
    workgroupBarrier();
    for (var e = lid; e < BQ * BK; e += WG) {
      let r = e / BK;
      let c = e % BK;
      let n = n0 + r;
      let h = kvh * G + n / P.lq;
      let i = n % P.lq;
      let j = kt + c;
      let pos = off + i32(i);
      ${visibleCode('n < nRows && j < jEnd', false)}
${SCORE_CELL}
    }
${ONLINE_SOFTMAX_STEP}
  }
  workgroupBarrier();
  for (var e = lid; e < BQ * DV; e += WG) {
    let r = e / DV;
    let n = n0 + r;
    if (n < nRows) {
      let h = kvh * G + n / P.lq;
      let slot = ((b * P.hq + h) * P.lq + n % P.lq) * P.splits + split;
      PO[slot * DV + e % DV] = select(0.0, acc[e], (rowS[r] & 1u) != 0u);
    }
  }
  for (var r = lid; r < BQ; r += WG) {
    let n = n0 + r;
    if (n < nRows) {
      let h = kvh * G + n / P.lq;
      let slot = ((b * P.hq + h) * P.lq + n % P.lq) * P.splits + split;
      let state = rowS[r];
      var m = negInfValue();
      if ((state & 2u) != 0u) { m = nanValue(); }
      else if ((state & 1u) != 0u) { m = rowM[r]; }
      PM[2u * slot] = m;
      PM[2u * slot + 1u] = select(0.0, rowL[r], (state & 1u) != 0u);
    }
  }
}
`;
}

/**
 * Merges each query row's partials, one invocation per output element (`row * Dv + d`): the max over
 * the splits (and the sink), then, in split order, each partial's sum and accumulator scaled by
 * `exp(m_s - max)`, then one division. The `d = 0` invocation writes the row's lse when asked.
 * Bindings: {@link CACHE_MERGE_BINDINGS}.
 */
export function cacheMergeShader(wg: number): string {
  return `${CACHE_PARAMS_STRUCT}
${bindingDeclarations(CACHE_MERGE_BINDINGS)}
${FLOAT_HELPERS}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.y * P.groupsX + wid.x;
  let n = g * ${wg}u + lid;
  let rows = P.batch * P.hq * P.lq;
  if (g >= P.total || n >= rows * P.dv) { return; }
  let row = n / P.dv;
  let d = n % P.dv;
  let h = (row / P.lq) % P.hq;
  let S = P.splits;
  var bad = false;
  var any = false;
  var m = 0.0;
  for (var s = 0u; s < S; s++) {
    let ms = PM[2u * (row * S + s)];
    if (isNanOrPosInf(ms)) { bad = true; }
    else if (!isNegInf(ms)) { m = select(ms, max(m, ms), any); any = true; }
  }
  var sink = 0.0;
  var hasSink = false;
  if ((P.flags & ${Flags.sinks}u) != 0u) {
    let sk = HEAD[P.hq + h];
    if (isNanOrPosInf(sk)) { bad = true; }
    else if (!isNegInf(sk)) { m = select(sk, max(m, sk), any); any = true; sink = sk; hasSink = true; }
  }
  var l = 0.0;
  var o = 0.0;
  for (var s = 0u; s < S; s++) {
    let slot = row * S + s;
    let ms = PM[2u * slot];
    if (!isNanOrPosInf(ms) && !isNegInf(ms)) {
      let w = exp(ms - m);
      l += PM[2u * slot + 1u] * w;
      o += PO[slot * P.dv + d] * w;
    }
  }
  if (hasSink) { l += exp(sink - m); }
  var out = 0.0;
  if (bad) { out = nanValue(); }
  else if (any) { out = o / l; }
  O[n] = out;
  if (d == 0u && (P.flags & ${Flags.rows}u) != 0u) {
    LSE[row] = select(select(negInfValue(), m + log(l), any), nanValue(), bad);
  }
}
`;
}
