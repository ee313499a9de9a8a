/**
 * Attention patterns as pixels, shared by the Node PNG writer and the browser canvas: each `[L, L]`
 * pattern (row = query position, column = key position) becomes a block of `cell x cell` pixels,
 * white for weight 0 through dark blue for weight 1, with a one-pixel grey grid between panels.
 */
export interface Raster {
  width: number;
  height: number;
  /** `width * height * 3` bytes, RGB. */
  rgb: Uint8Array;
}

/** Weight in [0, 1] -> RGB: white -> light blue -> dark blue (perceptually monotone enough to read). */
export function colour(weight: number): [number, number, number] {
  const t = Math.min(1, Math.max(0, weight)) ** 0.7; // lifts small weights a little, so spread attention shows
  const from = [255, 255, 255];
  const mid = [107, 174, 214];
  const to = [8, 48, 107];
  const [a, b, u] = t < 0.5 ? [from, mid, t / 0.5] : [mid, to, (t - 0.5) / 0.5];
  return [0, 1, 2].map((c) => Math.round(a[c] + (b[c] - a[c]) * u)) as [number, number, number];
}

/** One pattern `[L, L]` as a raster. */
export function patternRaster(pattern: Float32Array, length: number, cell = 12): Raster {
  return gridRaster([[pattern]], length, cell);
}

/** Panels `[row][column]` of `[L, L]` patterns side by side (rows = layers, columns = heads). */
export function gridRaster(panels: Float32Array[][], length: number, cell = 12, gap = 6): Raster {
  const rows = panels.length;
  const cols = Math.max(...panels.map((row) => row.length));
  const size = length * cell;
  const width = cols * size + (cols + 1) * gap;
  const height = rows * size + (rows + 1) * gap;
  const rgb = new Uint8Array(width * height * 3).fill(235);
  for (const [r, row] of panels.entries()) {
    for (const [c, pattern] of row.entries()) {
      const left = gap + c * (size + gap);
      const top = gap + r * (size + gap);
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          const i = Math.floor(y / cell);
          const j = Math.floor(x / cell);
          const edge = y % cell === 0 || x % cell === 0;
          const [red, green, blue] = colour(pattern[i * length + j]);
          const at = ((top + y) * width + left + x) * 3;
          // a faint grid line between cells keeps positions countable
          const dim = edge ? 0.93 : 1;
          rgb[at] = Math.round(red * dim);
          rgb[at + 1] = Math.round(green * dim);
          rgb[at + 2] = Math.round(blue * dim);
        }
    }
  }
  return { width, height, rgb };
}

/**
 * How much of a head's attention falls on the key one step back (a previous-token head), averaged
 * over every query row that has one, and on the key right after the previous occurrence of the
 * query's token (an induction head), averaged over the rows from the first repeat on: the two numbers
 * that say which circuit a head implements.
 */
export function patternScores(pattern: Float32Array, tokens: readonly number[], period: number) {
  const L = tokens.length;
  let previous = 0;
  for (let i = 1; i < L; i++) previous += pattern[i * L + (i - 1)];
  let induction = 0;
  for (let i = period; i < L; i++) induction += pattern[i * L + (i - period + 1)];
  return { previousToken: previous / (L - 1), induction: induction / Math.max(1, L - period) };
}
