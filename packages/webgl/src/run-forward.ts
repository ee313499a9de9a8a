/**
 * The forward pass and the matmul on the GL runtime: uploads the problem's tensors (padded to whole
 * texels on WebGL2), builds each chunk's per-row table (exact integer facts the shaders must not
 * compute in float), runs the online-softmax tile loop of forward.ts's kernels over the key tiles a
 * chunk can see, and reads the output, lse and weights back.
 */
import {
  type AttentionProblem,
  type AttentionResult,
  kvHeadFor,
  type MatmulProblem,
  queryPosition,
  visibleKeyRange,
} from '@attnkit/spec';
import type { GlInput, GlKernel, GlRuntime, GlTexture, KernelArgument } from './gl.js';
import { ROW_INFO } from './kernels/forward.js';

/** The compiled forward kernels. */
export interface ForwardKernels {
  scores: GlKernel;
  /** Two instances each, alternated by tile: a gpu.js kernel must never read its own output. */
  rowMax: readonly [GlKernel, GlKernel];
  probs: GlKernel;
  accumulate: readonly [GlKernel, GlKernel];
  initMax: GlKernel;
  initAcc: GlKernel;
  finalize: GlKernel;
  weights: GlKernel;
  matmul: GlKernel;
  pack: GlKernel;
}

/** How the forward cuts a call: key tile, the elements one kernel run may write, the kernel class. */
export interface ForwardConfig {
  tileKeys: number;
  blockElements: number;
  /** WebGL2 texelFetch kernels (q, k, v, bias and mask read from packed RGBA textures). */
  vectorized: boolean;
}

const DUMMY = new Float32Array(1);
const NEG_INF = Number.NEGATIVE_INFINITY;

/**
 * Copies `[rows, from]` into `[rows, to]` with zero padding (or returns it when no padding is needed);
 * `onePastEnd` puts a 1 in column `from` of every row.
 */
function padRows(data: Float32Array, from: number, to: number, onePastEnd = false): Float32Array {
  if (from === to) return data;
  const rows = data.length / from;
  const out = new Float32Array(rows * to);
  for (let r = 0; r < rows; r++) {
    out.set(data.subarray(r * from, (r + 1) * from), r * to);
    if (onePastEnd) out[r * to + from] = 1;
  }
  return out;
}

/** The call's tensors on the device, and the widths the kernels read them with. */
interface Uploaded {
  q: GlInput | GlTexture;
  k: GlInput | GlTexture;
  v: GlInput | GlTexture;
  bias: GlInput | GlTexture;
  keyMask: GlInput | GlTexture;
  /** 1 when the bias varies along keys, 0 when broadcast along them. */
  biasKeyStride: number;
  /** The dot product's length: D, or texels of the padded D on WebGL2. */
  dotLength: number;
  /** WebGL2: texels of a value row (Dv values, the denominator's 1, zeros). */
  groups: number;
  /** Columns of the running accumulator: Dv + 1, or `groups` texels. */
  accWidth: number;
  /** Packed textures made for this call (WebGL2), released by the caller. */
  held: GlTexture[];
}

/**
 * q, k, v, the bias and the key mask on the device. WebGL2 reads q and k a texel (4 floats) at a
 * time: rows padded to a multiple of 4 with zeros; value rows padded to `4 * groups` columns with a
 * 1 in column Dv (the denominator accumulates as one more value column). Vectorized kernels read
 * bias and mask from packed textures too, the dummy included: a kernel's argument types must not
 * change between calls, or gpu.js rebuilds it.
 */
