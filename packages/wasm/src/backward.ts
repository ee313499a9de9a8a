/**
 * The backward pass on the kernel: lays a validated backward problem out in linear memory, fills
 * the `Params` block, runs `bwd_prep` (D per row, the sinks' gradient), the key-tile pass on every
 * thread, `bwd_finish` (dQ from the chunks' partials), and reads the gradients back.
 */
import {
  type AttentionBackwardProblem,
  type AttentionGradients,
  allocating,
  shapeSymbols,
} from '@attnkit/spec';
import { biasParams, KIND, PARAM_BYTES, problemParams, writeParams } from './abi.js';
import { deviceError, type Kernel, runItems, threading } from './kernel.js';
import { Arena, align, copyPadded, copyUnpadded, grow, MAX_MEMORY_BYTES, round4, tooBig } from './memory.js';
import { WASM_TOLERANCE } from './tolerance.js';

/**
 * Key tiles are dealt round-robin into this many chunks, each one work item with its own dQ partial:
 * enough items for the threads even with one head, and a fixed number so that dQ's summation order,
 * hence its bits, does not depend on the thread count.
 */
const CHUNKS = 8;
/** The chunks' dQ partials may take this many bytes together (more: fewer chunks, down to one). */
const PARTIALS_BUDGET = 2 ** 28;
/**
 * A chunk adds each key tile's dQ into its partial with one rounding; past this many tiles per
 * chunk (~sqrt(n) 2^-24 drift, 4e-6 at 4096) the additions are two-sums with a compensation partial.
 */
const PLAIN_TILES = 4096;

/**
 * A row whose D (from the float32 output) could move dQ or dK by more than this gets D recomputed
 * from its probabilities (`bwd_prep` in rust/lib.rs): a sixteenth of the declared atol.
 */
const EXACT_DELTA_ABOVE = WASM_TOLERANCE.atol / 16;

/** How the key tiles are split into work items: a function of the shape (and bias) only. */
interface BackwardSplit {
  chunks: number;
  /** One item covers every batch / every kv head (a bias broadcast along them: its cells are shared). */
  mergeBatch: boolean;
  mergeHeads: boolean;
  compensate: boolean;
  items: number;
}

function backwardSplit(problem: AttentionBackwardProblem, blockK: number): BackwardSplit {
  const { B, Hq, Hkv, Lq, Lk, D } = shapeSymbols(problem.shape);
  const bk = Math.min(blockK, Lk);
  const keyTiles = Math.ceil(Lk / bk);
  const qBytes = B * Hq * Lq * round4(D) * 4;
  const strides = problem.bias?.strides ?? null;
  // a bias broadcast along keys sums every key tile of a row into one cell: one chunk
  const sharedAlongKeys = strides !== null && strides[3] === 0;
  const chunks = sharedAlongKeys
    ? 1
    : Math.max(1, Math.min(CHUNKS, keyTiles, Math.floor(PARTIALS_BUDGET / qBytes)));
  const mergeBatch = strides !== null && strides[0] === 0 && B > 1;
  const mergeHeads = strides !== null && strides[1] === 0 && Hkv > 1;
  const compensate = Math.ceil(keyTiles / chunks) > PLAIN_TILES;
  const items = chunks * (mergeBatch ? 1 : B) * (mergeHeads ? 1 : Hkv);
  return { chunks, mergeBatch, mergeHeads, compensate, items };
}

