/**
 * What the WGSL kernels share: the variant type, the `flags` bits, the uniform blocks' field lists and
 * their generated structs, the forward bindings, and the WGSL pieces (float helpers, the query tile,
 * the logit, visibility, the online softmax, the sink fold) that every kernel file in this folder
 * builds on. Each variant (head sizes, tile sizes) is generated as its own shader so that loops have
 * constant bounds; the backend caches one pipeline per variant.
 */

import type { ResolvedOptions, StoragePrecision } from '@attnkit/spec';
import { type Binding, binding, bindingDeclarations, PARAMS_BINDING } from '../bindings.js';

/**
 * What selects an attention shader variant: sizes only. Which options are present travels in the
 * uniform block (`flags`), so one compiled pipeline serves every option combination; compiling is the
 * dominant cost on software renderers (seconds per pipeline on SwiftShader), a uniform branch is not.
 */
export interface AttentionVariant {
  /**
   * Capacity (not the exact size) of a q/k row in workgroup memory, a bucket >= headDim: the exact
   * sizes come from the uniform block, so one compiled variant serves many head sizes.
   */
  headDim: number;
  /** Capacity of a v/output row, as `headDim`. */
  valueDim: number;
  /** Query rows per workgroup. */
  bq: number;
  /** Capacity of a staged K/V tile, in keys. */
  bk: number;
  /** Invocations per workgroup. */
  wg: number;
}

/** Bits of the `flags` word: which options this call uses. */
export const Flags = {
  causal: 1,
  window: 2,
  bias: 4,
  keyMask: 8,
  alibi: 16,
  softcap: 32,
  sinks: 64,
  /** Write the per-row buffer: lse, then running max, then denominator (for lse and weights). */
  rows: 128,
  /**
   * Backward: the bias has the full `[B, Hq, Lq, Lk]` shape, so the dQ kernel writes each logit's
   * gradient straight into gradBias instead of into a scratch that is reduced afterwards.
   */
  biasFull: 256,
} as const;

/** Uniform words that are `f32`; every other word of a parameter block is `u32`. */
const FLOAT_PARAMS: ReadonlySet<string> = new Set(['scale', 'softcap']);

/** Whether a parameter word is an `f32` (else a `u32`), for the host that packs the block. */
export function isFloatParam(field: string): boolean {
  return FLOAT_PARAMS.has(field);
}

/**
 * Byte size of a uniform block of these words: a multiple of 16, as uniform bindings are sized. The
 * WGSL struct and the host's words both come from the same field list, so they cannot drift.
 */
export function paramsBytes(fields: readonly string[]): number {
  return Math.ceil(fields.length / 4) * 16;
}

/** The WGSL `struct Params` of a field list. */
export function paramsStruct(fields: readonly string[]): string {
  return `
struct Params {
${fields.map((f) => `  ${f}: ${isFloatParam(f) ? 'f32' : 'u32'},`).join('\n')}
}
`;
}

/**
 * The last words of the forward's and the cache's uniform blocks: what the logit and mask code
 * reads besides the window (bias strides, scale, softcap, the NaN pattern, the exact head sizes, the
 * staged key tile and the option flags).
 */
export const LOGIT_PARAM_FIELDS = [
  'bsB',
  'bsH',
  'bsI',
  'bsJ',
  'scale',
  'softcap',
  'nanBits',
  'd',
  'dv',
  'bk',
  'flags',
] as const;

/** Words of the uniform block, in order; `scale` and `softcap` are f32, the rest u32. */
export const ATTENTION_PARAM_FIELDS = [
  'batch',
  'hq',
  'hkv',
  'lq',
  'lk',
  'qTiles',
  'total',
  'groupsX',
  'window',
  'qsB',
  'qsH',
  'qsL',
  'ksB',
  'ksH',
  'ksL',
  'vsB',
  'vsH',
  'vsL',
  'osB',
  'osH',
  'osL',
  ...LOGIT_PARAM_FIELDS,
] as const;

export type AttentionParamField = (typeof ATTENTION_PARAM_FIELDS)[number];

