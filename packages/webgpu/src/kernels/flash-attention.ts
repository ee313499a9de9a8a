/**
 * The register-tiled forward kernel (FlashAttention-2 style). One workgroup per (batch, head, query
 * tile), as the scalar kernel in attention.ts, but the work is split into blocks that stay in
 * registers: a row group of `g` invocations shares `rq` query rows; each invocation of it owns
 * `rq x bk/g` scores of a key tile (vec4 dot products over q and k rows staged in workgroup memory)
 * and `rq x dv/(4g)` vec4 columns of the output accumulator. The row max is reduced across the `g`
 * invocations of a row once per key tile and the denominator once at the end: with subgroup shuffles
 * in the `subgroups` tier, through workgroup memory otherwise. Same bindings, uniform block and
 * semantics (masks, bias, ALiBi, softcap, sinks, non-finite logits, ROWS for lse and weights) as
 * `attentionShader`, so the encoder and the weights pass serve both.
 */
import type { StoragePrecision } from '@attnkit/spec';
import {
  Flags,
  forwardHeader,
  type LogitTerms,
  load4Code,
  logitFromDotCode,
  queryTileCode,
  range,
  sinkFoldCode,
  visibleCode,
} from './shared.js';

/** What selects a tiled forward shader: sizes and how row statistics are reduced. */
export interface TiledVariant {
  /** Capacity of a q/k row (a multiple of 4, >= headDim; the exact size comes from the uniform block). */
  headDim: number;
  /** Capacity of a v/output row (a multiple of 4). */
  valueDim: number;
  /** Query rows per row group (each invocation of the group works on all of them). */
  rq: number;
  /** Invocations per row group: they split the key tile and the output columns. */
  g: number;
  /** Keys per staged K/V tile (a multiple of `g`). */
  bk: number;
  /** Invocations per workgroup (a multiple of `g`). */
  wg: number;
  /**
   * How the `g` invocations of a row agree on the row max and share probabilities: `subgroup`
   * (shuffles; only where whole subgroups fill the workgroup) or `workgroup` (memory and barriers).
   * Irrelevant, and `workgroup`, when `g` is 1.
   */
  reduce: 'subgroup' | 'workgroup';
  /** The logit terms compiled in (see {@link LogitTerms}); `'dot'` serves only calls without them. */
  logitTerms: LogitTerms;
}

/** Query rows per workgroup of a tiled variant. */
export function tiledRows(v: TiledVariant): number {
  return (v.rq * v.wg) / v.g;
}

/**
 * Vec4s per staged v row: every column a lane's unrolled P.V reads (`ceil(valueDim / 4g)` per lane,
 * so at least `valueDim / 4`), which keeps those reads inside the array without a bounds branch.
 */
function valueRowVec4s(v: TiledVariant): number {
  return v.g * Math.ceil(v.valueDim / 4 / v.g);
}

/** Workgroup-memory sizes (in floats, per variable) of a tiled variant, for the fit check. */
export function tiledWorkgroupSizes(v: TiledVariant): number[] {
  const bq = tiledRows(v);
  const qStride = v.headDim / 4 + 1;
  const sizes = [4 * bq * qStride, 4 * v.bk * qStride, 4 * v.bk * valueRowVec4s(v)];
  if (v.g > 1 && v.reduce === 'workgroup') sizes.push(bq * v.bk, bq * v.g, bq * v.g);
  if (v.g > 1 && v.reduce === 'subgroup') sizes.push(1);
  return sizes;
}

/** Floats each invocation keeps in registers: scores and their low parts, accumulators, tile sums. */
export function tiledPrivateFloats(v: TiledVariant): number {
  const columns = Math.ceil(v.valueDim / 4 / v.g);
  return 2 * v.rq * (v.bk / v.g) + 2 * 4 * v.rq * columns;
}

