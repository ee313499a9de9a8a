import { bindingDeclarations } from '../bindings.js';
import {
  BACKWARD_PARAMS_STRUCT,
  orderedSumCode,
  orderedSumDeclarations,
  SINKS_GRAD_BINDINGS,
} from './backward-common.js';
import { FLOAT_HELPERS, workgroupMainCode } from './shared.js';

/**
 * gradSinks[h] = -sum over (b, i) of P_sink * delta_i, P_sink = norm_i * exp(sink_h - lse_i) (norm: see
 * the dQ kernel): one workgroup
 * per query head; each invocation sums a fixed stride of rows (TwoSum), then invocation 0 adds the
 * partial sums in index order, so the bits never depend on scheduling. Rows with lse = -inf add 0.
 * Bindings: {@link SINKS_GRAD_BINDINGS}.
 */
export function sinksGradShader(wg: number): string {
  return `${BACKWARD_PARAMS_STRUCT}
${bindingDeclarations(SINKS_GRAD_BINDINGS)}
${FLOAT_HELPERS}
${orderedSumDeclarations(wg)}

${workgroupMainCode(wg, 'h')}
  let sink = HEAD[P.hq + h];
  var hi = 0.0;
  var lo = 0.0;
  if (!isNegInf(sink)) {
    for (var t = lid; t < P.batch * P.lq; t += WG) {
      let row = ((t / P.lq) * P.hq + h) * P.lq + t % P.lq;
      let lse = ROWS[row];
      if (!isNegInf(lse)) {
        let pSink = exp(sink - lse) * ROWS[2u * P.rows + row];
        let sum = twoSum(hi, -pSink * ROWS[P.rows + row]);
        hi = sum.x;
        lo += sum.y;
      }
    }
  }
${orderedSumCode('GS[h]')}
}
`;
}
