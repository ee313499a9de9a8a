/**
 * The backward pass on the GL runtime: plans the kernel passes of backward-kernels.ts, builds the
 * per-row tables (exact integer facts the shaders must not compute in float), runs every output in
 * blocks that fit MAX_TEXTURE_SIZE and `blockElements`, and reads the gradients back.
 */
import {
  type AttentionBackwardProblem,
  type AttentionGradients,
  kvHeadFor,
  queryPosition,
  shapeSymbols,
  visibleKeyRange,
} from '@attnkit/spec';
import type { GlInput, GlKernel, GlRuntime, GlTexture, KernelArguments } from './gl.js';
import { DUMMY, maskFloats, padRows, queryRowIndex } from './inputs.js';
import {
  DKV_INFO,
  DQ_INFO,
  delta4Kernel,
  deltaKernel,
  gradBiasKernel,
  gradKV4Kernel,
  gradKVKernel,
  gradQ4Kernel,
  gradQKernel,
  HEAD_INFO,
  RANGE_INFO,
  rowMax4Kernel,
  rowMaxKernel,
  rowSum4Kernel,
  rowSumKernel,
  sinkTermsKernel,
} from './kernels/backward.js';

/**
 * Compiles the backward kernels (one instance each: none reads its own output). The `4` forms are
 * WebGL2's: texelFetch, four columns a thread, and rowMax4/rowSum4/delta4 sum the logits in the
 * order gradQ4/gradKV4 do.
 */
export function compileBackwardKernels(runtime: GlRuntime) {
  return {
    rowMax: runtime.kernel(rowMaxKernel),
    rowSum: runtime.kernel(rowSumKernel),
    rowMax4: runtime.kernel(rowMax4Kernel),
    rowSum4: runtime.kernel(rowSum4Kernel),
    delta: runtime.kernel(deltaKernel),
    delta4: runtime.kernel(delta4Kernel),
    gradQ: runtime.kernel(gradQKernel),
    gradKV: runtime.kernel(gradKVKernel),
    gradQ4: runtime.kernel(gradQ4Kernel),
    gradKV4: runtime.kernel(gradKV4Kernel),
    gradBias: runtime.kernel(gradBiasKernel),
    sinkTerms: runtime.kernel(sinkTermsKernel),
  };
}

/** The compiled backward kernels, each taking its arguments by the names its spec declares. */
export type BackwardKernels = ReturnType<typeof compileBackwardKernels>;

/**
 * Most query rows one reduction element (a bias element, a sink) walks before its box is split into
 * parts that the host adds: keeps one shader invocation's loop bounded whatever the broadcast.
 */
const PART_ROWS = 256;

/** A `(b, h, i)` box of query rows: `[lo, hi)` per dimension. */
interface Box {
  b: readonly [number, number];
  h: readonly [number, number];
  i: readonly [number, number];
}

/** Splits a box along `i` so each part walks at most about PART_ROWS rows. */
function splitBox(box: Box): Box[] {
  const across = (box.b[1] - box.b[0]) * (box.h[1] - box.h[0]);
  const step = Math.max(1, Math.floor(PART_ROWS / Math.max(1, across)));
  const parts: Box[] = [];
  for (let i0 = box.i[0]; i0 < box.i[1]; i0 += step) {
    parts.push({ b: box.b, h: box.h, i: [i0, Math.min(box.i[1], i0 + step)] });
  }
  if (parts.length === 0) parts.push(box);
  return parts;
}

function rangeTable(boxes: readonly Box[], from: number, count: number): Float32Array {
  const table = new Float32Array(count * RANGE_INFO.width);
  for (let n = 0; n < count; n++) {
    const { b, h, i } = boxes[from + n];
    const base = n * RANGE_INFO.width;
    table[base + RANGE_INFO.bLo] = b[0];
    table[base + RANGE_INFO.bHi] = b[1];
    table[base + RANGE_INFO.hLo] = h[0];
    table[base + RANGE_INFO.hHi] = h[1];
    table[base + RANGE_INFO.iLo] = i[0];
    table[base + RANGE_INFO.iHi] = i[1];
  }
  return table;
}