/** Byte size of the uniform block shared by the attention and weights kernels (32 words). */
export const ATTENTION_PARAMS_BYTES = paramsBytes(ATTENTION_PARAM_FIELDS);

/** The WGSL `struct Params` of {@link ATTENTION_PARAM_FIELDS}. */
export const PARAMS_STRUCT = paramsStruct(ATTENTION_PARAM_FIELDS);

/*
 * WGSL lets implementations assume floats are finite, so special values are recognised and made from
 * their bit patterns (never x != x, never a NaN literal, which would be a shader-creation error).
 * `nanBits` comes from the uniform block so the compiler cannot fold it (every parameter block that
 * includes these helpers has a `nanBits` word).
 */
export const FLOAT_HELPERS = `
fn isNanOrPosInf(x: f32) -> bool {
  let b = bitcast<u32>(x);
  return (b & 0x7fffffffu) > 0x7f800000u || b == 0x7f800000u;
}
fn isNegInf(x: f32) -> bool { return bitcast<u32>(x) == 0xff800000u; }
fn isFiniteValue(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
fn nanValue() -> f32 { return bitcast<f32>(P.nanBits); }
// Knuth's TwoSum: a + b = hi + lo exactly.
fn twoSum(a: f32, b: f32) -> vec2<f32> {
  let hi = a + b;
  let bb = hi - a;
  return vec2<f32>(hi, (a - (hi - bb)) + (b - bb));
}
// Dekker's two-product with Veltkamp's split (2^12 + 1): the rounding error of a * b = p, exactly,
// for |a|, |b| below ~2^100. Not fma(a, b, -p): a software fma (SwiftShader) may round twice.
fn twoProductError(a: f32, b: f32, p: f32) -> f32 {
  let ca = 4097.0 * a;
  let ah = ca - (ca - a);
  let al = a - ah;
  let cb = 4097.0 * b;
  let bh = cb - (cb - b);
  let bl = b - bh;
  return (((ah * bh - p) + ah * bl) + al * bh) + al * bl;
}
fn negInfValue() -> f32 { return bitcast<f32>(P.nanBits ^ 0x7fc00000u ^ 0xff800000u); }
`;

/**
 * BIAS, MASK and HEAD (ALiBi slopes then sinks, `2*Hq`), the last bindings of every kernel that
 * rebuilds a logit, always bound (a small dummy buffer stands in for an absent option) so the layout
 * is the same for every call.
 */
export const OPTION_BINDINGS = [
  binding('BIAS', 'read'),
  binding('MASK', 'read', 'array<u32>'),
  binding('HEAD', 'read'),
] as const;

/** The key mask's byte `index` (MASK packs four a word). */
export const MASK_AT = `fn maskAt(index: u32) -> u32 { return (MASK[index >> 2u] >> ((index & 3u) * 8u)) & 0xffu; }
`;

/** The forward kernels' bindings (the scalar kernel and the tiled one, flash-attention.ts, alike). */
export const ATTENTION_BINDINGS = [
  PARAMS_BINDING,
  binding('Q', 'read'),
  binding('K', 'read'),
  binding('V', 'read'),
  binding('O', 'read_write'),
  binding('ROWS', 'read_write'),
  ...OPTION_BINDINGS,
] as const;

/** The weights kernel's bindings: ROWS holds the fused kernel's row max and denominator. */
export const WEIGHTS_BINDINGS = [
  PARAMS_BINDING,
  binding('Q', 'read'),
  binding('K', 'read'),
  binding('ROWS', 'read'),
  binding('W', 'read_write'),
  ...OPTION_BINDINGS,
] as const;

/** The matmul's bindings; with a bias, {@link MATMUL_BIAS_BINDINGS}. */
export const MATMUL_BINDINGS = [
  PARAMS_BINDING,
  binding('A', 'read'),
  binding('B', 'read'),
  binding('C', 'read_write'),
] as const;

/** The matmul's bindings with the bias last. */
export const MATMUL_BIAS_BINDINGS = [...MATMUL_BINDINGS, binding('BIAS', 'read')] as const;

