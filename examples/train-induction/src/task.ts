import type { Random } from './random.js';

/**
 * The induction task: a sequence that repeats a block of distinct random tokens with a random period,
 * `r0 r1 .. r(n-1) r0 r1 ..`. Once a token has been seen, the next one is whatever followed it last
 * time ("... A B ... A -> B"). The period changes from sequence to sequence, so no fixed positional
 * offset solves it: the model has to find the earlier occurrence of the current token by content and
 * copy its successor, which takes two attention layers (a previous-token head, then an induction head).
 */
export interface TaskConfig {
  vocab: number;
  length: number;
  minPeriod: number;
  maxPeriod: number;
}

export interface Batch {
  /** `[batch, length]` token ids. */
  tokens: Int32Array;
  /** `[batch, length]`: the token to predict at each position (the next one), -1 where unpredictable. */
  targets: Int32Array;
  /** Predictable positions in the batch (the loss and accuracy average over these). */
  count: number;
}

/** One sequence with period `n`: its tokens and next-token targets (from position `n` on). */
export function sequence(config: TaskConfig, random: Random): { tokens: number[]; period: number } {
  const { vocab, length, minPeriod, maxPeriod } = config;
  const period = minPeriod + random.int(maxPeriod - minPeriod + 1);
  // distinct tokens, so "what followed A last time" has one answer (a partial Fisher-Yates shuffle)
  const pool = Array.from({ length: vocab }, (_, i) => i);
  for (let i = 0; i < period; i++) {
    const j = i + random.int(vocab - i);
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return { tokens: Array.from({ length }, (_, i) => pool[i % period]), period };
}

export function makeBatch(config: TaskConfig, batch: number, random: Random): Batch {
  const { length } = config;
  const tokens = new Int32Array(batch * length);
  const targets = new Int32Array(batch * length).fill(-1);
  let count = 0;
  for (let b = 0; b < batch; b++) {
    const { tokens: seq, period } = sequence(config, random);
    for (let i = 0; i < length; i++) tokens[b * length + i] = seq[i];
    // Position i has seen its own token before from i = period on; the last position has no next token.
    for (let i = period; i < length - 1; i++) {
      targets[b * length + i] = seq[i + 1];
      count++;
    }
  }
  return { tokens, targets, count };
}
