import { AttnkitError, describeValue, invalidArgument } from './errors.js';
import { F16_ROUNDS_TO_INFINITY } from './f16.js';
import { OPTION_KEYS } from './features.js';
import { shapeSymbols } from './symbols.js';
import {
  isDetachedView,
  plainFloat32View,
  plainUint8View,
  typedArrayLength,
  typedArrayTag,
} from './typed.js';
import type {
  AttentionInputs,
  AttentionOptions,
  AttentionProblem,
  MatmulInputs,
  MatmulProblem,
  MatmulShape,
  ResolvedBias,
  ResolvedShape,
  StoragePrecision,
} from './types.js';

const ATTENTION = 'attention';
/** The device-resident attention call's context: it takes f16 storage too, as float16 tensors. */
export const DEVICE_ATTENTION = 'attentionBuffers';
const MATMUL = 'matmul';

export const INPUT_KEYS: ReadonlySet<string> = new Set(['q', 'k', 'v', 'shape']);
const MATMUL_INPUT_KEYS: ReadonlySet<string> = new Set(['a', 'b', 'bias', 'shape']);
const MATMUL_SHAPE_KEYS: ReadonlySet<string> = new Set(['m', 'k', 'n']);

const SHAPE_KEYS: ReadonlySet<string> = new Set([
  'batch',
  'queryHeads',
  'kvHeads',
  'queryLength',
  'keyLength',
  'headDim',
  'valueDim',
]);

/**
 * Tests for a real `Float32Array` through the intrinsic `%TypedArray%.prototype[Symbol.toStringTag]`
 * getter: arrays from another realm (worker, iframe) pass, an object with a fake `Symbol.toStringTag`
 * does not.
 */
export function isFloat32Array(value: unknown): value is Float32Array {
  return typedArrayTag(value) === 'Float32Array';
}

/** Largest finite float32, the bound of every float32 kernel's intermediate values. */
export const FLOAT32_MAX = 3.4028234663852886e38;
/** Smallest normal float32: a softcap below it is a denormal (or 0) inside a float32 kernel. */
export const FLOAT32_MIN_NORMAL = 2 ** -126;

/**
 * Reads the known keys of an options-like object, each exactly once, into a plain object: a getter
 * cannot hand validation one value and the backend another.
 */
export function readOnce(
  context: string,
  argument: string,
  value: unknown,
  known: ReadonlySet<string>,
  expected: string,
): Record<string, unknown> {
  if (!isPlainObject(value)) invalidArgument(context, argument, expected, value);
  rejectUnknownKeys(context, argument, value, known);
  const copy: Record<string, unknown> = {};
  for (const key of known) copy[key] = value[key];
  return copy;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !ArrayBuffer.isView(value);
}

/** Largest element count any tensor may have: typed arrays and GPU indexing are 32-bit here. */
export const MAX_TENSOR_ELEMENTS = 2 ** 31 - 1;

function positiveInteger(context: string, argument: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    invalidArgument(context, argument, 'a positive integer', value);
  }
  if (value > MAX_TENSOR_ELEMENTS)
    invalidArgument(context, argument, `at most ${MAX_TENSOR_ELEMENTS}`, value);
  return value;
}

function rejectUnknownKeys(
  context: string,
  argument: string,
  value: object,
  known: ReadonlySet<string>,
): void {
  for (const key of Object.keys(value)) {
    if (!known.has(key)) {
      const list = [...known].join(', ');
      throw new AttnkitError(
        'invalid-argument',
        `${context}: ${argument} has unknown key "${key}" (known: ${list})`,
        {
          argument: `${argument}.${key}`,
          expected: `one of ${list}`,
          actual: JSON.stringify(key),
        },
      );
    }
  }
}

function detached(context: string, argument: string, kind: string): never {
  throw new AttnkitError(
    'invalid-argument',
    `${context}: ${argument} must be a ${kind} whose buffer is not detached, got a ${kind} with a detached buffer (transferred or posted away)`,
    {
      argument,
      expected: `a ${kind} whose buffer is not detached`,
      actual: `a ${kind} with a detached buffer`,
    },
  );
}

/**
 * A tensor argument checked by its real type and real length (intrinsic getters, so a subclass or a
 * look-alike cannot lie), returned as a plain `Float32Array` view of the same memory.
 */
