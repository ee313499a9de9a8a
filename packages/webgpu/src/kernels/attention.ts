/** The scalar fused forward kernel (short queries, head sizes the tiled kernel cannot hold). */
import type { StoragePrecision } from '@attnkit/spec';
import {
  ATTENTION_BINDINGS,
  type AttentionVariant,
  Flags,
  forwardHeader,
  ONLINE_SOFTMAX_INIT,
  ONLINE_SOFTMAX_STEP,
  onlineSoftmaxEntry,
  queryTileCode,
  SCORE_CELL,
  sinkFoldCode,
  storedValue,
  visibleCode,
} from './shared.js';

/**
 * The fused attention kernel: one workgroup per (batch, head, query tile). K/V tiles are staged in
 * workgroup memory, scores are turned into probabilities with an online softmax (running max and
 * denominator per row), tiles outside the causal/window band of the whole query tile are skipped.
 * Bindings: {@link ATTENTION_BINDINGS}; with f16 storage q, k and v are packed pairs ({@link storedValue}).
 */
export function attentionShader(v: AttentionVariant, precision: StoragePrecision = 'f32'): string {
  const { headDim: D, valueDim: DV, bk: BK } = v;
  return `${forwardHeader(precision)}
${onlineSoftmaxEntry(v, `  // Exact sizes at run time (BK <= ${BK}, D <= ${D}, DV <= ${DV}); rows are packed at these strides.\n`)}
${queryTileCode('g')}

  for (var e = lid; e < BQ * D; e += WG) {
    let r = e / D;
    let i = i0 + r;
    qs[e] = select(0.0, ${storedValue('Q', 'b * P.qsB + h * P.qsH + i * P.qsL', 'e % D', precision)}, i < P.lq);
  }
${ONLINE_SOFTMAX_INIT}

  for (var kt = tStart; kt < tEnd; kt += BK) {
    workgroupBarrier();
    for (var e = lid; e < BK * D; e += WG) {
      let j = kt + e / D;
      ks[e] = select(0.0, ${storedValue('K', 'b * P.ksB + kvh * P.ksH + j * P.ksL', 'e % D', precision)}, j < P.lk);
    }
    for (var e = lid; e < BK * DV; e += WG) {
      let j = kt + e / DV;
      vs[e] = select(0.0, ${storedValue('V', 'b * P.vsB + kvh * P.vsH + j * P.vsL', 'e % DV', precision)}, j < P.lk);
    }
    workgroupBarrier();
    for (var e = lid; e < BQ * BK; e += WG) {
      let r = e / BK;
      let c = e % BK;
      let i = i0 + r;
      let j = kt + c;
      let pos = off + i32(i);
      ${visibleCode()}
${SCORE_CELL}
    }
${ONLINE_SOFTMAX_STEP}
  }
  workgroupBarrier();
  for (var r = lid; r < BQ; r += WG) {
    let state = rowS[r];
    var bad = (state & 2u) != 0u;
    var any = (state & 1u) != 0u;
    var m = rowM[r];
    var l = rowL[r];
    var factor = 1.0;
${sinkFoldCode('m', 'l')}
    rowA[r] = select(0.0, factor / l, any);
    rowS[r] = select(0u, 1u, any) | select(0u, 2u, bad);
    let i = i0 + r;
    if ((P.flags & ${Flags.rows}u) != 0u && i < P.lq) {
      let row = (b * P.hq + h) * P.lq + i;
      let rows = P.batch * P.hq * P.lq;
      ROWS[row] = select(select(negInfValue(), m + log(l), any), nanValue(), bad);
      ROWS[rows + row] = select(m, nanValue(), bad);
      ROWS[2u * rows + row] = select(0.0, l, any);
    }
  }
  workgroupBarrier();
  for (var e = lid; e < BQ * DV; e += WG) {
    let r = e / DV;
    let i = i0 + r;
    if (i < P.lq) {
      let state = rowS[r];
      var o = 0.0;
      if ((state & 2u) != 0u) { o = nanValue(); }
      else if ((state & 1u) != 0u) { o = acc[e] * rowA[r]; }
      O[b * P.osB + h * P.osH + i * P.osL + e % DV] = o;
    }
  }
}
`;
}
