/**
 * The forward pass on the GL runtime: plans the chunks of query rows and the key tiles, uploads q,
 * k, v (packed once per call on WebGL2), builds each chunk's row table (exact integer facts the
 * shaders must not compute in float), runs the online-softmax passes of kernels/forward.ts tile by
 * tile, and reads the output (and lse, weights) back.
 */
import {
  type AttentionProblem,
  type AttentionResult,
  kvHeadFor,
  queryPosition,
  shapeSymbols,
  visibleKeyRange,
} from '@attnkit/spec';
import type { GlInput, GlRuntime, GlTexture } from './gl.js';
import { DUMMY, maskFloats, padRows, queryRowIndex } from './inputs.js';
import {
  accumulateKernel,
  finalizeKernel,
  initAccKernel,
  initMaxKernel,
  packKernel,
  probsKernel,
  ROW_INFO,
  rowMaxKernel,
  scoresKernel,
  weightsKernel,
} from './kernels/forward.js';
import {
  accumulatePackedKernel,
  probsPackedKernel,
  rowMaxPackedKernel,
  scoresPackedKernel,
} from './kernels/forward-packed.js';

/**
 * Compiles the forward kernels; `vectorized` (WebGL2) takes the texelFetch forms. With `vectorized`
 * the tile passes (`tileScores`, `rowMax`, `probs`, `accumulate`) are the packed ones of
 * kernels/forward-packed.ts, four keys or four value columns a texel; `scores` (one score a texel)
 * then serves the weights pass only.
 */
export function compileForwardKernels(runtime: GlRuntime, vectorized: boolean) {
  const scores = runtime.kernel(scoresKernel(vectorized));
  const rowMax = vectorized ? rowMaxPackedKernel : rowMaxKernel();
  const accumulate = vectorized ? accumulatePackedKernel : accumulateKernel();
  return {
    scores,
    // The scores of a tile pass: the packed kernel (WebGL2) or `scores` itself.
    tileScores: vectorized ? runtime.kernel(scoresPackedKernel) : scores,
    // Two instances each of rowMax and accumulate, alternated by tile. A gpu.js kernel that reads
    // its own previous output swaps in a texture it remembers from an earlier run (of any earlier
    // shape); the running max and accumulator therefore alternate between two compiled instances so
    // no kernel ever reads its own output.
    rowMax: [runtime.kernel(rowMax), runtime.kernel(rowMax)] as const,
    probs: runtime.kernel(vectorized ? probsPackedKernel : probsKernel()),
    accumulate: [runtime.kernel(accumulate), runtime.kernel(accumulate)] as const,
    initMax: runtime.kernel(initMaxKernel),
    initAcc: runtime.kernel(initAccKernel(vectorized)),
    finalize: runtime.kernel(finalizeKernel(vectorized)),
    weights: runtime.kernel(weightsKernel(vectorized)),
    // WebGL2: packs an input four floats a texel, once per call.
    pack: runtime.kernel(packKernel),
  };
}

/** The compiled forward kernels, each taking its arguments by the names its spec declares. */
export type ForwardKernels = ReturnType<typeof compileForwardKernels>;

/** How a forward call is cut up: a function of the shape and the limits only. */
export interface ForwardPlan {
  /** Keys per pass. */
  tile: number;
  /** Query rows per pass. */
  chunkRows: number;
  /**
   * Whether chunks take the rows by query position (every batch row and head at one position, then
   * the next position) rather than in memory order: with `causal` or a sliding window a chunk's rows
   * then see about the same keys, so the key tiles none of them sees are skipped.
   */
  byPosition: boolean;
  /** Host bytes held during the call: the float key mask and one chunk's row table. */
  hostBytes: number;
}

/**
 * Tiles of at most `tileKeys` keys (`vectorized`: rounded up to a multiple of 4, the packed passes'
 * texel) and chunks of query rows whose `rows x max(tile, Dv + 1)` block stays within
 * `blockElements`, both within MAX_TEXTURE_SIZE.
 */