/**
 * A kernel's binding table with Q, K and V typed for how they are stored: with f16 storage they hold
 * binary16 pairs packed two a 32-bit word (value `2w` of a row in the low half of word `w`, each row
 * padded to whole words), bound as `array<u32>`. The names, and so the host's bind group, are the same.
 */
export function withStoredInputs<T extends readonly Binding[]>(table: T, precision: StoragePrecision): T {
  if (precision === 'f32') return table;
  const packed = (b: Binding): Binding =>
    b.name === 'Q' || b.name === 'K' || b.name === 'V' ? { ...b, type: 'array<u32>' } : b;
  return table.map(packed) as readonly Binding[] as T;
}

/**
 * WGSL for float `d` of the row that starts at element (f32) or word (f16 storage) `row` of input
 * buffer `buffer`: with f16 storage, unpacked by core WGSL `unpack2x16float` (no shader-f16 needed)
 * into f32, so everything after the load is the float32 kernel. Row strides count words then.
 */
export function storedValue(buffer: string, row: string, d: string, precision: StoragePrecision): string {
  return precision === 'f32'
    ? `${buffer}[${row} + ${d}]`
    : `unpack2x16float(${buffer}[${row} + (${d}) / 2u])[(${d}) % 2u]`;
}

/**
 * The head of both forward kernels (scalar and tiled), which share {@link ATTENTION_BINDINGS} (q, k, v
 * typed by {@link withStoredInputs}) and the uniform block so one encoder serves both; then the float helpers.
 */
export function forwardHeader(precision: StoragePrecision): string {
  return `${PARAMS_STRUCT}
${bindingDeclarations(withStoredInputs(ATTENTION_BINDINGS, precision))}
${MASK_AT}
${FLOAT_HELPERS}`;
}

/**
 * Opens a kernel's `main` with one workgroup per item: `index` is the workgroup's linear index
 * (dispatches fold it over x and y, `P.groupsX` wide), and workgroups past `P.total` return.
 */
export function workgroupMainCode(wg: number, index = 'g'): string {
  return `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let ${index} = wid.y * P.groupsX + wid.x;
  if (${index} >= P.total) { return; }`;
}

/**
 * WGSL statements shared by the forward kernels: from the workgroup's linear index `index`, its
 * query tile (`tile`, `h`, `b`, `kvh`, `i0`, `iLast`, `off` = Lk - Lq), and the band of key tiles
 * any of its rows can see (`tStart`..`tEnd`, from causal and the sliding window), so whole tiles
 * outside it are skipped. `BQ` and `BK` must be in scope in the shader.
 */
export function queryTileCode(index: string): string {
  return `  let tile = ${index} % P.qTiles;
  let h = (${index} / P.qTiles) % P.hq;
  let b = ${index} / (P.qTiles * P.hq);
  let kvh = h / (P.hq / P.hkv);
  let i0 = tile * BQ;
  let off = i32(P.lk) - i32(P.lq);
  let iLast = min(i0 + BQ, P.lq) - 1u;

  // Key band that any row of this tile can see: whole tiles outside it are skipped.
${keyBandCode('0i', 'i32(P.lk)', 'i0', 'iLast')}`;
}

/**
 * WGSL statements: the keys `tStart`..`tEnd` (`tStart` aligned down to a multiple of `BK`) that a
 * query at position `off + first` .. `off + last` can see, from the candidate keys `start`..`end`
 * (i32 expressions), the causal mask and the sliding window. Leaves `causal` in scope. Shared by the
 * forward, the cache's partial kernel and the dQ kernel, so that every kernel skips the same tiles.
 */
export function keyBandCode(start: string, end: string, first: string, last: string): string {
  return `  var kStart = ${start};
  var kEnd = ${end};
  let causal = (P.flags & ${Flags.causal}u) != 0u;
  if (causal) { kEnd = min(kEnd, off + i32(${last}) + 1); }
  if ((P.flags & ${Flags.window}u) != 0u) {
    kStart = max(kStart, off + i32(${first}) - i32(P.window) + 1);
    if (!causal) { kEnd = min(kEnd, off + i32(${last}) + i32(P.window)); }
  }
  let tStart = u32(max(kStart, 0)) / BK * BK;
  let tEnd = u32(max(kEnd, 0));`;
}