function upload(runtime: GlRuntime, pack: GlKernel, problem: AttentionProblem, webgl2: boolean): Uploaded {
  const {
    batch: B,
    queryHeads: Hq,
    kvHeads: Hkv,
    queryLength: Lq,
    keyLength: Lk,
    headDim: D,
  } = problem.shape;
  const Dv = problem.shape.valueDim;
  const max = runtime.maxTextureSize;
  const held: GlTexture[] = [];
  const toDevice = (data: Float32Array, columns: number, rowCount: number): GlInput | GlTexture => {
    const uploaded = runtime.input(data, columns, rowCount);
    if (!webgl2) return uploaded;
    const texels = Math.ceil(data.length / 4);
    const texWidth = Math.min(texels, max);
    const packed = pack.run([texWidth, Math.ceil(texels / texWidth)], [uploaded, texWidth, texels]);
    held.push(packed);
    return packed;
  };
  const width = webgl2 ? Math.ceil(D / 4) * 4 : D;
  const q = toDevice(padRows(problem.q, D, width), width, B * Hq * Lq);
  const k = toDevice(padRows(problem.k, D, width), width, B * Hkv * Lk);
  const groups = Math.ceil((Dv + 1) / 4);
  const v = webgl2
    ? toDevice(padRows(problem.v, Dv, groups * 4, true), groups * 4, B * Hkv * Lk)
    : toDevice(problem.v, Dv, B * Hkv * Lk);
  let bias = toDevice(DUMMY, 1, 1);
  let biasKeyStride = 0;
  if (problem.bias !== null) {
    const [, , , lkDim] = problem.bias.shape;
    bias = toDevice(problem.bias.data, lkDim, problem.bias.data.length / lkDim);
    biasKeyStride = lkDim === 1 ? 0 : 1;
  }
  const keyMask =
    problem.keyMask === null
      ? toDevice(DUMMY, 1, 1)
      : toDevice(
          Float32Array.from(problem.keyMask, (x) => (x !== 0 ? 1 : 0)),
          Lk,
          B,
        );
  return {
    q,
    k,
    v,
    bias,
    keyMask,
    biasKeyStride,
    dotLength: webgl2 ? width / 4 : D,
    groups,
    accWidth: webgl2 ? groups : Dv + 1,
    held,
  };
}

/**
 * The per-row table of rows `r0 .. r0 + rc` (see ROW_INFO) and the key range any of them sees:
 * tiles wholly outside it hold only -inf logits and are skipped.
 */
function rowTable(
  problem: AttentionProblem,
  r0: number,
  rc: number,
): { info: Float32Array; firstKey: number; lastKey: number } {
  const { queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, keyLength: Lk } = problem.shape;
  const info = new Float32Array(rc * ROW_INFO.width);
  let firstKey = Lk;
  let lastKey = 0;
  for (let rr = 0; rr < rc; rr++) {
    const row = r0 + rr;
    const i = row % Lq;
    const bh = (row - i) / Lq;
    const h = bh % Hq;
    const b = (bh - h) / Hq;
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
    info[base + ROW_INFO.sink] = problem.sinks === null ? NEG_INF : problem.sinks[h];
    const range = visibleKeyRange(position, Lk, problem.causal, problem.slidingWindow);
    if (range.end > range.start) {
      firstKey = Math.min(firstKey, range.start);
      lastKey = Math.max(lastKey, range.end);
    }
  }
  return { info, firstKey, lastKey };
}

/**
 * The forward: rows in chunks that fit MAX_TEXTURE_SIZE and `blockElements`; per chunk, a running
 * max and accumulator over its visible key tiles (alternating two kernel instances), then the
 * finalised output and lse, and the weights tile by tile when asked for. `setHostBytes` reports the
 * host copies held during the call (the float key mask, one chunk's row table).
 */