export function float32Tensor(
  context: string,
  argument: string,
  value: unknown,
  length: number,
  formula: string,
): Float32Array {
  if (!isFloat32Array(value)) invalidArgument(context, argument, 'a Float32Array', value);
  const real = typedArrayLength(value);
  if (real !== length) {
    if (real === 0 && isDetachedView(value)) detached(context, argument, 'Float32Array');
    invalidArgument(context, `${argument}.length`, `${length} (${formula})`, real);
  }
  return plainFloat32View(value);
}

/** Largest |x| over the finite elements (NaN and infinities keep their IEEE meaning and are not bounded). */
export function maxAbsFinite(data: Float32Array): number {
  let max = 0;
  for (let i = 0; i < data.length; i++) {
    const a = Math.abs(data[i]);
    if (a > max && a !== Number.POSITIVE_INFINITY) max = a;
  }
  return max;
}

/**
 * The binary16 range rule of f16 storage (spec README, "f16 storage"): a finite value binary16 would
 * round to infinity (`|x| >= 65520`) is rejected, as a float32 overflow is; infinities and NaN pass.
 */
export function checkF16Range(context: string, tensors: readonly (readonly [string, Float32Array])[]): void {
  for (const [argument, tensor] of tensors) {
    const largest = maxAbsFinite(tensor);
    if (largest >= F16_ROUNDS_TO_INFINITY) {
      invalidArgument(
        context,
        argument,
        `finite values below ${F16_ROUNDS_TO_INFINITY} in magnitude (binary16 storage rounds larger ones to infinity)`,
        largest,
      );
    }
  }
}

/** Every {@link StoragePrecision}, in the order the error message lists them. */
export const STORAGE_PRECISIONS: readonly StoragePrecision[] = ['f32', 'f16-storage'];

/**
 * The float32 overflow rule (README "Float32 range"): every partial dot product and logit must be
 * representable in float32, since that is what wasm, WebGL and WebGPU compute in. The bound
 * `D * max|q| * max|k| * max(1, |scale|)` covers the unscaled and the scaled dot product. `mk` is
 * `max|k|` (a KV cache passes a running bound over what was appended).
 */
export function checkLogitRange(
  context: string,
  q: Float32Array,
  mk: number,
  D: number,
  scale: number,
): void {
  const mq = maxAbsFinite(q);
  const s = Math.max(1, Math.abs(scale));
  const bound = D * mq * mk * s;
  if (bound > FLOAT32_MAX) {
    const argument = s > 1 ? 'q, k, options.scale' : 'q, k';
    const expected = `D * max|q| * max|k| * max(1, |scale|) <= ${FLOAT32_MAX} (float32 kernels: no partial dot product or logit may overflow float32)`;
    const actual = `${D} * ${mq} * ${mk} * ${s} = ${bound}`;
    throw new AttnkitError(
      'invalid-argument',
      `${context}: ${argument} must satisfy ${expected}, got ${actual}`,
      { argument, expected, actual },
    );
  }
}

function checkedProduct(context: string, argument: string, factors: readonly number[]): number {
  let product = 1;
  for (const factor of factors) product *= factor;
  if (product > MAX_TENSOR_ELEMENTS) {
    invalidArgument(context, argument, `at most ${MAX_TENSOR_ELEMENTS} elements`, product);
  }
  return product;
}

/** Validates an {@link AttentionShape} and fills in its defaults. */
export function resolveShape(given: unknown, context = ATTENTION): ResolvedShape {
  const shape = readOnce(context, 'shape', given, SHAPE_KEYS, 'an object');
  const batch = positiveInteger(context, 'shape.batch', shape.batch);
  const queryHeads = positiveInteger(context, 'shape.queryHeads', shape.queryHeads);
  const kvHeads =
    shape.kvHeads === undefined ? queryHeads : positiveInteger(context, 'shape.kvHeads', shape.kvHeads);
  const queryLength = positiveInteger(context, 'shape.queryLength', shape.queryLength);
  const keyLength =
    shape.keyLength === undefined
      ? queryLength
      : positiveInteger(context, 'shape.keyLength', shape.keyLength);
  const headDim = positiveInteger(context, 'shape.headDim', shape.headDim);
  const valueDim =
    shape.valueDim === undefined ? headDim : positiveInteger(context, 'shape.valueDim', shape.valueDim);
  if (queryHeads % kvHeads !== 0) {
    throw new AttnkitError(
      'invalid-argument',
      `${context}: shape.queryHeads must be a multiple of shape.kvHeads (${kvHeads}), got ${queryHeads}`,
      { argument: 'shape.queryHeads', expected: `a multiple of ${kvHeads}`, actual: String(queryHeads) },
    );
  }
  return { batch, queryHeads, kvHeads, queryLength, keyLength, headDim, valueDim };
}

