import {
  type BackwardVariant,
  compensatedAddCode,
  DQ_BINDINGS,
  gradCellCode,
  ROW_VEC4S,
  STAGE_QUERY_ROWS,
  stageKeyRowsCode,
  stageRowStatsCode,
  tiledPreamble,
} from './backward-common.js';
import { Flags, queryTileCode, workgroupMainCode } from './shared.js';

/** Output vec4s of dQ (four columns of a row) each invocation of the dQ kernel accumulates. */
export function dqAccumulators(v: BackwardVariant): number {
  return Math.ceil((v.q.rows * v.headDim) / 4 / v.wg);
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

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
export function dqShader(v: BackwardVariant): string {
  const { headDim: D, valueDim: DV, wg: WG } = v;
  const { rows: BQ, keys: BK } = v.q;
  const NACC = dqAccumulators(v);
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
    for (var e = lid; e < BQ * BK; e += WG) {
      ${gradCellCode(false)}
      dss[e] = p;
    }
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
    for (var e = lid; e < BQ * BK; e += WG) {
      ${gradCellCode(true)}
      dss[e] = dr;
      if (withBias && i < P.lq && j < P.lk) {
        if (biasFull) { GB[b * P.bsB + h * P.bsH + i * P.bsI + j * P.bsJ] = ds; }
        else { GB[(rowBase + i) * P.lk + j] = ds; }
      }
    }
    workgroupBarrier();
${range(NACC)
  .map(
    (n) => `    {
      let e = lid + ${n}u * WG;
      if (e < BQ * D4) {
        let r = e / D4;
        let d4 = e % D4;
        var t = vec4<f32>(0.0);
        for (var c = 0u; c < BK; c++) {
          let x = dss[r * BK + c];
          // A zero gradient contributes nothing, so inf or NaN in a masked key row cannot leak.
          t += select(vec4<f32>(0.0), x * ks[c * D4 + d4], x != 0.0);
        }
        ${compensatedAddCode(`accHi[${n}]`, `accLo[${n}]`, 't')}
      }
    }`,
  )
  .join('\n')}
  }
${range(NACC)
  .map(
    (n) => `  {
    let e = lid + ${n}u * WG;
    let i = i0 + e / D4;
    if (e < BQ * D4 && i < P.lq) {
      let grad = P.scale * (accHi[${n}] + accLo[${n}]);
      let base = (rowBase + i) * D + (e % D4) * 4u;
      for (var k = 0u; k < 4u; k++) {
        if ((e % D4) * 4u + k < D) { GQ[base + k] = grad[k]; }
      }
    }
  }`,
  )
  .join('\n')}
}
`;
}