/**
 * Runs `kernel` over a `[width, rows]` grid in blocks of at most MAX_TEXTURE_SIZE per side and
 * `blockElements` elements, and hands each block's values (`[cw, rc]`, row-major) to `take`.
 * `table(r0, rc)` makes the block rows' table; `args(table, c0)` the kernel's arguments.
 */
function runGrid<P extends string>(
  runtime: GlRuntime,
  kernel: GlKernel<P>,
  width: number,
  rows: number,
  blockElements: number,
  table: (r0: number, rc: number) => Float32Array,
  tableWidth: number,
  args: (table: GlInput, c0: number) => KernelArguments<P>,
  take: (values: Float32Array, r0: number, rc: number, c0: number, cw: number) => void,
  rgba = false,
): void {
  const max = runtime.maxTextureSize;
  const cols = Math.min(width, max);
  const rowsPer = Math.max(1, Math.min(rows, max, Math.floor(blockElements / cols)));
  for (let r0 = 0; r0 < rows; r0 += rowsPer) {
    const rc = Math.min(rowsPer, rows - r0);
    const info = runtime.input(table(r0, rc), tableWidth, rc);
    for (let c0 = 0; c0 < width; c0 += cols) {
      const cw = Math.min(cols, width - c0);
      const out = kernel.run([cw, rc], args(info, c0));
      try {
        take(rgba ? runtime.readTexels(out) : runtime.read(out), r0, rc, c0, cw);
      } finally {
        runtime.release(out);
      }
    }
  }
}

/**
 * The gradients of `problem` (gradBias exactly when it has a bias, gradSinks exactly when it has
 * sinks). Deterministic: every element is one fixed-order loop, and parts are added on the host in
 * order. `vectorized` (WebGL2) runs gradQ and gradK|gradV four columns a thread with texelFetch.
 */