const BIAS_KEYS: ReadonlySet<string> = new Set(['data', 'shape']);

function resolveBias(context: string, given: unknown, shape: ResolvedShape): ResolvedBias {
  const bias = readOnce(context, 'options.bias', given, BIAS_KEYS, 'an object { data, shape }');
  const target = [shape.batch, shape.queryHeads, shape.queryLength, shape.keyLength] as const;
  const names = ['B', 'Hq', 'Lq', 'Lk'];
  const givenShape = bias.shape;
  // one read of the length and of each entry (the array may be a Proxy)
  const rank = Array.isArray(givenShape) ? (givenShape.length as number) : -1;
  if (rank !== 4) {
    invalidArgument(
      context,
      'options.bias.shape',
      `4 dimensions broadcastable to [${target.join(', ')}]`,
      givenShape,
    );
  }
  const entries = givenShape as readonly unknown[];
  const biasShape: unknown[] = [entries[0], entries[1], entries[2], entries[3]];
  const dims = biasShape.map((dim: unknown, axis: number) => {
    const argument = `options.bias.shape[${axis}]`;
    const size = positiveInteger(context, argument, dim);
    if (size !== 1 && size !== target[axis]) {
      invalidArgument(context, argument, `1 or ${target[axis]} (${names[axis]}) to broadcast`, size);
    }
    return size;
  }) as [number, number, number, number];
  const length = checkedProduct(context, 'options.bias.shape', dims);
  const data = float32Tensor(
    context,
    'options.bias.data',
    bias.data,
    length,
    `product of shape [${dims.join(', ')}]`,
  );
  const strides: [number, number, number, number] = [0, 0, 0, 0];
  let stride = 1;
  for (let axis = 3; axis >= 0; axis--) {
    strides[axis] = dims[axis] === 1 ? 0 : stride;
    stride *= dims[axis];
  }
  return { data, shape: dims, strides };
}

function optionalBoolean(context: string, argument: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') invalidArgument(context, argument, 'a boolean', value);
  return value;
}

function perHeadVector(
  context: string,
  argument: string,
  value: unknown,
  heads: number,
): Float32Array | null {
  if (value === undefined) return null;
  return float32Tensor(context, argument, value, heads, 'Hq, one per query head');
}

/** The option part of an {@link AttentionProblem}. */
export type ResolvedOptions = Omit<AttentionProblem, 'q' | 'k' | 'v' | 'shape'>;

