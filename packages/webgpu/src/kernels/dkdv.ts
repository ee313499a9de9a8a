import {
  type BackwardVariant,
  compensatedAddCode,
  DKDV_BINDINGS,
  gradCellCode,
  ROW_VEC4S,
  STAGE_QUERY_ROWS,
  stageKeyRowsCode,
  stageRowStatsCode,
  tiledPreamble,
} from './backward-common.js';
import { Flags, workgroupMainCode } from './shared.js';

/** Output vec4s (of dK then dV, four columns of a row) each invocation of the dK/dV kernel accumulates. */
export function dkdvAccumulators(v: BackwardVariant): number {
  return Math.ceil((v.kv.keys * (v.headDim + v.valueDim)) / 4 / v.wg);
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

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
export function dkdvShader(v: BackwardVariant): string {
  const { headDim: D, valueDim: DV, wg: WG } = v;
  const { rows: BQ, keys: BK } = v.kv;
  const NACC = dkdvAccumulators(v);
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
      for (var e = lid; e < BQ * BK; e += WG) {
        ${gradCellCode(true)}
        ps[e] = p;
        dss[e] = dr;
      }
      workgroupBarrier();
      // This step's sums over its rows first, then one add into the running sums.
${range(NACC)
  .map(
    (n) => `      {
        let e = lid + ${n}u * WG;
        var t = vec4<f32>(0.0);
        if (e < BK * D4) {
          let c = e / D4;
          let d4 = e % D4;
          for (var r = 0u; r < BQ; r++) { t += dss[r * BK + c] * qs[r * D4 + d4]; }
        } else if (e < BK * (D4 + DV4)) {
          let c = (e - BK * D4) / DV4;
          let d4 = (e - BK * D4) % DV4;
          for (var r = 0u; r < BQ; r++) { t += ps[r * BK + c] * dos[r * DV4 + d4]; }
        }
        ${compensatedAddCode(`accHi[${n}]`, `accLo[${n}]`, 't')}
      }`,
  )
  .join('\n')}
    }
  }
${range(NACC)
  .map(
    (n) => `  {
    let e = lid + ${n}u * WG;
    if (e < BK * D4) {
      let j = j0 + e / D4;
      let d = (e % D4) * 4u;
      let grad = P.scale * (accHi[${n}] + accLo[${n}]);
      if (j < P.lk) {
        for (var k = 0u; k < 4u; k++) {
          if (d + k < D) { GK[(kBase + j) * D + d + k] = grad[k]; }
        }
      }
    } else if (e < BK * (D4 + DV4)) {
      let j = j0 + (e - BK * D4) / DV4;
      let d = ((e - BK * D4) % DV4) * 4u;
      let grad = accHi[${n}] + accLo[${n}];
      if (j < P.lk) {
        for (var k = 0u; k < 4u; k++) {
          if (d + k < DV) { GV[(kBase + j) * DV + d + k] = grad[k]; }
        }
      }
    }
  }`,
  )
  .join('\n')}
}
`;
}