export async function runAttentionBackward(
  kernel: Kernel,
  problem: AttentionBackwardProblem,
  blockQ: number,
  blockK: number,
  parallelMinWork: number,
): Promise<AttentionGradients> {
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(problem.shape);
  const { exports, memory, pool } = kernel;
  const d4 = round4(D);
  const dv4 = round4(Dv);
  const bq = Math.min(blockQ, Lq);
  const bk = Math.min(blockK, Lk);
  const split = backwardSplit(problem, blockK);
  const work = B * Hq * Lq * Lk * (D + Dv);
  const { parallel, slots } = threading(pool, split.items, work, parallelMinWork);
  const qRows = B * Hq * Lq;
  const kRows = B * Hkv * Lk;
  const qBytes = qRows * d4 * 4;
  const biasLength = problem.bias?.data.length ?? 0;

  const arena = new Arena(kernel.base);
  const params = arena.take(PARAM_BYTES);
  const scratchStride = align(exports.bwd_scratch_bytes(bq, bk, d4, dv4), 64);
  const scratch = arena.take(scratchStride * slots);
  const q = arena.take(qBytes);
  const k = arena.take(kRows * d4 * 4);
  const v = arena.take(kRows * dv4 * 4);
  const out = arena.take(qRows * dv4 * 4);
  const gradOut = arena.take(qRows * dv4 * 4);
  const lse = arena.take(qRows * 4);
  const delta = arena.take(qRows * 8);
  const exactRows = arena.take(qRows);
  const gqStride = align(qBytes, 64);
  const gradQ = arena.take(gqStride * split.chunks);
  const gqComp = split.compensate ? arena.take(gqStride * split.chunks) : 0;
  const gradK = arena.take(kRows * d4 * 4);
  const gradV = arena.take(kRows * dv4 * 4);
  const bias = problem.bias ? arena.take(biasLength * 4) : 0;
  const gradBias = problem.bias ? arena.take(biasLength * 8) : 0;
  const keyMask = problem.keyMask ? arena.take(B * Lk) : 0;
  const alibi = problem.alibiSlopes ? arena.take(Hq * 4) : 0;
  const sinks = problem.sinks ? arena.take(Hq * 4) : 0;
  const gradSinks = problem.sinks ? arena.take(Hq * 4) : 0;
  const flags = arena.take(Math.max(qRows, kRows));
  if (arena.end > MAX_MEMORY_BYTES) tooBig('this attentionBackward call', arena.end);
  grow(memory, arena.end, "this attentionBackward call's tensors and scratch");

  const buffer = memory.buffer;
  const heap = new Float32Array(buffer);
  const words = new Uint32Array(buffer);
  copyPadded(heap, q, problem.q, qRows, D, d4);
  copyPadded(heap, k, problem.k, kRows, D, d4);
  copyPadded(heap, v, problem.v, kRows, Dv, dv4);
  copyPadded(heap, out, problem.output, qRows, Dv, dv4);
  copyPadded(heap, gradOut, problem.gradOutput, qRows, Dv, dv4);
  heap.set(problem.lse, lse >>> 2);
  if (problem.bias) {
    heap.set(problem.bias.data, bias >>> 2);
    new Float64Array(buffer, gradBias, biasLength).fill(0);
  }
  if (problem.keyMask) new Uint8Array(buffer, keyMask, B * Lk).set(problem.keyMask);
  if (problem.alibiSlopes) heap.set(problem.alibiSlopes, alibi >>> 2);
  if (problem.sinks) heap.set(problem.sinks, sinks >>> 2);

  try {
    // a zero weight against a NaN/inf row of q, k or dO must add nothing: the guarded sums
    const guard =
      exports.nonfinite_rows(q, qRows, d4, flags) +
        exports.nonfinite_rows(k, kRows, d4, flags) +
        exports.nonfinite_rows(gradOut, qRows, dv4, flags) >
      0;
    writeParams(words, heap, params, {
      q,
      k,
      v,
      out,
      lse,
      ...(problem.bias && biasParams(bias, problem.bias.strides)),
      keyMask,
      alibi,
      sinks,
      ...problemParams(problem),
      blockQ: bq,
      blockK: bk,
      nItems: split.items,
      counter: 0,
      scratch,
      scratchStride,
      kind: KIND.backward,
      gradOut,
      delta,
      gradQ,
      gqStride,
      gqComp,
      nChunks: split.chunks,
      gradK,
      gradV,
      gradBias,
      gradSinks,
      mergeB: split.mergeBatch ? 1 : 0,
      mergeG: split.mergeHeads ? 1 : 0,
      guard: guard ? 1 : 0,
      exactDeltaAbove: EXACT_DELTA_ABOVE,
      exactRows,
    });

    exports.bwd_prep(params);
    await runItems(kernel, params, parallel);
    exports.bwd_finish(params);
  } catch (error) {
    throw deviceError('attentionBackward', error);
  }

  const context = 'attentionBackward';
  const gradients: AttentionGradients = {
    gradQ: allocating(context, 'gradQ', qRows * D * 4, () => copyUnpadded(heap, gradQ, qRows, D, d4)),
    gradK: allocating(context, 'gradK', kRows * D * 4, () => copyUnpadded(heap, gradK, kRows, D, d4)),
    gradV: allocating(context, 'gradV', kRows * Dv * 4, () => copyUnpadded(heap, gradV, kRows, Dv, dv4)),
  };
  if (problem.bias) {
    gradients.gradBias = allocating(context, 'gradBias', biasLength * 4, () => {
      // float64 accumulators, rounded once
      const rounded = new Float32Array(biasLength);
      rounded.set(new Float64Array(buffer, gradBias, biasLength));
      return rounded;
    });
  }
  if (problem.sinks)
    gradients.gradSinks = allocating(context, 'gradSinks', Hq * 4, () =>
      heap.slice(gradSinks >>> 2, (gradSinks >>> 2) + Hq),
    );
  return gradients;
}