/** Validates {@link AttentionOptions} against a resolved shape and fills in the defaults. */
export function resolveOptions(
  given: AttentionOptions,
  shape: ResolvedShape,
  context = ATTENTION,
): ResolvedOptions {
  const options = readOnce(context, 'options', given, OPTION_KEYS, 'an object');
  const { batch: B, queryHeads: Hq, queryLength: Lq, keyLength: Lk, headDim: D } = shape;
  let scale = 1 / Math.sqrt(D);
  if (options.scale !== undefined) {
    if (typeof options.scale !== 'number' || !Number.isFinite(options.scale)) {
      invalidArgument(context, 'options.scale', 'a finite number', options.scale);
    }
    if (Math.abs(options.scale) > FLOAT32_MAX) {
      invalidArgument(
        context,
        'options.scale',
        `a finite number with |scale| <= ${FLOAT32_MAX} (float32 kernels)`,
        options.scale,
      );
    }
    scale = options.scale;
  }
  const causal = optionalBoolean(context, 'options.causal', options.causal);

  let slidingWindow: number | null = null;
  if (options.slidingWindow !== undefined) {
    const w = options.slidingWindow;
    if (typeof w !== 'number' || !Number.isInteger(w) || w < 1) {
      invalidArgument(context, 'options.slidingWindow', 'an integer >= 1', w);
    }
    // |p - j| < max(Lq, Lk) for every query and key, so any wider window masks nothing: clamping is
    // the same semantics, and keeps the value within the 32-bit integers kernels hold it in
    slidingWindow = Math.min(w, Math.max(Lq, Lk));
  }

  let keyMask: Uint8Array | null = null;
  if (options.keyMask !== undefined) {
    const mask = options.keyMask;
    if (typedArrayTag(mask) !== 'Uint8Array')
      invalidArgument(context, 'options.keyMask', 'a Uint8Array', mask);
    const real = typedArrayLength(mask);
    if (real !== B * Lk) {
      if (real === 0 && isDetachedView(mask)) detached(context, 'options.keyMask', 'Uint8Array');
      invalidArgument(context, 'options.keyMask.length', `${B * Lk} (B*Lk = ${B}*${Lk})`, real);
    }
    keyMask = plainUint8View(mask);
  }

  const bias = options.bias === undefined ? null : resolveBias(context, options.bias, shape);
  const alibiSlopes = perHeadVector(context, 'options.alibiSlopes', options.alibiSlopes, Hq);

  let softcap: number | null = null;
  if (options.softcap !== undefined) {
    const c = options.softcap;
    if (typeof c !== 'number' || !Number.isFinite(c) || c <= 0) {
      invalidArgument(context, 'options.softcap', 'a finite number > 0', c);
    }
    if (c < FLOAT32_MIN_NORMAL || c > FLOAT32_MAX) {
      // below 2^-126 the cap is a denormal or 0 in float32 (a kernel would drop it); above FLT_MAX, infinity
      invalidArgument(
        context,
        'options.softcap',
        `a number in [2^-126, ${FLOAT32_MAX}] (float32 kernels: a normal float32)`,
        c,
      );
    }
    softcap = c;
  }
  const sinks = perHeadVector(context, 'options.sinks', options.sinks, Hq);
  const returnLse = optionalBoolean(context, 'options.returnLse', options.returnLse);
  const returnWeights = optionalBoolean(context, 'options.returnWeights', options.returnWeights);
  if (returnWeights) checkedProduct(context, 'weights', [B, Hq, Lq, Lk]);
  const precision = options.precision === undefined ? 'f32' : options.precision;
  if (!STORAGE_PRECISIONS.includes(precision as StoragePrecision)) {
    invalidArgument(
      context,
      'options.precision',
      `one of ${STORAGE_PRECISIONS.map((p) => `'${p}'`).join(', ')}`,
      precision,
    );
  }
  // f16 storage rounds the host arrays of one attention call, or names float16 device tensors; the
  // layer, the backward and a cache's query have neither (a cache's precision is its config).
  if (precision === 'f16-storage' && context !== ATTENTION && context !== DEVICE_ATTENTION) {
    invalidArgument(
      context,
      'options.precision',
      `'f32' (${context} does not take 'f16-storage': it is an option of attention on host arrays and of attentionBuffers on float16 tensors; a KV cache's storage is its config.precision)`,
      precision,
    );
  }

  return {
    scale,
    causal,
    slidingWindow,
    keyMask,
    bias,
    alibiSlopes,
    softcap,
    sinks,
    returnLse,
    returnWeights,
    precision: precision as StoragePrecision,
  };
}

/**
 * Checks every argument of an attention call and returns the call with defaults resolved. Throws
 * {@link AttnkitError} (`invalid-argument`) naming the argument and the expected and actual values.
 * Pure: allocates nothing the size of a tensor and never touches a device.
 */
export function validateAttention(given: AttentionInputs, options: AttentionOptions = {}): AttentionProblem {
  return validateAttentionFor(ATTENTION, given, options);
}

/**
 * Checks one tensor argument against the length its shape implies and returns it in the form the
 * backend receives: {@link float32Tensor} for host arrays, the device gate's handle check for device
 * tensors (device.ts). One rule, two kinds of tensor.
 */
export type TensorCheck<T> = (argument: string, value: unknown, length: number, formula: string) => T;

