/**
 * Pads the rows of a flat float16 tensor to whole 32-bit words: the layout the f16-storage kernels
 * read (each row of `dim` values `ceil(dim / 2)` words, the last one's high half 0; see f16.ts
 * `packF16Rows`). `upload(data, { dtype: 'float16' })` packs a tensor's values two a word with no
 * gaps, so with an odd head size every other row starts in the middle of a word; attention on such
 * tensors first copies them through this kernel. It moves 16-bit halves as bits (no float
 * conversion), so the values are exactly the caller's. One invocation per output word.
 * Bindings: {@link F16_ROWS_BINDINGS}.
 */
import { binding, bindingDeclarations, PARAMS_BINDING } from '../bindings.js';
import { paramsBytes, paramsStruct } from './shared.js';

/** Words of the kernel's uniform block: rows, values a row, and the dispatch's workgroups (folded at `groupsX`). */
export const F16_ROWS_PARAM_FIELDS = ['rows', 'dim', 'total', 'groupsX'] as const;

export type F16RowsParamField = (typeof F16_ROWS_PARAM_FIELDS)[number];

export const F16_ROWS_PARAMS_BYTES = paramsBytes(F16_ROWS_PARAM_FIELDS);

/** The flat tensor's words in, the padded rows out. */
export const F16_ROWS_BINDINGS = [
  PARAMS_BINDING,
  binding('SRC', 'read', 'array<u32>'),
  binding('DST', 'read_write', 'array<u32>'),
] as const;

export function padF16RowsShader(wg: number): string {
  return `${paramsStruct(F16_ROWS_PARAM_FIELDS)}
${bindingDeclarations(F16_ROWS_BINDINGS)}
// Value e of the flat tensor: the low half of word e / 2 when e is even, else its high half.
fn halfAt(e: u32) -> u32 {
  return (SRC[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu;
}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.y * P.groupsX + wid.x;
  let words = (P.dim + 1u) / 2u;
  let o = g * ${wg}u + lid;
  if (g >= P.total || o >= P.rows * words) { return; }
  let row = o / words;
  let c = o - row * words;
  let e = row * P.dim + 2u * c;
  var high = 0u;
  if (2u * c + 1u < P.dim) { high = halfAt(e + 1u); }
  DST[o] = halfAt(e) | (high << 16u);
}
`;
}