export function runForward(
  runtime: GlRuntime,
  kernels: ForwardKernels,
  problem: AttentionProblem,
  config: ForwardConfig,
  setHostBytes: (bytes: number) => void,
): AttentionResult {
  const { batch: B, queryHeads: Hq, queryLength: Lq, keyLength: Lk, valueDim: Dv } = problem.shape;
  const rows = B * Hq * Lq;
  const max = runtime.maxTextureSize;
  const tile = Math.max(1, Math.min(config.tileKeys, Lk, max));
  const chunkRows = Math.max(
    1,
    Math.min(rows, max, Math.floor(config.blockElements / Math.max(tile, Dv + 1))),
  );
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
  const webgl2 = config.vectorized;
  // q, k and v on the device for the whole call; released in the finally below
  const { q, k, v, bias, keyMask, biasKeyStride, dotLength, groups, accWidth, held } = upload(
    runtime,
    kernels.pack,
    problem,
    webgl2,
  );
  setHostBytes((problem.keyMask?.length ?? 0) * 4 + chunkRows * ROW_INFO.width * 4);

  try {
    for (let r0 = 0; r0 < rows; r0 += chunkRows) {
      const rc = Math.min(chunkRows, rows - r0);
      const { info, firstKey, lastKey } = rowTable(problem, r0, rc);
      const rowInfo = runtime.input(info, ROW_INFO.width, rc);
      let m = kernels.initMax.run([1, rc], [rowInfo]);
      let acc = kernels.initAcc.run([accWidth, rc], [rowInfo, Dv, NEG_INF]);
      const tileStarts: number[] = [];
      for (let j0 = Math.floor(firstKey / tile) * tile; j0 < lastKey; j0 += tile) tileStarts.push(j0);
      const logitArgs = (j0: number): KernelArgument[] => [
        bias,
        keyMask,
        rowInfo,
        j0,
        Lk,
        biasKeyStride,
        problem.bias !== null ? 1 : 0,
        problem.keyMask !== null ? 1 : 0,
        problem.causal ? 1 : 0,
        problem.slidingWindow ?? 0,
        NEG_INF,
      ];
      const scoreArgs = (j0: number): KernelArgument[] => [
        q,
        k,
        ...logitArgs(j0),
        dotLength,
        problem.scale,
        problem.softcap ?? 0,
      ];
      for (const [n, j0] of tileStarts.entries()) {
        const s = kernels.scores.run([tile, rc], scoreArgs(j0));
        const mNew = kernels.rowMax[n % 2].run([1, rc], [s, m, tile, ...logitArgs(j0)]);
        const p = kernels.probs.run([tile, rc], [s, mNew, ...logitArgs(j0)]);
        const accNew = kernels.accumulate[n % 2].run(
          [accWidth, rc],
          [p, v, acc, m, mNew, rowInfo, j0, tile, webgl2 ? groups : Dv, NEG_INF],
        );
        release(s);
        release(p);
        release(m);
        release(acc);
        flush();
        m = mNew;
        acc = accNew;
      }
      const done = kernels.finalize.run([Dv + 1, rc], [acc, m, Dv, groups, NEG_INF]);
      const values = runtime.read(done);
      release(done);
      for (let rr = 0; rr < rc; rr++) {
        const from = rr * (Dv + 1);
        output.set(values.subarray(from, from + Dv), (r0 + rr) * Dv);
        if (lse) lse[r0 + rr] = values[from + Dv];
      }
      if (weights) {
        for (const j0 of tileStarts) {
          const s = kernels.scores.run([tile, rc], scoreArgs(j0));
          const w = kernels.weights.run([tile, rc], [s, m, acc, Dv, groups, ...logitArgs(j0)]);
          const block = runtime.read(w);
          release(s);
          release(w);
          flush();
          const width = Math.min(tile, Lk - j0);
          for (let rr = 0; rr < rc; rr++) {
            weights.set(block.subarray(rr * tile, rr * tile + width), (r0 + rr) * Lk + j0);
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
    setHostBytes(0);
  }
  return { output, ...(lse && { lse }), ...(weights && { weights }) };
}

/** `a @ b (+ bias)` in blocks of at most MAX_TEXTURE_SIZE columns and `blockElements` outputs. */
export function runMatmul(
  runtime: GlRuntime,
  matmul: GlKernel,
  problem: MatmulProblem,
  blockElements: number,
): Float32Array {
  const { m, k: K, n } = problem.shape;
  const max = runtime.maxTextureSize;
  const cols = Math.min(n, max);
  const rowsPer = Math.max(1, Math.min(m, max, Math.floor(blockElements / cols)));
  const a = runtime.input(problem.a, K, m);
  const b = runtime.input(problem.b, n, K);
  const bias = problem.bias === null ? runtime.input(DUMMY, 1, 1) : runtime.input(problem.bias, n, 1);
  const out = new Float32Array(m * n);
  for (let m0 = 0; m0 < m; m0 += rowsPer) {
    const rc = Math.min(rowsPer, m - m0);
    for (let n0 = 0; n0 < n; n0 += cols) {
      const cc = Math.min(cols, n - n0);
      const t = matmul.run([cc, rc], [a, b, bias, m0, n0, K, problem.bias === null ? 0 : 1]);
      const block = runtime.read(t);
      runtime.release(t);
      for (let r = 0; r < rc; r++) out.set(block.subarray(r * cc, (r + 1) * cc), (m0 + r) * n + n0);
    }
  }
  return out;
}
