import {
  type BackwardVariant,
  cellBlock,
  DQ_BINDINGS,
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
import { Flags, type LogitTerms, queryTileCode, range, workgroupMainCode } from './shared.js';

/** The vec4s of dQ (four columns of a row) each invocation of the dQ kernel owns. */
export function dqOwned(v: BackwardVariant): OwnedVec4s {
  return ownedVec4s(v.q.rows, v.headDim / 4, 'D4', v.wg);
}

/**
 * dQ: one workgroup per (batch, query head, query tile), walking the key tiles its rows can see in a
 * fixed order (the forward's band; tiles outside it are never loaded) twice: first for each row's
 * norm (written to ROWS for the dK/dV kernel, which runs after this one), then recomputing
 * P = norm * exp(S - lse) and dS = P * (dP - delta): dQ += dS K (times scale once, at the end),
 * running sums in registers as hi + lo. Rows are staged as vec4s, so every dot product and every
 * dS K update reads four floats a load; each invocation's vec4 accumulators are unrolled in the
 * generator (a loop-indexed private array made SwiftShader gather every update in the forward).
 * With a bias it also writes every dS it computes: into gradBias itself when the bias has the full
 * `[B, Hq, Lq, Lk]` shape (`Flags.biasFull`), else into a `[B, Hq, Lq, Lk]` scratch that the
 * gradBias kernel reduces in a fixed order (both zeroed first: cells of skipped tiles stay 0).
 * Bindings: {@link DQ_BINDINGS} (GB: gradBias itself, or the dS cells).
 */
export function dqShader(v: BackwardVariant, terms: LogitTerms = 'all'): string {
  const { headDim: D, valueDim: DV, wg: WG } = v;
  const { rows: BQ, keys: BK } = v.q;
  const owned = dqOwned(v);
  const NACC = owned.count;
  const block = cellBlock(v.q, WG);
  return `${tiledPreamble(v, v.q, DQ_BINDINGS, NACC)}
var<workgroup> qs: array<vec4<f32>, ${(BQ * D) / 4}>;
var<workgroup> dos: array<vec4<f32>, ${(BQ * DV) / 4}>;
var<workgroup> ks: array<vec4<f32>, ${(BK * D) / 4}>;
var<workgroup> vs: array<vec4<f32>, ${(BK * DV) / 4}>;
var<workgroup> dss: array<f32, ${BQ * BK}>;
var<workgroup> rowLse: array<f32, ${BQ}>;
var<workgroup> rowDelta: array<f32, ${BQ}>;
var<workgroup> rowNorm: array<f32, ${BQ}>;
var<workgroup> rowLo: array<f32, ${BQ}>;

${workgroupMainCode(WG)}
  let D = P.d;
  let DV = P.dv;
${ROW_VEC4S}
${queryTileCode('g')}
  let rowBase = (b * P.hq + h) * P.lq;
  let kBase = (b * P.hkv + kvh) * P.lk;
  let withBias = (P.flags & ${Flags.bias}u) != 0u;
  let biasFull = (P.flags & ${Flags.biasFull}u) != 0u;
${STAGE_QUERY_ROWS}${stageRowStatsCode(false)}

  for (var r = lid; r < BQ; r += WG) { rowNorm[r] = 0.0; rowLo[r] = 0.0; }

  // First walk: each row's sum of exp(S - lse) (compensated), plus its sink's term. A float32 lse
  // is off by up to half an ulp of |lse| (5e-4 near 1e4), which would scale every P of the row by as
  // much; norm = 1 / sum makes P the softmax of these logits again, whatever the lse's rounding.
  for (var j0 = tStart; j0 < tEnd; j0 += BK) {
    workgroupBarrier();${stageKeyRowsCode(false)}
    workgroupBarrier();
${gradCellsCode(false, v.q, block, 'dss[e] = p;', terms)}
    workgroupBarrier();
    for (var r = lid; r < BQ; r += WG) {
      var t = 0.0;
      for (var c = 0u; c < BK; c++) { t += dss[r * BK + c]; }
      let sum = twoSum(rowNorm[r], t);
      rowNorm[r] = sum.x;
      rowLo[r] += sum.y;
    }
  }
  workgroupBarrier();
  for (var r = lid; r < BQ; r += WG) {
    let i = i0 + r;
    let lse = rowLse[r];
    var l = rowNorm[r] + rowLo[r];
    if ((P.flags & ${Flags.sinks}u) != 0u && !isNegInf(lse)) {
      let sk = HEAD[P.hq + h];
      if (!isNegInf(sk)) { l += exp(sk - lse); }
    }
    // No visible key and no sink (lse = -inf): every P is 0 already.
    let norm = select(1.0 / l, 0.0, l == 0.0);
    rowNorm[r] = norm;
    if (i < P.lq) { ROWS[2u * P.rows + rowBase + i] = norm; }
  }

  var accHi: array<vec4<f32>, NACC>;
  var accLo: array<vec4<f32>, NACC>;
  for (var j0 = tStart; j0 < tEnd; j0 += BK) {
    workgroupBarrier();${stageKeyRowsCode(true)}
    workgroupBarrier();
${gradCellsCode(
  true,
  v.q,
  block,
  `dss[e] = dr;
        if (withBias && i < P.lq && j < P.lk) {
          if (biasFull) { GB[b * P.bsB + h * P.bsH + i * P.bsI + j * P.bsJ] = ds; }
          else { GB[(rowBase + i) * P.lk + j] = ds; }
        }`,
  terms,
)}
    workgroupBarrier();
${ownedProductCode(
  owned,
  0,
  'BK',
  (r, c) => `dss[${r} * BK + ${c}]`,
  (c, d4) => `ks[${c} * D4 + ${d4}]`,
  // A zero gradient contributes nothing, so inf or NaN in a masked key row cannot leak.
  true,
)}
  }
${range(NACC)
  .map(
    (n) => `  {
    let i = i0 + ${owned.row(n)};
    let d = ${owned.col(n)} * 4u;
    if (${owned.valid(n)} && i < P.lq) {
      let grad = P.scale * (accHi[${n}] + accLo[${n}]);
      for (var k = 0u; k < 4u; k++) {
        if (d + k < D) { GQ[(rowBase + i) * D + d + k] = grad[k]; }
      }
    }
  }`,
  )
  .join('\n')}
}
`;
}
