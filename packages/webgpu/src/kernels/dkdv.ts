import {
  type BackwardVariant,
  cellBlock,
  DKDV_BINDINGS,
  gradCellsCode,
  type OwnedVec4s,
  ownedProductCode,
  ownedVec4s,
  ROW_VEC4S,
  STAGE_QUERY_ROWS,
  stageKeyRowsCode,
  stageRowStatsCode,
  tiledPreamble,
} from './backward-common.js';
import { Flags, type LogitTerms, range, workgroupMainCode } from './shared.js';

/** The vec4s of dK and of dV (four columns of a key's row) each invocation of the dK/dV kernel owns. */
export function dkdvOwned(v: BackwardVariant): { dk: OwnedVec4s; dv: OwnedVec4s } {
  return {
    dk: ownedVec4s(v.kv.keys, v.headDim / 4, 'D4', v.wg),
    dv: ownedVec4s(v.kv.keys, v.valueDim / 4, 'DV4', v.wg),
  };
}

/**
 * dK and dV: one workgroup per (batch, key/value head, key tile). The tile's keys and values stay in
 * workgroup memory while it walks, in a fixed order, the query heads of its group and the query tiles
 * that can see the tile (tiles outside the causal/window band are never loaded), recomputing each
 * P = norm * exp(S - lse) and dS = P * (dP - delta) from the forward's lse and the rows' delta and
 * norm (written by the dQ kernel, which runs first):
 * dV += P^T dO, dK += dS^T Q (times scale once, at the end). Each invocation owns fixed output
 * elements and keeps their running sums in registers as hi + lo, so nothing is shared between
 * workgroups and the result does not depend on scheduling. Rows are staged as vec4s and each
 * invocation owns whole vec4s of the outputs (unrolled in the generator, as in kernels/dq.ts), so
 * every dot product and update reads four floats a load.
 * Bindings: {@link DKDV_BINDINGS}.
 */
export function dkdvShader(v: BackwardVariant, terms: LogitTerms = 'all'): string {
  const { headDim: D, valueDim: DV, wg: WG } = v;
  const { rows: BQ, keys: BK } = v.kv;
  const owned = dkdvOwned(v);
  const NK = owned.dk.count;
  const NACC = NK + owned.dv.count;
  return `${tiledPreamble(v, v.kv, DKDV_BINDINGS, NACC)}
var<workgroup> ks: array<vec4<f32>, ${(BK * D) / 4}>;
var<workgroup> vs: array<vec4<f32>, ${(BK * DV) / 4}>;
var<workgroup> qs: array<vec4<f32>, ${(BQ * D) / 4}>;
var<workgroup> dos: array<vec4<f32>, ${(BQ * DV) / 4}>;
var<workgroup> ps: array<f32, ${BQ * BK}>;
var<workgroup> dss: array<f32, ${BQ * BK}>;
var<workgroup> rowLse: array<f32, ${BQ}>;
var<workgroup> rowDelta: array<f32, ${BQ}>;
var<workgroup> rowNorm: array<f32, ${BQ}>;

${workgroupMainCode(WG)}
  // Exact sizes at run time (D <= ${D}, DV <= ${DV}); staged rows are packed at these strides.
  let D = P.d;
  let DV = P.dv;
${ROW_VEC4S}
  let kt = g % P.kTiles;
  let kvh = (g / P.kTiles) % P.hkv;
  let b = g / (P.kTiles * P.hkv);
  let group = P.hq / P.hkv;
  let j0 = kt * BK;
  let jLast = min(j0 + BK, P.lk) - 1u;
  let off = i32(P.lk) - i32(P.lq);
  let kBase = (b * P.hkv + kvh) * P.lk;

  // Query rows that can see some key of this tile (query i sits at position off + i).
  var iStart = 0i;
  var iEnd = i32(P.lq);
  let causal = (P.flags & ${Flags.causal}u) != 0u;
  if (causal) { iStart = max(iStart, i32(j0) - off); }
  if ((P.flags & ${Flags.window}u) != 0u) {
    iEnd = min(iEnd, i32(jLast) + i32(P.window) - off);
    if (!causal) { iStart = max(iStart, i32(j0) - i32(P.window) + 1 - off); }
  }
  let tStart = u32(max(iStart, 0)) / BQ * BQ;
  let tEnd = u32(max(iEnd, 0));
${stageKeyRowsCode(true)}

  var accHi: array<vec4<f32>, NACC>;
  var accLo: array<vec4<f32>, NACC>;
  for (var hh = 0u; hh < group; hh++) {
    let h = kvh * group + hh;
    let rowBase = (b * P.hq + h) * P.lq;
    for (var i0 = tStart; i0 < tEnd; i0 += BQ) {
      workgroupBarrier();${STAGE_QUERY_ROWS}${stageRowStatsCode(true)}
      workgroupBarrier();
${gradCellsCode(true, v.kv, cellBlock(v.kv, WG), 'ps[e] = p;\n        dss[e] = dr;', terms)}
      workgroupBarrier();
      // This step's sums over its rows first, then one add into the running sums.
${ownedProductCode(
  owned.dk,
  0,
  'BQ',
  (c, r) => `dss[${r} * BK + ${c}]`,
  (r, d4) => `qs[${r} * D4 + ${d4}]`,
  false,
)}
${ownedProductCode(
  owned.dv,
  NK,
  'BQ',
  (c, r) => `ps[${r} * BK + ${c}]`,
  (r, d4) => `dos[${r} * DV4 + ${d4}]`,
  false,
)}
    }
  }
${[
  ...range(NK).map((n) => ({ n, o: n, out: owned.dk, buffer: 'GK', width: 'D', scale: 'P.scale * ' })),
  ...range(owned.dv.count).map((o) => ({
    n: NK + o,
    o,
    out: owned.dv,
    buffer: 'GV',
    width: 'DV',
    scale: '',
  })),
]
  .map(
    ({ n, o, out, buffer, width, scale }) => `  {
    let j = j0 + ${out.row(o)};
    let d = ${out.col(o)} * 4u;
    if (${out.valid(o)} && j < P.lk) {
      let grad = ${scale}(accHi[${n}] + accLo[${n}]);
      for (var k = 0u; k < 4u; k++) {
        if (d + k < ${width}) { ${buffer}[(kBase + j) * ${width} + d + k] = grad[k]; }
      }
    }
  }`,
  )
  .join('\n')}
}
`;
}
