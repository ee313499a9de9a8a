/**
 * Host-side preparation both passes share: rows padded to the vectorized kernels' whole texels, the
 * key mask as the 1/0 floats a kernel reads, and a query row's (b, h, i) for the per-row tables.
 */

/** A one-float stand-in for an absent input: a kernel's argument types must not change between calls. */
export const DUMMY = new Float32Array(1);

/**
 * Copies `[rows, from]` into `[rows, to]` with zero padding (or returns it when no padding is needed);
 * `onePastEnd` puts a 1 in column `from` of every row.
 */
export function padRows(data: Float32Array, from: number, to: number, onePastEnd = false): Float32Array {
  if (from === to) return data;
  const rows = data.length / from;
  const out = new Float32Array(rows * to);
  for (let r = 0; r < rows; r++) {
    out.set(data.subarray(r * from, (r + 1) * from), r * to);
    if (onePastEnd) out[r * to + from] = 1;
  }
  return out;
}

/** The key mask `[B, Lk]` as 1/0 floats (GL inputs are float textures). */
export function maskFloats(keyMask: Uint8Array): Float32Array {
  return Float32Array.from(keyMask, (x) => (x !== 0 ? 1 : 0));
}

/** Batch, head and index of query row `row` (rows are `(b, h, i)` row-major). */
export function queryRowIndex(row: number, Hq: number, Lq: number): { b: number; h: number; i: number } {
  const i = row % Lq;
  const bh = (row - i) / Lq;
  const h = bh % Hq;
  return { b: (bh - h) / Hq, h, i };
}
