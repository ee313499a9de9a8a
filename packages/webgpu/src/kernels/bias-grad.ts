import { bindingDeclarations } from '../bindings.js';
import {
  BACKWARD_PARAMS_STRUCT,
  BIAS_GRAD_BINDINGS,
  orderedSumCode,
  orderedSumDeclarations,
} from './backward-common.js';
import { FLOAT_HELPERS, workgroupMainCode } from './shared.js';

/**
 * gradBias for a bias that broadcasts: each element of the bias's own shape is the sum of the dS
 * cells it was broadcast to, read from the `[B, Hq, Lq, Lk]` scratch the dQ kernel filled. One
 * workgroup per bias element; each invocation sums a fixed stride of the cells (TwoSum), then
 * invocation 0 adds the partial sums in index order: same input, same bits.
 * Bindings: {@link BIAS_GRAD_BINDINGS} (SCRATCH: the dS cells).
 */
export function biasGradShader(wg: number): string {
  return `${BACKWARD_PARAMS_STRUCT}
${bindingDeclarations(BIAS_GRAD_BINDINGS)}
${FLOAT_HELPERS}
${orderedSumDeclarations(wg)}

${workgroupMainCode(wg, 'n')}
  // Each bias dimension is either the full one or 1: the extent summed over is full / own.
  let eB = P.batch / P.biasB;
  let eH = P.hq / P.biasH;
  let eI = P.lq / P.biasI;
  let eJ = P.lk / P.biasJ;
  let cj = n % P.biasJ;
  let ci = (n / P.biasJ) % P.biasI;
  let ch = (n / (P.biasJ * P.biasI)) % P.biasH;
  let cb = n / (P.biasJ * P.biasI * P.biasH);
  var hi = 0.0;
  var lo = 0.0;
  for (var t = lid; t < eB * eH * eI * eJ; t += WG) {
    let tj = t % eJ;
    let ti = (t / eJ) % eI;
    let th = (t / (eJ * eI)) % eH;
    let tb = t / (eJ * eI * eH);
    let cell = (((cb + tb) * P.hq + ch + th) * P.lq + ci + ti) * P.lk + cj + tj;
    let sum = twoSum(hi, SCRATCH[cell]);
    hi = sum.x;
    lo += sum.y;
  }
${orderedSumCode('GB[n]')}
}
`;
}
