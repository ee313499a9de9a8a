import { AttnkitError, describeValue, invalidArgument } from './errors.js';
import type {
  AttentionInputs,
  AttentionOptions,
  AttentionProblem,
  MatmulInputs,
  MatmulProblem,
  ResolvedBias,
  ResolvedShape,
} from './types.js';

const ATTENTION = 'attention';
const MATMUL = 'matmul';

const OPTION_KEYS: ReadonlySet<string> = new Set<keyof AttentionOptions>([
  'scale',
  'causal',
  'slidingWindow',
  'keyMask',
  'bias',
  'alibiSlopes',
  'softcap',
  'sinks',
  'returnLse',
  'returnWeights',
]);

const SHAPE_KEYS: ReadonlySet<string> = new Set([
  'batch',
  'queryHeads',
  'kvHeads',
  'queryLength',
  'keyLength',
  'headDim',
  'valueDim',
]);

/** Tests for a `Float32Array` by tag, so arrays from another realm (worker, iframe) pass too. */
export function isFloat32Array(value: unknown): value is Float32Array {
  return Object.prototype.toString.call(value) === '[object Float32Array]';
}

function isUint8Array(value: unknown): value is Uint8Array {
  return Object.prototype.toString.call(value) === '[object Uint8Array]';
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

function float32Tensor(context: string, argument: string, value: unknown, length: number, formula: string) {
  if (!isFloat32Array(value)) invalidArgument(context, argument, 'a Float32Array', value);
  if (value.length !== length) {
    invalidArgument(context, `${argument}.length`, `${length} (${formula})`, value.length);
  }
  return value;
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
export function resolveShape(shape: unknown, context = ATTENTION): ResolvedShape {
  if (!isPlainObject(shape)) invalidArgument(context, 'shape', 'an object', shape);
  rejectUnknownKeys(context, 'shape', shape, SHAPE_KEYS);
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

function resolveBias(context: string, bias: unknown, shape: ResolvedShape): ResolvedBias {
  if (!isPlainObject(bias)) invalidArgument(context, 'options.bias', 'an object { data, shape }', bias);
  rejectUnknownKeys(context, 'options.bias', bias, new Set(['data', 'shape']));
  const target = [shape.batch, shape.queryHeads, shape.queryLength, shape.keyLength] as const;
  const names = ['B', 'Hq', 'Lq', 'Lk'];
  const biasShape = bias.shape;
  if (!Array.isArray(biasShape) || biasShape.length !== 4) {
    invalidArgument(
      context,
      'options.bias.shape',
      `4 dimensions broadcastable to [${target.join(', ')}]`,
      biasShape,
    );
  }
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
  options: AttentionOptions,
  shape: ResolvedShape,
  context = ATTENTION,
): ResolvedOptions {
  if (!isPlainObject(options)) invalidArgument(context, 'options', 'an object', options);
  rejectUnknownKeys(context, 'options', options, OPTION_KEYS);
  const { batch: B, queryHeads: Hq, queryLength: Lq, keyLength: Lk, headDim: D } = shape;
  let scale = 1 / Math.sqrt(D);
  if (options.scale !== undefined) {
    if (typeof options.scale !== 'number' || !Number.isFinite(options.scale)) {
      invalidArgument(context, 'options.scale', 'a finite number', options.scale);
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
    slidingWindow = w;
  }

  let keyMask: Uint8Array | null = null;
  if (options.keyMask !== undefined) {
    if (!isUint8Array(options.keyMask))
      invalidArgument(context, 'options.keyMask', 'a Uint8Array', options.keyMask);
    if (options.keyMask.length !== B * Lk) {
      invalidArgument(
        context,
        'options.keyMask.length',
        `${B * Lk} (B*Lk = ${B}*${Lk})`,
        options.keyMask.length,
      );
    }
    keyMask = options.keyMask;
  }

  const bias = options.bias === undefined ? null : resolveBias(context, options.bias, shape);
  const alibiSlopes = perHeadVector(context, 'options.alibiSlopes', options.alibiSlopes, Hq);

  let softcap: number | null = null;
  if (options.softcap !== undefined) {
    const c = options.softcap;
    if (typeof c !== 'number' || !Number.isFinite(c) || c <= 0) {
      invalidArgument(context, 'options.softcap', 'a finite number > 0', c);
    }
    softcap = c;
  }
  const sinks = perHeadVector(context, 'options.sinks', options.sinks, Hq);
  const returnLse = optionalBoolean(context, 'options.returnLse', options.returnLse);
  const returnWeights = optionalBoolean(context, 'options.returnWeights', options.returnWeights);
  if (returnWeights) checkedProduct(context, 'weights', [B, Hq, Lq, Lk]);

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
  };
}

/**
 * Checks every argument of an attention call and returns the call with defaults resolved. Throws
 * {@link AttnkitError} (`invalid-argument`) naming the argument and the expected and actual values.
 * Pure: allocates nothing the size of a tensor and never touches a device.
 */
export function validateAttention(inputs: AttentionInputs, options: AttentionOptions = {}): AttentionProblem {
  const context = ATTENTION;
  if (!isPlainObject(inputs)) invalidArgument(context, 'inputs', 'an object { q, k, v, shape }', inputs);
  rejectUnknownKeys(context, 'inputs', inputs, new Set(['q', 'k', 'v', 'shape']));
  const shape = resolveShape(inputs.shape, context);
  const {
    batch: B,
    queryHeads: Hq,
    kvHeads: Hkv,
    queryLength: Lq,
    keyLength: Lk,
    headDim: D,
    valueDim: Dv,
  } = shape;

  const q = float32Tensor(
    context,
    'q',
    inputs.q,
    checkedProduct(context, 'q', [B, Hq, Lq, D]),
    `B*Hq*Lq*D = ${B}*${Hq}*${Lq}*${D}`,
  );
  // A decode call that forgets keyLength gets Lk = Lq: say so, or the expected length looks arbitrary.
  const lkDefaulted =
    inputs.shape.keyLength === undefined ? '; shape.keyLength defaults to shape.queryLength' : '';
  const k = float32Tensor(
    context,
    'k',
    inputs.k,
    checkedProduct(context, 'k', [B, Hkv, Lk, D]),
    `B*Hkv*Lk*D = ${B}*${Hkv}*${Lk}*${D}${lkDefaulted}`,
  );
  const v = float32Tensor(
    context,
    'v',
    inputs.v,
    checkedProduct(context, 'v', [B, Hkv, Lk, Dv]),
    `B*Hkv*Lk*Dv = ${B}*${Hkv}*${Lk}*${Dv}${lkDefaulted}`,
  );
  checkedProduct(context, 'output', [B, Hq, Lq, Dv]);

  return { q, k, v, shape, ...resolveOptions(options, shape, context) };
}

/** Checks a matmul call: `a [m, k] @ b [k, n] (+ bias [n])`. */
export function validateMatmul(inputs: MatmulInputs): MatmulProblem {
  const context = MATMUL;
  if (!isPlainObject(inputs)) invalidArgument(context, 'inputs', 'an object { a, b, shape, bias? }', inputs);
  rejectUnknownKeys(context, 'inputs', inputs, new Set(['a', 'b', 'bias', 'shape']));
  const shape = inputs.shape as unknown;
  if (!isPlainObject(shape)) invalidArgument(context, 'shape', 'an object { m, k, n }', shape);
  rejectUnknownKeys(context, 'shape', shape, new Set(['m', 'k', 'n']));
  const m = positiveInteger(context, 'shape.m', shape.m);
  const k = positiveInteger(context, 'shape.k', shape.k);
  const n = positiveInteger(context, 'shape.n', shape.n);
  checkedProduct(context, 'output', [m, n]);
  const a = float32Tensor(context, 'a', inputs.a, checkedProduct(context, 'a', [m, k]), `m*k = ${m}*${k}`);
  const b = float32Tensor(context, 'b', inputs.b, checkedProduct(context, 'b', [k, n]), `k*n = ${k}*${n}`);
  const bias = inputs.bias === undefined ? null : float32Tensor(context, 'bias', inputs.bias, n, `n = ${n}`);
  return { a, b, bias, shape: { m, k, n } };
}

export { describeValue };