export function runBackward(
  runtime: GlRuntime,
  kernels: BackwardKernels,
  problem: AttentionBackwardProblem,
  blockElements: number,
  vectorized: boolean,
): AttentionGradients {
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(problem.shape);
  const rowsQ = B * Hq * Lq;
  const rowsK = B * Hkv * Lk;
  const group = Hq / Hkv;
  const negInf = Number.NEGATIVE_INFINITY;
  const { bias, keyMask } = problem;

  const q = runtime.input(problem.q, D, rowsQ);
  const k = runtime.input(problem.k, D, rowsK);
  const v = runtime.input(problem.v, Dv, rowsK);
  const dO = runtime.input(problem.gradOutput, Dv, rowsQ);
  const heads = new Float32Array(Hq * HEAD_INFO.width);
  for (let h = 0; h < Hq; h++) {
    heads[h * HEAD_INFO.width + HEAD_INFO.slope] = problem.alibiSlopes?.[h] ?? 0;
    heads[h * HEAD_INFO.width + HEAD_INFO.sink] = problem.sinks?.[h] ?? negInf;
    heads[h * HEAD_INFO.width + HEAD_INFO.kvHead] = kvHeadFor(h, Hq, Hkv);
  }
  const headInfo = runtime.input(heads, HEAD_INFO.width, Hq);
  const lkDim = bias === null ? 1 : bias.shape[3];
  const biasInput =
    bias === null ? runtime.input(DUMMY, 1, 1) : runtime.input(bias.data, lkDim, bias.data.length / lkDim);
  const maskInput = keyMask === null ? runtime.input(DUMMY, 1, 1) : runtime.input(maskFloats(keyMask), Lk, B);
  const [sb, sh, si] = bias?.strides ?? [0, 0, 0];
  const pairUniforms = {
    D,
    Dv,
    Hq,
    Lq,
    Lk,
    scale: problem.scale,
    softcap: problem.softcap ?? 0,
    hasBias: bias === null ? 0 : 1,
    biasKeyStride: lkDim === 1 ? 0 : 1,
    bsb: sb / lkDim,
    bsh: sh / lkDim,
    bsi: si / lkDim,
    negInf,
  };

  const gradQ = new Float32Array(rowsQ * D);
  const gradK = new Float32Array(rowsK * D);
  const gradV = new Float32Array(rowsK * Dv);
  let gradBias: Float32Array | undefined;
  let gradSinks: Float32Array | undefined;

  const rowTable = (r0: number, rc: number) => {
    const table = new Float32Array(rc * DQ_INFO.width);
    for (let n = 0; n < rc; n++) {
      const row = r0 + n;
      const { b, h, i } = queryRowIndex(row, Hq, Lq);
      const position = queryPosition(i, Lq, Lk);
      const range = visibleKeyRange(position, Lk, problem.causal, problem.slidingWindow);
      const base = n * DQ_INFO.width;
      table[base + DQ_INFO.row] = row;
      table[base + DQ_INFO.kvBase] = (b * Hkv + kvHeadFor(h, Hq, Hkv)) * Lk;
      table[base + DQ_INFO.position] = position;
      table[base + DQ_INFO.batch] = b;
      table[base + DQ_INFO.head] = h;
      table[base + DQ_INFO.query] = i;
      table[base + DQ_INFO.start] = range.start;
      table[base + DQ_INFO.end] = range.end;
    }
    return table;
  };
  const offset = Lk - Lq;
  const W = problem.slidingWindow;
  const kvTable = (r0: number, rc: number) => {
    const table = new Float32Array(rc * DKV_INFO.width);
    for (let n = 0; n < rc; n++) {
      const row = r0 + n;
      const j = row % Lk;
      const bg = (row - j) / Lk;
      const g = bg % Hkv;
      const b = (bg - g) / Hkv;
      // Query i (position i + offset) sees key j iff visibleKeyRange(position) holds j.
      let lo = 0;
      let hi = Lq;
      if (problem.causal) lo = Math.max(lo, j - offset);
      if (W !== null) {
        hi = Math.min(hi, j + W - offset);
        if (!problem.causal) lo = Math.max(lo, j - W - offset + 1);
      }
      if (keyMask !== null && keyMask[b * Lk + j] === 0) hi = lo;
      const base = n * DKV_INFO.width;
      table[base + DKV_INFO.kvRow] = row;
      table[base + DKV_INFO.key] = j;
      table[base + DKV_INFO.batch] = b;
      table[base + DKV_INFO.headLo] = g * group;
      table[base + DKV_INFO.headHi] = (g + 1) * group;
      table[base + DKV_INFO.queryLo] = lo;
      table[base + DKV_INFO.queryHi] = Math.max(lo, hi);
    }
    return table;
  };
  const hasMask = keyMask === null ? 0 : 1;
  // Both forms write four columns a thread (an RGBA texel): texel t of a row holds columns
  // 4t..4t+3; gradK | gradV rows are D4 texels of gradK, then Dv4 of gradV.
  const D4 = Math.ceil(D / 4);
  const Dv4 = Math.ceil(Dv / 4);
  // Vectorized: rows padded to whole texels so every row starts on one; the padding is zero.
  const padded = (data: Float32Array, width: number, texels: number, rows: number) =>
    runtime.input(padRows(data, width, texels * 4), texels * 4, rows);
  const dO4 = vectorized ? padded(problem.gradOutput, Dv, Dv4, rowsQ) : dO;

  // Every query row's facts at once (an input, so not bounded by MAX_TEXTURE_SIZE); gradQ's blocks
  // take slices of it.
  const rows = rowTable(0, rowsQ);
  const allRows = runtime.input(rows, DQ_INFO.width, rowsQ);
  const logitArgs = { q, k, bias: biasInput, keyMask: maskInput, heads: headInfo, rowInfo: allRows };
  const q4 = vectorized ? padded(problem.q, D, D4, rowsQ) : q;
  const k4 = vectorized ? padded(problem.k, D, D4, rowsK) : k;
  const logitArgs4 = { ...logitArgs, q: q4, k: k4 };
  const tail4 = {
    D4,
    Dv4,
    Hq,
    Lq,
    Lk,
    lkDim,
    biasKeyStride: lkDim === 1 ? 0 : 1,
    hasBias: bias === null ? 0 : 1,
    scale: problem.scale,
    softcap: problem.softcap ?? 0,
    bsb: sb / lkDim,
    bsh: sh / lkDim,
    bsi: si / lkDim,
    negInf,
  };
  const textures: GlTexture[] = [];
  const keep = (texture: GlTexture) => {
    textures.push(texture);
    return texture;
  };
  try {
    const rowM = keep(
      vectorized
        ? kernels.rowMax4.run([rowsQ, 1], { ...logitArgs4, hasMask, ...tail4 })
        : kernels.rowMax.run([rowsQ, 1], { ...logitArgs, hasMask, ...pairUniforms }),
    );
    const rowL = keep(
      vectorized
        ? kernels.rowSum4.run([rowsQ, 1], { ...logitArgs4, rowM, hasMask, ...tail4 })
        : kernels.rowSum.run([rowsQ, 1], { ...logitArgs, rowM, hasMask, ...pairUniforms }),
    );
    const v4 = vectorized ? padded(problem.v, Dv, Dv4, rowsK) : v;
    const delta = keep(
      vectorized
        ? kernels.delta4.run([rowsQ, 1], { ...logitArgs4, v: v4, dO: dO4, rowM, rowL, hasMask, ...tail4 })
        : kernels.delta.run([rowsQ, 1], { ...logitArgs, v, dO, rowM, rowL, hasMask, ...pairUniforms }),
    );
    const tensors = { q, k, v, dO, rowM, rowL, delta, bias: biasInput };

    const scatter =
      (out: Float32Array, width: number, texelsPerRow: number, from: number) =>
      (values: Float32Array, r0: number, rc: number, c0: number, cw: number) => {
        for (let n = 0; n < rc; n++) {
          for (let x = 0; x < cw; x++) {
            const t = c0 + x - from;
            if (t < 0 || t >= texelsPerRow) continue;
            for (let ch = 0; ch < 4; ch++) {
              const c = t * 4 + ch;
              if (c < width) out[(r0 + n) * width + c] = values[(n * cw + x) * 4 + ch];
            }
          }
        }
      };
    const takeQ = scatter(gradQ, D, D4, 0);
    const takeK = scatter(gradK, D, D4, 0);
    const takeV = scatter(gradV, Dv, Dv4, D4);
    const takeKV = (values: Float32Array, r0: number, rc: number, c0: number, cw: number) => {
      takeK(values, r0, rc, c0, cw);
      takeV(values, r0, rc, c0, cw);
    };
    // gradQ: one thread per (query row, texel), looping over the row's visible keys.
    // gradK | gradV: one thread per (kv row, texel), looping over the group's heads and the
    // queries that can see the key.
    const rowSlice = (r0: number, rc: number) => rows.subarray(r0 * DQ_INFO.width, (r0 + rc) * DQ_INFO.width);
    if (vectorized) {
      const tensors4 = { q: q4, k: k4, v: v4, dO: dO4, bias: biasInput, rowM, rowL, delta, heads: headInfo };
      runGrid(
        runtime,
        kernels.gradQ4,
        D4,
        rowsQ,
        blockElements,
        rowSlice,
        DQ_INFO.width,
        (rowInfo, c0) => ({ ...tensors4, keyMask: maskInput, rowInfo, c0, hasMask, ...tail4 }),
        takeQ,
        true,
      );
      runGrid(
        runtime,
        kernels.gradKV4,
        D4 + Dv4,
        rowsK,
        blockElements,
        kvTable,
        DKV_INFO.width,
        (kvInfo, c0) => ({ ...tensors4, kvInfo, c0, ...tail4 }),
        takeKV,
        true,
      );
    } else {
      runGrid(
        runtime,
        kernels.gradQ,
        D4,
        rowsQ,
        blockElements,
        rowSlice,
        DQ_INFO.width,
        (rowInfo, c0) => ({
          ...tensors,
          keyMask: maskInput,
          heads: headInfo,
          rowInfo,
          c0,
          hasMask,
          ...pairUniforms,
        }),
        takeQ,
        true,
      );
      runGrid(
        runtime,
        kernels.gradKV,
        D4 + Dv4,
        rowsK,
        blockElements,
        kvTable,
        DKV_INFO.width,
        (kvInfo, c0) => ({ ...tensors, heads: headInfo, kvInfo, c0, D4, ...pairUniforms }),
        takeKV,
        true,
      );
    }

    // Sum-of-parts reductions: each box's parts run as rows of one grid; the host adds them in order.
    const reduce = <P extends string>(
      kernel: GlKernel<P>,
      boxes: readonly Box[],
      width: number,
      args: (info: GlInput, c0: number) => KernelArguments<P>,
    ): Float64Array[] => {
      const parts = boxes.map(splitBox);
      const flat = parts.flat();
      const owner = parts.flatMap((list, n) => list.map(() => n));
      const sums = boxes.map(() => new Float64Array(width));
      runGrid(
        runtime,
        kernel,
        width,
        flat.length,
        blockElements,
        (r0, rc) => rangeTable(flat, r0, rc),
        RANGE_INFO.width,
        args,
        (values, r0, rc, c0, cw) => {
          for (let n = 0; n < rc; n++) {
            const sum = sums[owner[r0 + n]];
            for (let x = 0; x < cw; x++) sum[c0 + x] += values[n * cw + x];
          }
        },
      );
      return sums;
    };
    const sinkTermArgs = (rangeInfo: GlInput) => ({
      rowM,
      rowL,
      delta,
      heads: headInfo,
      rangeInfo,
      Hq,
      Lq,
      negInf,
    });

    if (bias !== null) {
      // One box per bias row: its own coordinates, the whole range along broadcast dimensions.
      const [bB, bH, bL] = bias.shape;
      const boxes: Box[] = [];
      for (let b = 0; b < bB; b++) {
        for (let h = 0; h < bH; h++) {
          for (let i = 0; i < bL; i++) {
            boxes.push({
              b: bB === 1 ? [0, B] : [b, b + 1],
              h: bH === 1 ? [0, Hq] : [h, h + 1],
              i: bL === 1 ? [0, Lq] : [i, i + 1],
            });
          }
        }
      }
      const sums =
        lkDim === 1
          ? reduce(kernels.sinkTerms, boxes, 1, sinkTermArgs)
          : reduce(kernels.gradBias, boxes, Lk, (rangeInfo, j0) => ({
              ...tensors,
              keyMask: maskInput,
              heads: headInfo,
              rangeInfo,
              j0,
              hasMask,
              causal: problem.causal ? 1 : 0,
              win: W ?? 0,
              Hkv,
              ...pairUniforms,
            }));
      const out = new Float32Array(bias.data.length);
      for (let n = 0; n < sums.length; n++) {
        for (let x = 0; x < lkDim; x++) out[n * lkDim + x] = sums[n][x];
      }
      gradBias = out;
    }

    if (problem.sinks !== null) {
      const boxes: Box[] = [];
      for (let h = 0; h < Hq; h++) boxes.push({ b: [0, B], h: [h, h + 1], i: [0, Lq] });
      const sums = reduce(kernels.sinkTerms, boxes, 1, sinkTermArgs);
      gradSinks = Float32Array.from(sums, (sum) => (sum[0] === 0 ? 0 : -sum[0]));
    }
  } finally {
    for (const texture of textures) runtime.release(texture);
  }
  return { gradQ, gradK, gradV, ...(gradBias && { gradBias }), ...(gradSinks && { gradSinks }) };
}