/**
 * Which terms a kernel's logit code holds: `'all'` (softcap, bias and ALiBi, each behind its flag of
 * the uniform block) or `'dot'` (the scaled dot product alone, for calls that use none of them).
 * Masks and sinks are not terms: every variant applies them.
 */
export type LogitTerms = 'all' | 'dot';

/** Every {@link LogitTerms}, for whoever compiles ahead of the calls. */
export const LOGIT_TERMS: readonly LogitTerms[] = ['all', 'dot'];

/** The logit terms a call needs: `'dot'` unless it sets softcap, a bias or ALiBi slopes. */
export function logitTermsOf(options: Pick<ResolvedOptions, 'softcap' | 'bias' | 'alibiSlopes'>): LogitTerms {
  return options.softcap === null && options.bias === null && options.alibiSlopes === null ? 'dot' : 'all';
}

/**
 * The logit of query `i` and key `j` as WGSL statements: leaves `s` (and its TwoSum error `lo`) and,
 * with softcap, `capX` (the tanh argument, which the backward differentiates through). Needs `b`,
 * `h`, `i`, `j`, `pos` in scope and a parameter block with the fields it reads (`d`, `scale`,
 * `softcap`, `flags`, `bs*`).
 */
export function logitCode(qExpr: (d: string) => string, kExpr: (d: string) => string): string {
  return `
  var dotp = 0.0;
  for (var d = 0u; d < P.d; d++) { dotp += ${qExpr('d')} * ${kExpr('d')}; }
  ${logitFromDotCode('dotp')}`;
}

/**
 * {@link logitCode} after the dot product: the logit from `q . k` (the WGSL expression `dot`), for
 * kernels that compute their dot products in blocks (kernels/flash-attention.ts).
 */
export function logitFromDotCode(dot: string, terms: LogitTerms = 'all'): string {
  if (terms === 'dot') {
    // A call without softcap, bias and ALiBi (the planner's choice): no branch per logit for them.
    return `
  let s = P.scale * ${dot};
  let lo = 0.0;
`;
  }
  // Order fixed by the spec's semantics: scale -> softcap -> + bias + ALiBi; masks are checked by the caller.
  return `
  var s = P.scale * ${dot};
  var capX = 0.0;
  if ((P.flags & ${Flags.softcap}u) != 0u) {
    let x = s / P.softcap;
    capX = x;
    // Large |x|: tanh is +-1 to f32 precision, and some tanh builtins overflow to NaN there.
    s = P.softcap * select(tanh(x), sign(x), abs(x) > 15.0);
  }
  // A large bias or ALiBi term swamps a small score in f32 (1e4 + s keeps s to 1e-3); the rounding
  // error goes to lo, and the softmax uses (s - max) + lo, where s - max is exact for every key that
  // carries weight.
  var lo = 0.0;
  if ((P.flags & ${Flags.bias}u) != 0u) {
    let t = twoSum(s, BIAS[b * P.bsB + h * P.bsH + i * P.bsI + j * P.bsJ]);
    s = t.x;
    lo += t.y;
  }
  if ((P.flags & ${Flags.alibi}u) != 0u) {
    // |slope * (p - j)| of tens loses ~|term| * 2^-24 when rounded: keep the product's error too
    let slope = -HEAD[h];
    let dist = f32(pos - i32(j));
    let term = slope * dist;
    let t = twoSum(s, term);
    s = t.x;
    let perr = twoProductError(slope, dist, term);
    lo += t.y + select(0.0, perr, abs(perr) < 3.0e38);
  }
`;
}

/** `[0, 1, ..., n - 1]`: the indices a generator unrolls over. */
export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/**
 * `load4X(base, d4, n)`: floats `4 d4 .. 4 d4 + 3` of a row of buffer X from `base`, zero past the
 * row's `n` floats (the padding adds nothing to a dot). Whole vec4s, the common case, load without
 * a branch per float. With f16 storage `base` counts words: the four floats are the two words
 * `base + 2 d4` and the next, unpacked (a row of `n` floats is `ceil(n / 2)` words, its last one
 * padded with a zero half by the host).
 */
