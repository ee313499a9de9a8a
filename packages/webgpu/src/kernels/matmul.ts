/** The tiled matmul kernel of the layer's projections. */
import { bindingDeclarations } from '../bindings.js';
import { MATMUL_BIAS_BINDINGS, MATMUL_BINDINGS, paramsBytes, paramsStruct } from './shared.js';

/** Words of the matmul's uniform block, in order (all u32). */
export const MATMUL_PARAM_FIELDS = ['m', 'k', 'n', 'tilesN', 'total', 'groupsX'] as const;
/** Byte size of the matmul uniform block. */
export const MATMUL_PARAMS_BYTES = paramsBytes(MATMUL_PARAM_FIELDS);

/**
 * Tiled matmul `C[m, n] = A[m, k] @ B[k, n] (+ bias[n])`: T x T output tile per workgroup, T x T tiles
 * of A and B staged in workgroup memory. Bindings: {@link MATMUL_BINDINGS}, {@link MATMUL_BIAS_BINDINGS}.
 */
export function matmulShader(tile: number, bias: boolean): string {
  const T = tile;
  return `${paramsStruct(MATMUL_PARAM_FIELDS)}
${bindingDeclarations(bias ? MATMUL_BIAS_BINDINGS : MATMUL_BINDINGS)}
const T = ${T}u;
var<workgroup> as_: array<f32, ${T * T}>;
var<workgroup> bs_: array<f32, ${T * T}>;

@compute @workgroup_size(${T}, ${T})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let g = wid.y * P.groupsX + wid.x;
  if (g >= P.total) { return; }
  let row = (g / P.tilesN) * T + lid.y;
  let col = (g % P.tilesN) * T + lid.x;
  var sum = 0.0;
  for (var t0 = 0u; t0 < P.k; t0 += T) {
    let ak = t0 + lid.x;
    let bk = t0 + lid.y;
    as_[lid.y * T + lid.x] = select(0.0, A[row * P.k + ak], row < P.m && ak < P.k);
    bs_[lid.y * T + lid.x] = select(0.0, B[bk * P.n + col], bk < P.k && col < P.n);
    workgroupBarrier();
    let steps = min(T, P.k - t0);
    for (var t = 0u; t < steps; t++) { sum += as_[lid.y * T + t] * bs_[t * T + lid.x]; }
    workgroupBarrier();
  }
  if (row < P.m && col < P.n) {
    C[row * P.n + col] = sum${bias ? ' + BIAS[col]' : ''};
  }
}
`;
}