/** The tiled forward kernel. Bindings: {@link ATTENTION_BINDINGS}, as the scalar kernel's. */
export function tiledAttentionShader(v: TiledVariant, precision: StoragePrecision = 'f32'): string {
  const { rq: RQ, g: G, bk: BK, wg: WG } = v;
  if (v.headDim % 4 !== 0 || v.valueDim % 4 !== 0 || BK % G !== 0 || WG % G !== 0) {
    throw new Error(`tiledAttentionShader: inconsistent variant ${JSON.stringify(v)}`);
  }
  const BQ = tiledRows(v);
  const D4C = v.headDim / 4;
  const DV4C = v.valueDim / 4;
  const KPL = BK / G;
  const CPL = Math.ceil(DV4C / G);
  const subgroup = G > 1 && v.reduce === 'subgroup';
  const shared = G > 1 && v.reduce === 'workgroup';
  // With one invocation per row every lane reads the same k and v rows: a constant lane index lets
  // the compiler see that (SwiftShader then loads once for its 4 lanes instead of gathering).
  const lane = G === 1 ? '0u' : 'lane';
  const rows = range(RQ);
  const keys = range(KPL);

  const reduceMax = rows
    .map((r) => {
      if (subgroup) {
        return range(Math.log2(G))
          .map((k) => {
            const step = 2 ** k;
            return `{
        let om = subgroupShuffleXor(tmax[${r}], ${step}u);
        let os = subgroupShuffleXor(seen[${r}], ${step}u);
        tmax[${r}] = select(om, select(tmax[${r}], max(tmax[${r}], om), os != 0u), seen[${r}] != 0u);
        seen[${r}] |= os;
      }`;
          })
          .join('\n');
      }
      return '';
    })
    .join('\n');
  // Workgroup reduction: every lane combines the g partials in the same order, so all agree exactly.
  const sharedMax = shared
    ? `
    ${rows.map((r) => `redF[(row0 + ${r}u) * G + lane] = tmax[${r}]; redU[(row0 + ${r}u) * G + lane] = seen[${r}];`).join('\n    ')}
    workgroupBarrier();
    ${rows
      .map(
        (r) => `{
      var mx = 0.0;
      var sn = 0u;
      for (var c = 0u; c < G; c++) {
        let om = redF[(row0 + ${r}u) * G + c];
        let os = redU[(row0 + ${r}u) * G + c];
        mx = select(om, select(mx, max(mx, om), os != 0u), sn != 0u);
        sn |= os;
      }
      tmax[${r}] = mx;
      seen[${r}] = sn;
    }`,
      )
      .join('\n    ')}`
    : '';

  // The probability of (local row r, tile key c) for the P.V product.
  const fetchP = (r: number, c: string) => {
    if (G === 1) return `sc[${r * KPL}u + ${c}]`;
    if (shared) return `ps[(row0 + ${r}u) * BK + ${c}]`;
    return '';
  };
  // Unrolled over this lane's output columns, without a bounds branch: a lane's columns past the
  // value's accumulate zeros and are never stored, and vs rows are VS = CPL g vec4s wide so that
  // every read stays inside the array. A branch or a loop-indexed accumulator made SwiftShader mask
  // and gather every update (measured: the forward took about 30% less time once both went).
  const pvBody = (pExprs: string[]) => `
        ${rows.map((r) => `let p${r} = ${pExprs[r]};`).join('\n        ')}
        ${range(CPL)
          .map(
            (t) => `{
          let vv = vs[c * VS + ${lane} + ${t * G}u];
          ${rows.map((r) => `tv${r * CPL + t} += select(vec4<f32>(0.0), p${r} * vv, p${r} != 0.0);`).join('\n          ')}
        }`,
          )
          .join('\n        ')}`;
  const pv = subgroup
    ? `
      for (var u = 0u; u < KPL; u++) {
        for (var src = 0u; src < G; src++) {
          let c = src + u * G;
          ${rows.map((r) => `let q${r}p = subgroupShuffle(sc[${r * KPL}u + u], sgBase + src);`).join('\n          ')}
          ${pvBody(rows.map((r) => `q${r}p`))}
        }
      }`
    : `
      for (var c = 0u; c < BK; c++) {
        ${pvBody(rows.map((r) => fetchP(r, 'c')))}
      }`;

  const reduceEnd = subgroup
    ? rows
        .map((r) =>
          range(Math.log2(G))
            .map(
              (k) =>
                `l[${r}] += subgroupShuffleXor(l[${r}], ${2 ** k}u); st[${r}] |= subgroupShuffleXor(st[${r}], ${2 ** k}u);`,
            )
            .join('\n  '),
        )
        .join('\n  ')
    : shared
      ? `
  workgroupBarrier();
  ${rows.map((r) => `redF[(row0 + ${r}u) * G + lane] = l[${r}]; redU[(row0 + ${r}u) * G + lane] = st[${r}];`).join('\n  ')}
  workgroupBarrier();
  ${rows
    .map(
      (r) => `{
    var sum = 0.0;
    var state = 0u;
    for (var c = 0u; c < G; c++) { sum += redF[(row0 + ${r}u) * G + c]; state |= redU[(row0 + ${r}u) * G + c]; }
    l[${r}] = sum;
    st[${r}] = state;
  }`,
    )
    .join('\n  ')}`
      : '';

  return `${subgroup ? 'enable subgroups;\n' : ''}${forwardHeader(precision)}
const WG = ${WG}u;
const G = ${G}u;
const BQ = ${BQ}u;
const BK = ${BK}u;
const KPL = ${KPL}u;
const CPL = ${CPL}u;
const D4C = ${D4C}u;
const DV4C = ${DV4C}u;
// q and k rows are padded by one vec4 so that lanes reading different rows hit different banks.
const QS = ${D4C + 1}u;
// v rows hold every column a lane's unrolled P.V reads (CPL g vec4s, >= DV4C).
const VS = ${valueRowVec4s(v)}u;

var<workgroup> qs: array<vec4<f32>, ${BQ * (D4C + 1)}>;
var<workgroup> ks: array<vec4<f32>, ${BK * (D4C + 1)}>;
var<workgroup> vs: array<vec4<f32>, ${BK * valueRowVec4s(v)}>;
${shared ? `var<workgroup> ps: array<f32, ${BQ * BK}>;\nvar<workgroup> redF: array<f32, ${BQ * G}>;\nvar<workgroup> redU: array<u32, ${BQ * G}>;` : ''}
${subgroup ? 'var<workgroup> slotBase: atomic<u32>;' : ''}

${['Q', 'K', 'V'].map((buffer) => load4Code(buffer, precision)).join('')}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32${
    subgroup ? ', @builtin(subgroup_invocation_id) sgid: u32, @builtin(subgroup_size) sgsize: u32' : ''
  }) {
  let gi = wid.y * P.groupsX + wid.x;
  if (gi >= P.total) { return; }
  let D4 = (P.d + 3u) / 4u;
  let DV4 = (P.dv + 3u) / 4u;
  ${
    subgroup
      ? `// A row group's g lanes must share a subgroup: slots are numbered subgroup by subgroup (the
  // workgroup holds whole subgroups, each a multiple of g lanes), whatever order subgroups start in.
  var first = 0u;
  if (sgid == 0u) { first = atomicAdd(&slotBase, sgsize); }
  let slot = subgroupBroadcastFirst(first) + sgid;
  let sgBase = sgid - sgid % G;`
      : 'let slot = lid;'
  }
  let lane = slot % G;
  let row0 = (slot / G) * ${RQ}u;
${queryTileCode('gi')}

  for (var e = lid; e < BQ * D4; e += WG) {
    let r = e / D4;
    let i = i0 + r;
    var q = vec4<f32>(0.0);
    if (i < P.lq) { q = load4Q(b * P.qsB + h * P.qsH + i * P.qsL, e % D4, P.d); }
    qs[r * QS + e % D4] = q;
  }

  // Per local row: running max, this lane's part of the denominator, state (bit 0: a visible
  // finite logit seen, agreed by the row's lanes; bit 1: this lane saw a NaN or +inf logit).
  var m: array<f32, ${RQ}>;
  var l: array<f32, ${RQ}>;
  var st: array<u32, ${RQ}>;
  var acc: array<vec4<f32>, ${RQ * CPL}>;

  for (var kt = tStart; kt < tEnd; kt += BK) {
    workgroupBarrier();
    for (var e = lid; e < BK * D4C; e += WG) {
      let c = e / D4C;
      let j = kt + c;
      let k = load4K(b * P.ksB + kvh * P.ksH + min(j, P.lk - 1u) * P.ksL, e % D4C, P.d);
      ks[c * QS + e % D4C] = select(vec4<f32>(0.0), k, j < P.lk);
    }
    for (var e = lid; e < BK * DV4C; e += WG) {
      let c = e / DV4C;
      let j = kt + c;
      let x = load4V(b * P.vsB + kvh * P.vsH + min(j, P.lk - 1u) * P.vsL, e % DV4C, P.dv);
      vs[c * VS + e % DV4C] = select(vec4<f32>(0.0), x, j < P.lk);
    }
    workgroupBarrier();

    // Scores: this lane's keys are lane, lane + g, ... of the tile. Per-tile arrays are zeroed
    // explicitly: SwiftShader was seen to carry an initializer-less loop-body var across iterations.
    var sc = array<f32, ${RQ * KPL}>();
    for (var d4 = 0u; d4 < D4; d4++) {
      ${rows.map((r) => `let q${r} = qs[(row0 + ${r}u) * QS + d4];`).join('\n      ')}
      ${keys
        .map(
          (u) =>
            `{ let k = ks[(${lane} + ${u * G}u) * QS + d4]; ${rows.map((r) => `sc[${r * KPL + u}] += dot(q${r}, k);`).join(' ')} }`,
        )
        .join('\n      ')}
    }
    var sl = array<f32, ${RQ * KPL}>();
    var tmax = array<f32, ${RQ}>();
    var seen = array<u32, ${RQ}>();
    // A tile every row of the workgroup sees whole (no window or key mask, inside both lengths,
    // below the causal diagonal) and without softcap, bias or ALiBi: its logits need no per-key
    // check, so this lane's are handled with constant indices (a loop index into a private array
    // is a gather and a scatter per use on SwiftShader). A lane with a non-finite logit takes the
    // general loop, which gives it the spec's NaN and -inf semantics.
    let wholeTile = (P.flags & ${Flags.window | Flags.keyMask | Flags.bias | Flags.alibi | Flags.softcap}u) == 0u
      && kt + BK <= P.lk && i0 + BQ <= P.lq
      && (!causal || i32(kt + BK) - 1 <= off + i32(i0));
    var fastLane = false;
    if (wholeTile) {
      ${range(RQ * KPL)
        .map((t) => `let z${t} = P.scale * sc[${t}];`)
        .join(' ')}
      if (${range(RQ * KPL)
        .map((t) => `isFiniteValue(z${t})`)
        .join(' & ')}) {
        fastLane = true;
        ${range(RQ * KPL)
          .map((t) => `sc[${t}] = z${t};`)
          .join(' ')}
        ${rows
          .map(
            (r) =>
              `tmax[${r}] = ${keys.reduce((e, u) => (e === '' ? `z${r * KPL + u}` : `max(${e}, z${r * KPL + u})`), '')}; seen[${r}] = 1u;`,
          )
          .join('\n        ')}
      }
    }
    if (!fastLane) {
    for (var t = 0u; t < ${RQ * KPL}u; t++) {
      let r = t / KPL;
      let i = i0 + row0 + r;
      let j = kt + ${lane} + (t % KPL) * G;
      let pos = off + i32(i);
      ${visibleCode()}
      var logit = negInfValue();
      var low = 0.0;
      if (vis) {
        let dotv = sc[t];
        ${logitFromDotCode('dotv', v.logitTerms)}
        logit = select(s, nanValue(), isNanOrPosInf(s));
        low = lo;
      }
      sc[t] = logit;
      sl[t] = low;
      if (isNanOrPosInf(logit)) { st[r] |= 2u; }
      else if (!isNegInf(logit)) { tmax[r] = select(logit, max(tmax[r], logit), seen[r] != 0u); seen[r] = 1u; }
    }
    }
    ${reduceMax}${sharedMax}
    var mt = array<f32, ${RQ}>();
    var alpha = array<f32, ${RQ}>();
    for (var r = 0u; r < ${RQ}u; r++) {
      let had = (st[r] & 1u) != 0u;
      var mNew = m[r];
      var a = 1.0;
      if (seen[r] != 0u) {
        mNew = select(tmax[r], max(m[r], tmax[r]), had);
        a = select(1.0, exp(m[r] - mNew), had);
        st[r] |= 1u;
      }
      mt[r] = mNew;
      alpha[r] = a;
    }
    var tsum = array<f32, ${RQ}>();
    if (fastLane) {
      // Every logit of this lane is finite and its row has seen one (this lane's): no checks, no low parts.
      ${range(RQ * KPL)
        .map((t) => {
          const r = Math.floor(t / KPL);
          const u = t % KPL;
          return `{ let p = exp(sc[${t}] - mt[${r}]); sc[${t}] = p; tsum[${r}] += p;${shared ? ` ps[(row0 + ${r}u) * BK + lane + ${u * G}u] = p;` : ''} }`;
        })
        .join('\n      ')}
    } else {
    for (var t = 0u; t < ${RQ * KPL}u; t++) {
      let r = t / KPL;
      let s = sc[t];
      var p = 0.0;
      if (seen[r] != 0u && !isNanOrPosInf(s) && !isNegInf(s)) { p = exp((s - mt[r]) + sl[t]); }
      sc[t] = p;
      tsum[r] += p;
      ${shared ? `ps[(row0 + r) * BK + lane + (t % KPL) * G] = p;` : ''}
    }
    }
    for (var r = 0u; r < ${RQ}u; r++) {
      // The tile's sum first, then one add into the running sum (rounds once per tile, not per key).
      l[r] = l[r] * alpha[r] + tsum[r];
      m[r] = mt[r];
    }
    ${shared ? 'workgroupBarrier();' : ''}
    ${range(RQ * CPL)
      .map((x) => `var tv${x} = vec4<f32>(0.0);`)
      .join(' ')}
    ${pv}
    ${range(RQ * CPL)
      .map((x) => `acc[${x}] = acc[${x}] * alpha[${Math.floor(x / CPL)}] + tv${x};`)
      .join(' ')}
  }

  ${reduceEnd}
  for (var r = 0u; r < ${RQ}u; r++) {
    let i = i0 + row0 + r;
    var bad = (st[r] & 2u) != 0u;
    var any = (st[r] & 1u) != 0u;
    var mr = m[r];
    var lr = l[r];
    var factor = 1.0;
${sinkFoldCode('mr', 'lr')}
    if (i < P.lq) {
      if ((P.flags & ${Flags.rows}u) != 0u && lane == 0u) {
        let row = (b * P.hq + h) * P.lq + i;
        let count = P.batch * P.hq * P.lq;
        ROWS[row] = select(select(negInfValue(), mr + log(lr), any), nanValue(), bad);
        ROWS[count + row] = select(mr, nanValue(), bad);
        ROWS[2u * count + row] = select(0.0, lr, any);
      }
      let norm = select(0.0, factor / lr, any);
      let base = b * P.osB + h * P.osH + i * P.osL;
      for (var t = 0u; t < CPL; t++) {
        let c4 = ${lane} + t * G;
        if (c4 < DV4) {
          let o = acc[r * CPL + t] * norm;
          for (var c = 0u; c < 4u; c++) {
            let col = c4 * 4u + c;
            if (col < P.dv) { O[base + col] = select(select(0.0, o[c], any), nanValue(), bad); }
          }
        }
      }
    }
  }
}
`;
}
