/**
 * A resolved shape in the notation the spec's documents and kernels use (`B, Hq, Hkv, Lq, Lk, D,
 * Dv`), so code that computes with the dimensions takes them in one line instead of restating the
 * field-to-symbol table at every call site.
 */
import type { ResolvedShape } from './types.js';

/** The dimensions of a {@link ResolvedShape} by their symbols. */
export interface ShapeSymbols {
  /** `batch`. */
  readonly B: number;
  /** `queryHeads`. */
  readonly Hq: number;
  /** `kvHeads`. */
  readonly Hkv: number;
  /** `queryLength`. */
  readonly Lq: number;
  /** `keyLength`. */
  readonly Lk: number;
  /** `headDim`. */
  readonly D: number;
  /** `valueDim`. */
  readonly Dv: number;
}

/** `shape`'s dimensions by symbol: `const { B, Hq, Lq, D } = shapeSymbols(problem.shape)`. */
export function shapeSymbols(shape: ResolvedShape): ShapeSymbols {
  return {
    B: shape.batch,
    Hq: shape.queryHeads,
    Hkv: shape.kvHeads,
    Lq: shape.queryLength,
    Lk: shape.keyLength,
    D: shape.headDim,
    Dv: shape.valueDim,
  };
}