/** {@link validateAttention} with errors named for `context` (the backward call validates the same inputs). */
export function validateAttentionFor(
  context: string,
  given: AttentionInputs,
  options: AttentionOptions = {},
): AttentionProblem {
  const { q, k, v, shape, resolved } = validateAttentionTensors(
    context,
    given,
    options,
    INPUT_KEYS,
    (argument, value, length, formula) => float32Tensor(context, argument, value, length, formula),
  );
  checkLogitRange(context, q, maxAbsFinite(k), shape.headDim, resolved.scale);
  if (resolved.precision === 'f16-storage')
    checkF16Range(context, [
      ['q', q],
      ['k', k],
      ['v', v],
    ]);
  return { q, k, v, shape, ...resolved };
}

/**
 * The attention rules shared by host arrays and device tensors: the inputs object read once against
 * `keys`, the shape, q/k/v by `tensor` at the lengths the shape implies, the output's size, the
 * options. Returns the raw inputs record too, for keys beyond q/k/v/shape (a device call's `layout`).
 */
export function validateAttentionTensors<T>(
  context: string,
  given: unknown,
  options: AttentionOptions,
  keys: ReadonlySet<string>,
  tensor: TensorCheck<T>,
): { q: T; k: T; v: T; shape: ResolvedShape; resolved: ResolvedOptions; inputs: Record<string, unknown> } {
  const inputs = readOnce(context, 'inputs', given, keys, 'an object { q, k, v, shape }');
  // Read once here (a plain copy), so the keyLength hint below does not read the caller's shape again.
  const shapeFields = readOnce(context, 'shape', inputs.shape, SHAPE_KEYS, 'an object');
  const shape = resolveShape(shapeFields, context);
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(shape);

  const q = tensor(
    'q',
    inputs.q,
    checkedProduct(context, 'q', [B, Hq, Lq, D]),
    `B*Hq*Lq*D = ${B}*${Hq}*${Lq}*${D}`,
  );
  // A decode call that forgets keyLength gets Lk = Lq: say so, or the expected length looks arbitrary.
  const lkDefaulted =
    shapeFields.keyLength === undefined ? '; shape.keyLength defaults to shape.queryLength' : '';
  const k = tensor(
    'k',
    inputs.k,
    checkedProduct(context, 'k', [B, Hkv, Lk, D]),
    `B*Hkv*Lk*D = ${B}*${Hkv}*${Lk}*${D}${lkDefaulted}`,
  );
  const v = tensor(
    'v',
    inputs.v,
    checkedProduct(context, 'v', [B, Hkv, Lk, Dv]),
    `B*Hkv*Lk*Dv = ${B}*${Hkv}*${Lk}*${Dv}${lkDefaulted}`,
  );
  checkedProduct(context, 'output', [B, Hq, Lq, Dv]);

  const resolved = resolveOptions(options, shape, context);
  return { q, k, v, shape, resolved, inputs };
}

/** Checks a matmul call: `a [m, k] @ b [k, n] (+ bias [n])`. */
export function validateMatmul(given: MatmulInputs): MatmulProblem {
  return validateMatmulTensors(MATMUL, given, (argument, value, length, formula) =>
    float32Tensor(MATMUL, argument, value, length, formula),
  );
}

/** The matmul rules shared by host arrays and device tensors (see {@link validateAttentionTensors}). */
export function validateMatmulTensors<T>(
  context: string,
  given: unknown,
  tensor: TensorCheck<T>,
): { a: T; b: T; bias: T | null; shape: MatmulShape } {
  const inputs = readOnce(context, 'inputs', given, MATMUL_INPUT_KEYS, 'an object { a, b, shape, bias? }');
  const shape = readOnce(context, 'shape', inputs.shape, MATMUL_SHAPE_KEYS, 'an object { m, k, n }');
  const m = positiveInteger(context, 'shape.m', shape.m);
  const k = positiveInteger(context, 'shape.k', shape.k);
  const n = positiveInteger(context, 'shape.n', shape.n);
  checkedProduct(context, 'output', [m, n]);
  const a = tensor('a', inputs.a, checkedProduct(context, 'a', [m, k]), `m*k = ${m}*${k}`);
  const b = tensor('b', inputs.b, checkedProduct(context, 'b', [k, n]), `k*n = ${k}*${n}`);
  const bias = inputs.bias === undefined ? null : tensor('bias', inputs.bias, n, `n = ${n}`);
  return { a, b, bias, shape: { m, k, n } };
}

export { describeValue };
