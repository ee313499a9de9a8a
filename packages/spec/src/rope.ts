import { invalidArgument } from './errors.js';
import { float32Tensor, readOnce } from './validate.js';

/**
 * Rotary position embeddings (RoPE, Su et al. 2021), as the decoder layers of Llama, Mistral, Qwen,
 * GPT-NeoX (half-split) and GPT-J (interleaved) apply them to queries and keys before attention, and
 * as onnxruntime's `RotaryEmbedding` / `GroupQueryAttention` fuse them.
 */
export interface RotaryOptions {
  /** Frequency base `theta`: pair `i` turns by `position * base^(-2i / rotaryDim)`. Default 10000. */
  base?: number;
  /** Leading dimensions of each head that rotate (even, `<= headDim`); the rest pass through. Default `headDim`. */
  rotaryDim?: number;
  /**
   * `false` (default): pairs `(x[i], x[i + rotaryDim/2])` — GPT-NeoX / Llama `rotate_half`.
   * `true`: pairs `(x[2i], x[2i + 1])` — GPT-J, onnxruntime's `interleaved = 1`.
   */
  interleaved?: boolean;
}

/** {@link RotaryOptions} with every default applied. */
export interface ResolvedRotary {
  base: number;
  rotaryDim: number;
  interleaved: boolean;
}

/** `[batch, heads, length, headDim]`, the layout of attention's q and k. */
export interface RotaryShape {
  batch: number;
  heads: number;
  length: number;
  headDim: number;
}

const ROTARY = 'applyRotary';
const ROTARY_KEYS: ReadonlySet<string> = new Set(['base', 'rotaryDim', 'interleaved']);

/** Validates rotary options against a head dimension. `context` names the calling API in errors. */
export function resolveRotary(
  given: unknown,
  headDim: number,
  context = ROTARY,
  argument = 'rotary',
): ResolvedRotary {
  const options = readOnce(
    context,
    argument,
    given ?? {},
    ROTARY_KEYS,
    'an object { base?, rotaryDim?, interleaved? }',
  );
  let base = 10000;
  if (options.base !== undefined) {
    const value = options.base;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 1) {
      invalidArgument(context, `${argument}.base`, 'a finite number > 1', value);
    }
    base = value;
  }
  let rotaryDim = headDim;
  if (options.rotaryDim !== undefined) {
    const value = options.rotaryDim;
    if (
      typeof value !== 'number' ||
      !Number.isInteger(value) ||
      value < 2 ||
      value % 2 !== 0 ||
      value > headDim
    ) {
      invalidArgument(
        context,
        `${argument}.rotaryDim`,
        `an even integer in [2, headDim = ${headDim}]`,
        value,
      );
    }
    rotaryDim = value;
  } else if (headDim % 2 !== 0) {
    invalidArgument(
      context,
      `${argument}.rotaryDim`,
      `given, since headDim ${headDim} is odd (an even integer <= ${headDim})`,
      undefined,
    );
  }
  let interleaved = false;
  if (options.interleaved !== undefined) {
    if (typeof options.interleaved !== 'boolean') {
      invalidArgument(context, `${argument}.interleaved`, 'a boolean', options.interleaved);
    }
    interleaved = options.interleaved;
  }
  return { base, rotaryDim, interleaved };
}

/**
 * Rotates `x [batch, heads, length, headDim]` in place by each token's absolute position
 * `start[b] + l` (a KV cache passes its row lengths before the append), in float64 with one rounding
 * per element for a `Float32Array` (none for a `Float64Array`: the float64 references use it too). `sign = -1` applies the inverse rotation (the transpose: what the backward pass needs).
 * Inputs are trusted: call {@link applyRotary} for a validated copy.
 */
export function rotateInPlace(
  x: Float32Array | Float64Array,
  shape: RotaryShape,
  start: readonly number[],
  rotary: ResolvedRotary,
  sign: 1 | -1 = 1,
): void {
  const { batch: B, heads: H, length: L, headDim: D } = shape;
  const half = rotary.rotaryDim / 2;
  const inverseFrequency = new Float64Array(half);
  for (let i = 0; i < half; i++) inverseFrequency[i] = rotary.base ** ((-2 * i) / rotary.rotaryDim);
  for (let b = 0; b < B; b++) {
    for (let l = 0; l < L; l++) {
      const position = start[b] + l;
      for (let i = 0; i < half; i++) {
        const angle = position * inverseFrequency[i];
        const cos = Math.cos(angle);
        const sin = sign * Math.sin(angle);
        const first = rotary.interleaved ? 2 * i : i;
        const second = rotary.interleaved ? 2 * i + 1 : i + half;
        for (let h = 0; h < H; h++) {
          const base = ((b * H + h) * L + l) * D;
          const x1 = x[base + first];
          const x2 = x[base + second];
          x[base + first] = x1 * cos - x2 * sin;
          x[base + second] = x1 * sin + x2 * cos;
        }
      }
    }
  }
}

function positionStarts(context: string, given: unknown, batch: number): number[] {
  if (typeof given === 'number') {
    if (!Number.isInteger(given) || given < 0) invalidArgument(context, 'start', 'an integer >= 0', given);
    return new Array<number>(batch).fill(given);
  }
  if (!Array.isArray(given) || given.length !== batch) {
    invalidArgument(context, 'start', `an integer >= 0 or an array of ${batch} (one per batch row)`, given);
  }
  const starts = (given as unknown[]).slice(0, batch);
  starts.forEach((value, b) => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 2 ** 31) {
      invalidArgument(context, `start[${b}]`, 'an integer in [0, 2^31]', value);
    }
  });
  return starts as number[];
}

/**
 * Rotary embedding of `x [batch, heads, length, headDim]` at positions `start + l` (or
 * `start[b] + l` per row), returned as a new array. Equivalent to, per pair `(x1, x2)` of pair index
 * `i < rotaryDim / 2` at position `p`:
 *
 * ```text
 * angle = p * base^(-2i / rotaryDim)
 * x1' = x1 * cos(angle) - x2 * sin(angle)
 * x2' = x1 * sin(angle) + x2 * cos(angle)
 * ```
 */
export function applyRotary(
  x: Float32Array,
  shape: RotaryShape,
  start: number | readonly number[] = 0,
  options: RotaryOptions = {},
): Float32Array {
  const dims = readOnce(
    ROTARY,
    'shape',
    shape,
    new Set(['batch', 'heads', 'length', 'headDim']),
    'an object { batch, heads, length, headDim }',
  );
  for (const key of ['batch', 'heads', 'length', 'headDim'] as const) {
    const value = dims[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
      invalidArgument(ROTARY, `shape.${key}`, 'a positive integer', value);
    }
  }
  const resolved = dims as unknown as RotaryShape;
  const { batch: B, heads: H, length: L, headDim: D } = resolved;
  const rotary = resolveRotary(options, D);
  const starts = positionStarts(ROTARY, start, B);
  const data = float32Tensor(
    ROTARY,
    'x',
    x,
    B * H * L * D,
    `batch*heads*length*headDim = ${B}*${H}*${L}*${D}`,
  );
  const out = new Float32Array(data);
  rotateInPlace(out, resolved, starts, rotary);
  return out;
}
