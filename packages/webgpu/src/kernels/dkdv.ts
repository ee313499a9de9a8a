import {
  type BackwardVariant,
  DKDV_BINDINGS,
  gradCellCode,
  STAGE_QUERY_ROWS,
  stageKeyRowsCode,
  stageRowStatsCode,
  tiledPreamble,
} from './backward-common.js';
import { Flags, workgroupMainCode } from './shared.js';

/** Output elements (of dK then dV) each invocation of the dK/dV kernel accumulates. */
export function dkdvAccumulators(v: BackwardVariant): number {
  return Math.ceil((v.kv.keys * (v.headDim + v.valueDim)) / v.wg);
}

/**
 * dK and dV: one workgroup per (batch, key/value head, key tile). The tile's keys and values stay in
 * workgroup memory while it walks, in a fixed order, the query heads of its group and the query tiles
 * that can see the tile (tiles outside the causal/window band are never loaded), recomputing each
 * P = norm * exp(S - lse) and dS = P * (dP - delta) from the forward's lse and the rows' delta and
 * norm (written by the dQ kernel, which runs first):
 * dV += P^T dO, dK += dS^T Q (times scale once, at the end). Each invocation owns fixed output
 * elements and keeps their running sums in registers as hi + lo, so nothing is shared between
 * workgroups and the result does not depend on scheduling.
 * Bindings: {@link DKDV_BINDINGS}.
 */
export function dkdvShader(v: BackwardVariant): string {
  const { headDim: D, valueDim: DV, wg: WG } = v;
  const { rows: BQ, keys: BK } = v.kv;
  const NACC = dkdvAccumulators(v);
  return `${tiledPreamble(v, v.kv, DKDV_BINDINGS, NACC)}
var<workgroup> ks: array<f32, ${BK * D}>;
var<workgroup> vs: array<f32, ${BK * DV}>;
var<workgroup> qs: array<f32, ${BQ * D}>;
var<workgroup> dos: array<f32, ${BQ * DV}>;
var<workgroup> ps: array<f32, ${BQ * BK}>;
var<workgroup> dss: array<f32, ${BQ * BK}>;
var<workgroup> rowLse: array<f32, ${BQ}>;
var<workgroup> rowDelta: array<f32, ${BQ}>;
var<workgroup> rowNorm: array<f32, ${BQ}>;

${workgroupMainCode(WG)}
  // Exact sizes at run time (D <= ${D}, DV <= ${DV}); staged rows are packed at these strides.
  let D = P.d;
  let DV = P.dv;
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

  var accHi: array<f32, NACC>;
  var accLo: array<f32, NACC>;
  for (var hh = 0u; hh < group; hh++) {
    let h = kvh * group + hh;
    let rowBase = (b * P.hq + h) * P.lq;
    for (var i0 = tStart; i0 < tEnd; i0 += BQ) {
      workgroupBarrier();${STAGE_QUERY_ROWS}${stageRowStatsCode(true)}
      workgroupBarrier();
      for (var e = lid; e < BQ * BK; e += WG) {
        ${gradCellCode(true)}
        ps[e] = p;
        dss[e] = dr;
      }
      workgroupBarrier();
      // This step's sums over its rows first, then one add into the running sums.
      for (var n = 0u; n < NACC; n++) {
        let e = lid + n * WG;
        var t = 0.0;
        if (e < BK * D) {
          let c = e / D;
          let d = e % D;
          for (var r = 0u; r < BQ; r++) { t += dss[r * BK + c] * qs[r * D + d]; }
        } else if (e < BK * (D + DV)) {
          let c = (e - BK * D) / DV;
          let d = (e - BK * D) % DV;
          for (var r = 0u; r < BQ; r++) { t += ps[r * BK + c] * dos[r * DV + d]; }
        }
        let sum = twoSum(accHi[n], t);
        accHi[n] = sum.x;
        accLo[n] += sum.y;
      }
    }
  }
  for (var n = 0u; n < NACC; n++) {
    let e = lid + n * WG;
    if (e < BK * D) {
      let j = j0 + e / D;
      if (j < P.lk) { GK[(kBase + j) * D + e % D] = P.scale * (accHi[n] + accLo[n]); }
    } else if (e < BK * (D + DV)) {
      let j = j0 + (e - BK * D) / DV;
      if (j < P.lk) { GV[(kBase + j) * DV + (e - BK * D) % DV] = accHi[n] + accLo[n]; }
    }
  }
}
`;
}