export function planForward(
  problem: AttentionProblem,
  maxTextureSize: number,
  tileKeys: number,
  blockElements: number,
  vectorized = false,
): ForwardPlan {
  const { batch, queryHeads, queryLength, keyLength, valueDim } = problem.shape;
  const rows = batch * queryHeads * queryLength;
  const keys = Math.max(1, Math.min(tileKeys, keyLength, maxTextureSize));
  // packed tiles hold four keys a texel: a whole number of texels, so no texel straddles two tiles
  const tile = vectorized ? Math.ceil(keys / 4) * 4 : keys;
  const fits = Math.max(
    1,
    Math.min(rows, maxTextureSize, Math.floor(blockElements / Math.max(tile, valueDim + 1))),
  );
  // Causal (or windowed) rows see a band of the keys: cut them into chunks of consecutive
  // positions, so the chunk at the top skips the tiles only later positions see. More chunks skip
  // more work but run more passes (each a draw, and a readback per chunk).
  const byPosition = (problem.causal || problem.slidingWindow !== null) && queryLength > tile;
  // at most CAUSAL_CHUNKS chunks, each at least a tile of positions (a smaller chunk saves no tile)
  const chunks = Math.min(CAUSAL_CHUNKS, Math.ceil(queryLength / tile));
  const chunkRows = byPosition ? Math.min(fits, batch * queryHeads * Math.ceil(queryLength / chunks)) : fits;
  // the packed passes pad a one-row chunk to two rows (see run-forward's `height`)
  const tableRows = vectorized ? Math.max(2, chunkRows) : chunkRows;
  const hostBytes = (problem.keyMask?.length ?? 0) * 4 + tableRows * ROW_INFO.width * 4;
  return { tile, chunkRows, byPosition, hostBytes };
}

/**
 * Most chunks a causal or windowed forward is cut into along the query positions (see planForward):
 * with 4, a causal prefill computes 10/16 of the score tiles. Measured in Chromium on SwiftShader
 * (tileKeys 512, D 64, causal, variants interleaved in one page): N 2048 H 1 4 chunks 431-554 ms
 * against 494-619 for 1 (2 chunks the same as 4); N 1024 H 1 (2 chunks of a tile each) 120-135
 * against 130-141 for 1 and 136-148 for 4; 8 chunks were slower everywhere.
 */
const CAUSAL_CHUNKS = 4;

/** Row `slot` of the order chunks take the query rows in (see {@link ForwardPlan.byPosition}). */
function rowAt(slot: number, byPosition: boolean, heads: number, Lq: number): number {
  if (!byPosition) return slot;
  // slot = i * heads + (b * Hq + h): every batch row and head at position i, then i + 1
  const i = Math.floor(slot / heads);
  return (slot % heads) * Lq + i;
}

/**
 * The forward of `problem` by `plan`. `vectorized` (WebGL2) reads q, k and v four floats a texel
 * from textures packed once per call; otherwise every pass re-uploads them.
 */
