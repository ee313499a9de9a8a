/**
 * Working memory the kernels reuse from call to call, so repeated calls do not allocate and the
 * backend can report (and on dispose release) exactly what it holds. None of it grows with
 * `Lq * Lk`: its size depends on the tile sizes, the heads per kv group and `Dv` only.
 */
export class Scratch {
  /** Scores of one tile, `[rows, keyBlock]`. */
  scores = new Float64Array(0);
  /** Running max per row. */
  rowMax = new Float64Array(0);
  /** Running softmax denominator per row. */
  rowSum = new Float64Array(0);
  /** Unnormalised output accumulators, `[rows, Dv]`. */
  acc = new Float64Array(0);
  /** Keys of the current tile whose probability is not 0 (only those touch V). */
  keyIndex = new Int32Array(0);
  /** Their probabilities. */
  keyProb = new Float64Array(0);
  /** Visible key range `[start, end)` per query row of a block. */
  rangeStart = new Int32Array(0);
  rangeEnd = new Int32Array(0);
  /** Prefix counts of value rows holding NaN or an infinity, `[Lk + 1]` (O(Lk), not O(Lq * Lk)). */
  nonFinite = new Int32Array(0);
  /** Matmul accumulators, `[4, columnBlock]`. */
  matmulAcc = new Float64Array(0);

  /** Grows (never shrinks) the attention buffers to fit `rows` rows of a block. */
  ensureAttention(
    rows: number,
    rowsPerHead: number,
    keyBlock: number,
    valueDim: number,
    keyLength: number,
  ): void {
    if (this.nonFinite.length < keyLength + 1) this.nonFinite = new Int32Array(keyLength + 1);
    if (this.scores.length < rows * keyBlock) this.scores = new Float64Array(rows * keyBlock);
    if (this.rowMax.length < rows) {
      this.rowMax = new Float64Array(rows);
      this.rowSum = new Float64Array(rows);
    }
    if (this.acc.length < rows * valueDim) this.acc = new Float64Array(rows * valueDim);
    if (this.keyIndex.length < keyBlock) {
      this.keyIndex = new Int32Array(keyBlock);
      this.keyProb = new Float64Array(keyBlock);
    }
    if (this.rangeStart.length < rowsPerHead) {
      this.rangeStart = new Int32Array(rowsPerHead);
      this.rangeEnd = new Int32Array(rowsPerHead);
    }
  }

  /** Bytes {@link ensureAttention} holds for these sizes (for an allocation error's message). */
  attentionBytes(
    rows: number,
    rowsPerHead: number,
    keyBlock: number,
    valueDim: number,
    keyLength: number,
  ): number {
    return (
      4 * (keyLength + 1) +
      8 * (rows * keyBlock + 2 * rows + rows * valueDim + keyBlock) +
      4 * keyBlock +
      8 * rowsPerHead
    );
  }

  /** Grows the matmul accumulators to `4 * columns`. */
  ensureMatmul(columns: number): void {
    if (this.matmulAcc.length < 4 * columns) this.matmulAcc = new Float64Array(4 * columns);
  }

  /** Bytes held in typed arrays. */
  bytes(): number {
    return (
      this.scores.byteLength +
      this.rowMax.byteLength +
      this.rowSum.byteLength +
      this.acc.byteLength +
      this.keyIndex.byteLength +
      this.keyProb.byteLength +
      this.rangeStart.byteLength +
      this.rangeEnd.byteLength +
      this.nonFinite.byteLength +
      this.matmulAcc.byteLength
    );
  }

  /** Drops every buffer (the garbage collector frees them once no call holds a reference). */
  release(): void {
    this.scores = new Float64Array(0);
    this.rowMax = new Float64Array(0);
    this.rowSum = new Float64Array(0);
    this.acc = new Float64Array(0);
    this.keyIndex = new Int32Array(0);
    this.keyProb = new Float64Array(0);
    this.rangeStart = new Int32Array(0);
    this.rangeEnd = new Int32Array(0);
    this.nonFinite = new Int32Array(0);
    this.matmulAcc = new Float64Array(0);
  }
}
