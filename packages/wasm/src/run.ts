/**
 * Marshalling and dispatch of the stateless forward and the matmul: the problem's tensors into the
 * kernel's linear memory (padded to the kernel's layout), the `Params` block written from `abi.ts`,
 * the work split into query-tile items run on the calling thread and the workers, the result read back.
 */
import {
  type AttentionProblem,
  type AttentionResult,
  allocating,
  type MatmulProblem,
  shapeSymbols,
} from '@attnkit/spec';
import { biasParams, PARAM_BYTES, problemParams, writeParams } from './abi.js';
import { deviceError, type Kernel, runItems, threading } from './kernel.js';
import { Arena, align, copyPadded, copyUnpadded, grow, MAX_MEMORY_BYTES, round4, tooBig } from './memory.js';

export async function runAttention(
  kernel: Kernel,
  problem: AttentionProblem,
  blockQ: number,
  blockK: number,
  parallelMinWork: number,
) {
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(problem.shape);
  const { exports, memory, pool } = kernel;
  const d4 = round4(D);
  const dv4 = round4(Dv);
  const bq = Math.min(blockQ, Lq);
  const bk = blockK;
  const items = B * Hq * Math.ceil(Lq / bq);
  const work = B * Hq * Lq * Lk * (D + Dv);
  const { parallel, slots } = threading(pool, items, work, parallelMinWork);

  const arena = new Arena(kernel.base);
  const params = arena.take(PARAM_BYTES);
  const scratchStride = align(exports.attn_scratch_bytes(bq, bk, dv4), 64);
  const scratch = arena.take(scratchStride * slots);
  const q = arena.take(B * Hq * Lq * d4 * 4);
  const k = arena.take(B * Hkv * Lk * d4 * 4);
  const v = arena.take(B * Hkv * Lk * dv4 * 4);
  const out = arena.take(B * Hq * Lq * dv4 * 4);
  const lse = problem.returnLse ? arena.take(B * Hq * Lq * 4) : 0;
  const weights = problem.returnWeights ? arena.take(B * Hq * Lq * Lk * 4) : 0;
  const bias = problem.bias ? arena.take(problem.bias.data.length * 4) : 0;
  const keyMask = problem.keyMask ? arena.take(B * Lk) : 0;
  const alibi = problem.alibiSlopes ? arena.take(Hq * 4) : 0;
  const sinks = problem.sinks ? arena.take(Hq * 4) : 0;
  const vBad = arena.take(B * Hkv * Lk);
  if (arena.end > MAX_MEMORY_BYTES) tooBig('this attention call', arena.end);
  grow(memory, arena.end, "this attention call's tensors and scratch");

  const buffer = memory.buffer;
  const heap = new Float32Array(buffer);
  const words = new Uint32Array(buffer);
  copyPadded(heap, q, problem.q, B * Hq * Lq, D, d4);
  copyPadded(heap, k, problem.k, B * Hkv * Lk, D, d4);
  copyPadded(heap, v, problem.v, B * Hkv * Lk, Dv, dv4);
  // the kernel writes only the keys a row can see; every other weight must read 0
  if (weights) heap.fill(0, weights >>> 2, (weights >>> 2) + B * Hq * Lq * Lk);
  if (problem.bias) heap.set(problem.bias.data, bias >>> 2);
  if (problem.keyMask) new Uint8Array(buffer, keyMask, B * Lk).set(problem.keyMask);
  if (problem.alibiSlopes) heap.set(problem.alibiSlopes, alibi >>> 2);
  if (problem.sinks) heap.set(problem.sinks, sinks >>> 2);

  try {
    // value rows with NaN/inf need the kernel's guarded path (0 * inf must not reach the output)
    const badRows = exports.nonfinite_rows(v, B * Hkv * Lk, dv4, vBad);
    writeParams(words, heap, params, {
      q,
      k,
      v,
      out,
      lse,
      weights,
      ...(problem.bias && biasParams(bias, problem.bias.strides)),
      keyMask,
      alibi,
      sinks,
      vBad: badRows > 0 ? vBad : 0,
      ...problemParams(problem),
      blockQ: bq,
      blockK: bk,
      nItems: items,
      counter: 0,
      scratch,
      scratchStride,
    });

    await runItems(kernel, params, parallel);
  } catch (error) {
    throw deviceError('attention', error);
  }

  const result: AttentionResult = {
    output: allocating('attention', 'output', B * Hq * Lq * Dv * 4, () =>
      copyUnpadded(heap, out, B * Hq * Lq, Dv, dv4),
    ),
  };
  if (lse)
    result.lse = allocating('attention', 'lse', B * Hq * Lq * 4, () =>
      heap.slice(lse >>> 2, (lse >>> 2) + B * Hq * Lq),
    );
  if (weights)
    result.weights = allocating('attention', 'weights', B * Hq * Lq * Lk * 4, () =>
      heap.slice(weights >>> 2, (weights >>> 2) + B * Hq * Lq * Lk),
    );
  return result;
}

export function runMatmul(kernel: Kernel, problem: MatmulProblem): Float32Array {
  const { m, k, n } = problem.shape;
  const { exports, memory } = kernel;
  const arena = new Arena(kernel.base);
  const a = arena.take(m * k * 4);
  const b = arena.take(k * n * 4);
  const bias = problem.bias ? arena.take(n * 4) : 0;
  const c = arena.take(m * n * 4);
  if (arena.end > MAX_MEMORY_BYTES) tooBig('this matmul', arena.end);
  grow(memory, arena.end, "this matmul's tensors");
  const heap = new Float32Array(memory.buffer);
  heap.set(problem.a, a >>> 2);
  heap.set(problem.b, b >>> 2);
  if (problem.bias) heap.set(problem.bias, bias >>> 2);
  try {
    exports.matmul(a, b, bias, c, m, k, n);
  } catch (error) {
    throw deviceError('matmul', error);
  }
  return allocating('matmul', 'output', m * n * 4, () => heap.slice(c >>> 2, (c >>> 2) + m * n));
}
