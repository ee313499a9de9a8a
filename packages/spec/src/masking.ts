import type { AttentionProblem } from './types.js';

/**
 * Absolute position of query row `i`: `(Lk - Lq) + i`. Bottom-right alignment, as in FlashAttention
 * and KV-cache decoding: the last query lines up with the last key.
 */
export function queryPosition(i: number, queryLength: number, keyLength: number): number {
  return keyLength - queryLength + i;
}

/**
 * The half-open key interval `[start, end)` that `causal` and `slidingWindow` leave visible to the
 * query at absolute position `position` (the key mask is applied on top, per key). Empty when
 * `start >= end`. Every backend uses this to skip whole tiles.
 */
export function visibleKeyRange(
  position: number,
  keyLength: number,
  causal: boolean,
  slidingWindow: number | null,
): { start: number; end: number } {
  let start = 0;
  let end = keyLength;
  if (causal) end = Math.min(end, position + 1);
  if (slidingWindow !== null) {
    start = Math.max(start, position - slidingWindow + 1);
    if (!causal) end = Math.min(end, position + slidingWindow);
  }
  if (end < start) end = start;
  return { start: Math.max(0, start), end: Math.max(0, end) };
}

/** Whether key `j` is visible to query row `i` of batch `b` under every mask of `problem`. */
export function isVisible(problem: AttentionProblem, b: number, i: number, j: number): boolean {
  const { queryLength, keyLength } = problem.shape;
  const range = visibleKeyRange(
    queryPosition(i, queryLength, keyLength),
    keyLength,
    problem.causal,
    problem.slidingWindow,
  );
  if (j < range.start || j >= range.end) return false;
  return problem.keyMask === null || problem.keyMask[b * keyLength + j] !== 0;
}

/** Query head `h` reads key/value head `floor(h / (Hq / Hkv))`. */
export function kvHeadFor(queryHead: number, queryHeads: number, kvHeads: number): number {
  return Math.floor(queryHead / (queryHeads / kvHeads));
}
