/** The attention-pattern kernel, run only for `returnWeights`. */
import type { StoragePrecision } from '@attnkit/spec';
import { bindingDeclarations } from '../bindings.js';
import {
  type AttentionVariant,
  FLOAT_HELPERS,
  logitCode,
  MASK_AT,
  PARAMS_STRUCT,
  storedValue,
  visibleCode,
  WEIGHTS_BINDINGS,
  withStoredInputs,
} from './shared.js';

/**
 * The attention pattern, one invocation per (b, h, i, j): recomputes the logit and normalises it with
 * the row max and denominator the fused kernel left in ROWS. Only run when `returnWeights` is set.
 * Bindings: {@link WEIGHTS_BINDINGS}.
 */
export function weightsShader(v: AttentionVariant, precision: StoragePrecision = 'f32'): string {
  return `${PARAMS_STRUCT}
${bindingDeclarations(withStoredInputs(WEIGHTS_BINDINGS, precision))}
${MASK_AT}
${FLOAT_HELPERS}
@compute @workgroup_size(${v.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  // P.total counts workgroups here; one invocation per weight.
  let g = wid.y * P.groupsX + wid.x;
  let n = g * ${v.wg}u + lid;
  let rows = P.batch * P.hq * P.lq;
  if (g >= P.total || n >= rows * P.lk) { return; }
  let j = n % P.lk;
  let row = n / P.lk;
  let i = row % P.lq;
  let h = (row / P.lq) % P.hq;
  let b = row / (P.lq * P.hq);
  let kvh = h / (P.hq / P.hkv);
  let pos = (i32(P.lk) - i32(P.lq)) + i32(i);
  let m = ROWS[rows + row];
  let l = ROWS[2u * rows + row];
  var w = 0.0;
  if (isNanOrPosInf(m)) { w = nanValue(); }
  else if (l != 0.0) {
    ${visibleCode()}
    if (vis) {
      ${logitCode(
        (d) => storedValue('Q', 'b * P.qsB + h * P.qsH + i * P.qsL', d, precision),
        (d) => storedValue('K', 'b * P.ksB + kvh * P.ksH + j * P.ksL', d, precision),
      )}
      if (!isNegInf(s)) { w = exp((s - m) + lo) / l; }
    }
  }
  W[n] = w;
}
`;
}
