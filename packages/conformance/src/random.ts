/** Small deterministic generators: every fixed case draws its data from a PRNG seeded by its id. */

/** mulberry32: tiny, fast, good enough for test data, and identical in every JS engine. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a of a string: the seed of a fixed case's data, so its inputs never change between runs. */
export function hashString(text: string): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < text.length; index++) {
    hash ^= text.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** A filler of typed arrays drawing from one stream. */
export class DataSource {
  readonly next: () => number;

  constructor(seed: number) {
    this.next = prng(seed);
  }

  /** Uniform in `[low, high)`, rounded to float32 on storage. */
  uniform(length: number, low = -1, high = 1): Float32Array {
    const out = new Float32Array(length);
    for (let index = 0; index < length; index++) out[index] = low + (high - low) * this.next();
    return out;
  }

  /**
   * Integers in `[low, high]` times `step`: with a power-of-two step, float32 products and short sums
   * are exact, so a case tests the algorithm rather than rounding.
   */
  grid(length: number, low: number, high: number, step = 1): Float32Array {
    const out = new Float32Array(length);
    for (let index = 0; index < length; index++) {
      out[index] = (low + Math.floor(this.next() * (high - low + 1))) * step;
    }
    return out;
  }

  /** 0/1 mask with probability `p` of 1. */
  mask(length: number, p = 0.7): Uint8Array {
    const out = new Uint8Array(length);
    for (let index = 0; index < length; index++) out[index] = this.next() < p ? 1 : 0;
    return out;
  }

  integer(low: number, high: number): number {
    return low + Math.floor(this.next() * (high - low + 1));
  }
}