export function runForward(
  runtime: GlRuntime,
  kernels: ForwardKernels,
  problem: AttentionProblem,
  plan: ForwardPlan,
  vectorized: boolean,
): AttentionResult {
  const { shape } = problem;
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(shape);
  const rows = B * Hq * Lq;
  const max = runtime.maxTextureSize;
  const { tile, chunkRows, byPosition } = plan;
  const rowOf = (slot: number) => rowAt(slot, byPosition, B * Hq, Lq);
  const negInf = Number.NEGATIVE_INFINITY;

  const output = new Float32Array(rows * Dv);
  const lse = problem.returnLse ? new Float32Array(rows) : undefined;
  const weights = problem.returnWeights ? new Float32Array(rows * Lk) : undefined;

  const released: GlTexture[] = [];
  const release = (t: GlTexture | null) => {
    if (t !== null) released.push(t);
  };
  const flush = () => {
    for (const t of released.splice(0)) runtime.release(t);
  };
  // q, k and v on the device for the whole call; released in the finally below.
  const held: GlTexture[] = [];
  // Everything from the first upload on is inside the try: an upload that fails (out of memory) must
  // not leave the inputs packed before it on the device.
  try {
    // WebGL2 reads q and k a texel (4 floats) at a time: rows padded to a multiple of 4 with zeros.
    const webgl2 = vectorized;
    const width = webgl2 ? Math.ceil(D / 4) * 4 : D;
    const toDevice = (data: Float32Array, columns: number, rowCount: number): GlInput | GlTexture => {
      const uploaded = runtime.input(data, columns, rowCount);
      if (!webgl2) return uploaded;
      const texels = Math.ceil(data.length / 4);
      const texWidth = Math.min(texels, max);
      const packed = kernels.pack.run([texWidth, Math.ceil(texels / texWidth)], {
        data: uploaded,
        width: texWidth,
        texels,
      });
      held.push(packed);
      return packed;
    };
    // q, k and v for the packed passes: the same flat order, but the texture width a multiple of a
    // row's texels (no row wraps a line) and at least two lines (gpu.js gives a one-line output a
    // closest-square texture instead); `spare` zero rows follow the last.
    const toDeviceRows = (data: Float32Array, columns: number, rowCount: number, spare: number) => {
      if (!webgl2) return toDevice(data, columns, rowCount);
      const uploaded = runtime.input(data, columns, rowCount);
      const rowTexels = columns / 4;
      const perLine = Math.max(1, Math.min(Math.floor(max / rowTexels), Math.ceil((rowCount + spare) / 2)));
      const texWidth = perLine * rowTexels;
      const lines = Math.max(2, Math.ceil((rowCount + spare) / perLine));
      const packed = kernels.pack.run([texWidth, lines], {
        data: uploaded,
        width: texWidth,
        texels: Math.ceil(data.length / 4),
      });
      held.push(packed);
      return packed;
    };
    const q = toDeviceRows(padRows(problem.q, D, width), width, B * Hq * Lq, 0);
    const k = toDeviceRows(padRows(problem.k, D, width), width, B * Hkv * Lk, 0);
    const dotLength = webgl2 ? width / 4 : D;
    // Vectorized: value rows padded to 4 * groups columns, a 1 in column Dv (the denominator
    // accumulates as one more value column), zeros after it.
    const groups = Math.ceil((Dv + 1) / 4);
    // three spare rows: the packed accumulate reads whole groups of four keys, masking the extra ones
    const v = webgl2
      ? toDeviceRows(padRows(problem.v, Dv, groups * 4, true), groups * 4, B * Hkv * Lk, 3)
      : toDevice(problem.v, Dv, B * Hkv * Lk);
    const accWidth = webgl2 ? groups : Dv + 1;
    // Vectorized kernels read bias and mask from packed textures (the dummy too: a kernel's argument
    // types must not change between calls, or gpu.js rebuilds it).
    let bias = toDevice(DUMMY, 1, 1);
    let biasKeyStride = 0;
    if (problem.bias !== null) {
      const [, , , lkDim] = problem.bias.shape;
      bias = toDevice(problem.bias.data, lkDim, problem.bias.data.length / lkDim);
      biasKeyStride = lkDim === 1 ? 0 : 1;
    }
    const keyMask =
      problem.keyMask === null ? toDevice(DUMMY, 1, 1) : toDevice(maskFloats(problem.keyMask), Lk, B);

    for (let r0 = 0; r0 < rows; r0 += chunkRows) {
      const rc = Math.min(chunkRows, rows - r0);
      // Packed passes address texel (x, row) directly, which needs gpu.js to size their textures
      // exactly [width, height]: it does for height >= 2, so a one-row chunk gets a padding row
      // (zeros in the table: it sees no key).
      const height = webgl2 ? Math.max(2, rc) : rc;
      const info = new Float32Array(height * ROW_INFO.width);
      let firstKey = Lk;
      let lastKey = 0;
      for (let rr = 0; rr < rc; rr++) {
        const row = rowOf(r0 + rr);
        const { b, h, i } = queryRowIndex(row, Hq, Lq);
        const g = kvHeadFor(h, Hq, Hkv);
        const position = queryPosition(i, Lq, Lk);
        const base = rr * ROW_INFO.width;
        info[base + ROW_INFO.qRow] = row;
        info[base + ROW_INFO.kvBase] = (b * Hkv + g) * Lk;
        info[base + ROW_INFO.position] = position;
        info[base + ROW_INFO.batch] = b;
        if (problem.bias !== null) {
          const [sb, sh, si] = problem.bias.strides;
          const lkDim = problem.bias.shape[3];
          info[base + ROW_INFO.biasRow] = (b * sb + h * sh + i * si) / lkDim;
        }
        info[base + ROW_INFO.slope] = problem.alibiSlopes === null ? 0 : problem.alibiSlopes[h];
        info[base + ROW_INFO.sink] = problem.sinks === null ? negInf : problem.sinks[h];
        const range = visibleKeyRange(position, Lk, problem.causal, problem.slidingWindow);
        if (range.end > range.start) {
          firstKey = Math.min(firstKey, range.start);
          lastKey = Math.max(lastKey, range.end);
          info[base + ROW_INFO.start] = range.start;
          info[base + ROW_INFO.end] = range.end;
        }
      }
      const rowInfo = runtime.input(info, ROW_INFO.width, height);
      let m = kernels.initMax.run([1, height], { rowInfo });
      let acc = kernels.initAcc.run([accWidth, height], { rowInfo, Dv, negInf });
      // Tiles wholly outside every row's causal/window range are skipped: they hold only -inf logits.
      const tileStarts: number[] = [];
      for (let j0 = Math.floor(firstKey / tile) * tile; j0 < lastKey; j0 += tile) tileStarts.push(j0);
      const logitArgs = (j0: number) => ({
        bias,
        keyMask,
        rowInfo,
        j0,
        Lk,
        biasKeyStride,
        hasBias: problem.bias !== null ? 1 : 0,
        hasMask: problem.keyMask !== null ? 1 : 0,
        causal: problem.causal ? 1 : 0,
        win: problem.slidingWindow ?? 0,
        negInf,
      });
      const scoreArgs = (j0: number) => ({
        q,
        k,
        ...logitArgs(j0),
        D: dotLength,
        scale: problem.scale,
        softcap: problem.softcap ?? 0,
      });
      // packed passes: four keys a texel
      const tileWidth = webgl2 ? tile / 4 : tile;
      for (const [n, j0] of tileStarts.entries()) {
        const s = kernels.tileScores.run([tileWidth, height], scoreArgs(j0));
        const mNew = kernels.rowMax[n % 2].run([1, height], { scores: s, mPrev: m, tile, ...logitArgs(j0) });
        const p = kernels.probs.run([tileWidth, height], { scores: s, m: mNew, ...logitArgs(j0) });
        const accNew = kernels.accumulate[n % 2].run([accWidth, height], {
          probs: p,
          v,
          accPrev: acc,
          mPrev: m,
          mNew,
          rowInfo,
          j0,
          tile,
          Dv: webgl2 ? groups : Dv,
          negInf,
        });
        release(s);
        release(p);
        release(m);
        release(acc);
        flush();
        m = mNew;
        acc = accNew;
      }
      const done = kernels.finalize.run([Dv + 1, rc], { acc, m, Dv, groups, negInf });
      const values = runtime.read(done);
      release(done);
      for (let rr = 0; rr < rc; rr++) {
        const from = rr * (Dv + 1);
        const row = rowOf(r0 + rr);
        output.set(values.subarray(from, from + Dv), row * Dv);
        if (lse) lse[row] = values[from + Dv];
      }
      if (weights) {
        for (const j0 of tileStarts) {
          const s = kernels.scores.run([tile, rc], scoreArgs(j0));
          const w = kernels.weights.run([tile, rc], { scores: s, m, acc, Dv, groups, ...logitArgs(j0) });
          const block = runtime.read(w);
          release(s);
          release(w);
          flush();
          const width = Math.min(tile, Lk - j0);
          for (let rr = 0; rr < rc; rr++) {
            weights.set(block.subarray(rr * tile, rr * tile + width), rowOf(r0 + rr) * Lk + j0);
          }
        }
      }
      release(m);
      release(acc);
      flush();
    }
  } finally {
    flush();
    for (const t of held) runtime.release(t);
  }
  return { output, ...(lse && { lse }), ...(weights && { weights }) };
}