export function load4Code(buffer: string, precision: StoragePrecision = 'f32'): string {
  if (precision === 'f16-storage') {
    return `
fn load4${buffer}(base: u32, d4: u32, n: u32) -> vec4<f32> {
  let w = base + d4 * 2u;
  if (d4 * 4u + 4u <= n) { return vec4<f32>(unpack2x16float(${buffer}[w]), unpack2x16float(${buffer}[w + 1u])); }
  let words = (n + 1u) / 2u;
  var r = vec4<f32>(0.0);
  if (d4 * 2u < words) { let p = unpack2x16float(${buffer}[w]); r.x = p.x; r.y = p.y; }
  if (d4 * 2u + 1u < words) { let p = unpack2x16float(${buffer}[w + 1u]); r.z = p.x; r.w = p.y; }
  return r;
}
`;
  }
  return `
fn load4${buffer}(base: u32, d4: u32, n: u32) -> vec4<f32> {
  let d = base + d4 * 4u;
  if (d4 * 4u + 4u <= n) { return vec4<f32>(${buffer}[d], ${buffer}[d + 1u], ${buffer}[d + 2u], ${buffer}[d + 3u]); }
  var r = vec4<f32>(0.0);
  for (var c = 0u; c < 4u; c++) {
    if (d4 * 4u + c < n) { r[c] = ${buffer}[d + c]; }
  }
  return r;
}
`;
}

/**
 * `vis`: whether key `j` is visible to query `i` (bounds, causal, window, keyMask). Needs `b`, `i`,
 * `j`, `pos`. `bounds` is the in-range test; without `keyMask` (the cache, which binds no MASK) the
 * key mask is not read.
 */
export function visibleCode(bounds = 'i < P.lq && j < P.lk', keyMask = true): string {
  const mask = keyMask
    ? `\n  if ((P.flags & ${Flags.keyMask}u) != 0u) { vis = vis && maskAt(b * P.lk + j) != 0u; }`
    : '';
  return `
  var vis = ${bounds};
  if ((P.flags & ${Flags.causal}u) != 0u) { vis = vis && i32(j) <= pos; }
  if ((P.flags & ${Flags.window}u) != 0u) {
    vis = vis && pos - i32(j) < i32(P.window);
    if ((P.flags & ${Flags.causal}u) == 0u) { vis = vis && i32(j) - pos < i32(P.window); }
  }${mask}
`;
}

/**
 * Folds head `h`'s sink logit into a finished row's softmax: the row max `m` and denominator `l`
 * (WGSL variables) take the sink in, `factor` rescales the accumulated output, `bad` and `any` are
 * the row's NaN and seen-something flags. Shared by the scalar and the tiled forward.
 */
export function sinkFoldCode(m: string, l: string): string {
  return `    if ((P.flags & ${Flags.sinks}u) != 0u) {
      let sk = HEAD[P.hq + h];
      if (isNanOrPosInf(sk)) { bad = true; }
      else if (!isNegInf(sk)) {
        if (any) {
          let m2 = max(${m}, sk);
          factor = exp(${m} - m2);
          ${l} = ${l} * factor + exp(sk - m2);
          ${m} = m2;
        } else { ${m} = sk; ${l} = 1.0; any = true; }
      }
    }`;
}

/**
 * Workgroup memory of the scalar online softmax, shared by the fused forward and the cache's partial
 * kernel: staged q, k, v tiles, the tile's logits (`ps`, then its weights) and their TwoSum low parts
 * (`pl`), the output accumulator and per-row max, sum, rescale factor and state.
 */
export function onlineSoftmaxMemory(v: AttentionVariant): string {
  const { headDim: D, valueDim: DV, bq: BQ, bk: BK } = v;
  return `var<workgroup> qs: array<f32, ${BQ * D}>;
var<workgroup> ks: array<f32, ${BK * D}>;
var<workgroup> vs: array<f32, ${BK * DV}>;
var<workgroup> ps: array<f32, ${BQ * BK}>;
var<workgroup> pl: array<f32, ${BQ * BK}>;
var<workgroup> acc: array<f32, ${BQ * DV}>;
var<workgroup> rowM: array<f32, ${BQ}>;
var<workgroup> rowL: array<f32, ${BQ}>;
var<workgroup> rowA: array<f32, ${BQ}>;
// bit 0: some visible finite logit seen; bit 1: a NaN or +inf logit seen (the row is NaN).
var<workgroup> rowS: array<u32, ${BQ}>;
`;
}

