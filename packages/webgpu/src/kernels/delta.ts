import { bindingDeclarations } from '../bindings.js';
import { BACKWARD_PARAMS_STRUCT, DELTA_BINDINGS } from './backward-common.js';
import { FLOAT_HELPERS } from './shared.js';

/**
 * delta_i = rowsum(dO_i * O_i) from the forward's float32 output, one invocation per row, written
 * after the row's lse in ROWS (which the host filled with lse). The dot product is compensated (exact
 * products, TwoSum): dS = P * (dP - delta) cancels, so delta's error is dS's. A row with no visible
 * key (lse = -inf) gets 0: its output is 0, and nothing from its inputs may leak.
 * Bindings: {@link DELTA_BINDINGS}.
 */
export function deltaShader(wg: number): string {
  return `${BACKWARD_PARAMS_STRUCT}
${bindingDeclarations(DELTA_BINDINGS)}
${FLOAT_HELPERS}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.y * P.groupsX + wid.x;
  let row = g * ${wg}u + lid;
  if (g >= P.total || row >= P.rows) { return; }
  var hi = 0.0;
  var lo = 0.0;
  if (!isNegInf(ROWS[row])) {
    for (var d = 0u; d < P.dv; d++) {
      let a = QD[P.doOff + row * P.dv + d];
      let o = O[row * P.dv + d];
      let prod = a * o;
      let perr = twoProductError(a, o, prod);
      let sum = twoSum(hi, prod);
      hi = sum.x;
      lo += sum.y + select(0.0, perr, abs(perr) < 3.0e38);
    }
  }
  ROWS[P.rows + row] = hi + lo;
}
`;
}