/**
 * The start of a scalar online-softmax kernel (the fused forward's and the cache's partials): its
 * tile constants, {@link onlineSoftmaxMemory}, the entry point, and the exact sizes read from the
 * uniform block (`sizesNote`, a comment line or empty, goes before them).
 */
export function onlineSoftmaxEntry(v: AttentionVariant, sizesNote = ''): string {
  return `const BQ = ${v.bq}u;
const WG = ${v.wg}u;

${onlineSoftmaxMemory(v)}
${workgroupMainCode(v.wg)}
${sizesNote}  let D = P.d;
  let DV = P.dv;
  let BK = P.bk;`;
}

/** Zeroes the accumulator and the row statistics of {@link onlineSoftmaxMemory}. */
export const ONLINE_SOFTMAX_INIT = `  for (var e = lid; e < BQ * DV; e += WG) { acc[e] = 0.0; }
  for (var r = lid; r < BQ; r += WG) { rowM[r] = 0.0; rowL[r] = 0.0; rowA[r] = 1.0; rowS[r] = 0u; }`;

/**
 * One cell of the score tile: the logit of staged row `r` and key `c` (NaN for NaN or +inf, -inf
 * where `vis` is false) into `ps[e]`, its low part into `pl[e]`. Needs `vis` and the logit code's names.
 */
export const SCORE_CELL = `      var logit = negInfValue();
      var low = 0.0;
      if (vis) {
        ${logitCode(
          (d) => `qs[r * D + ${d}]`,
          (d) => `ks[c * D + ${d}]`,
        )}
        logit = select(s, nanValue(), isNanOrPosInf(s));
        low = lo;
      }
      ps[e] = logit;
      pl[e] = low;`;

/**
 * After a tile's cells: per row, the tile max, the new running max and the rescale factor, the
 * tile's weights (overwriting `ps`) and sum; then the weighted values into the accumulator.
 */
export const ONLINE_SOFTMAX_STEP = `    workgroupBarrier();
    for (var r = lid; r < BQ; r += WG) {
      var state = rowS[r];
      var tmax = 0.0;
      var seen = false;
      for (var c = 0u; c < BK; c++) {
        let s = ps[r * BK + c];
        if (isNanOrPosInf(s)) { state |= 2u; }
        else if (!isNegInf(s)) { tmax = select(s, max(tmax, s), seen); seen = true; }
      }
      let had = (state & 1u) != 0u;
      var mNew = rowM[r];
      var alpha = 1.0;
      if (seen) {
        mNew = select(tmax, max(rowM[r], tmax), had);
        alpha = select(1.0, exp(rowM[r] - mNew), had);
        state |= 1u;
      }
      var sum = 0.0;
      for (var c = 0u; c < BK; c++) {
        let s = ps[r * BK + c];
        var p = 0.0;
        if (seen && !isNanOrPosInf(s) && !isNegInf(s)) { p = exp((s - mNew) + pl[r * BK + c]); }
        ps[r * BK + c] = p;
        sum += p;
      }
      rowL[r] = rowL[r] * alpha + sum;
      rowM[r] = mNew;
      rowA[r] = alpha;
      rowS[r] = state;
    }
    workgroupBarrier();
    for (var e = lid; e < BQ * DV; e += WG) {
      let r = e / DV;
      let d = e % DV;
      // The tile's sum first, then one add into the running sum: over millions of keys this
      // rounds at the running sum's magnitude once per tile rather than once per key.
      var t = 0.0;
      for (var c = 0u; c < BK; c++) {
        let p = ps[r * BK + c];
        // A zero weight contributes nothing, so inf or NaN in a masked value row cannot leak.
        t += select(0.0, p * vs[c * DV + d], p != 0.0);
      }
      acc[e] = acc[e] * rowA[r] + t;
    }`;
