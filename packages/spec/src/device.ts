import { invalidArgument } from './errors.js';
import { typedArrayLength } from './typed.js';
import type { AttentionOptions, AttentionShape, MatmulShape, ResolvedShape } from './types.js';
import {
  checkF16Range,
  DEVICE_ATTENTION,
  float32Tensor,
  INPUT_KEYS,
  isFloat32Array,
  type ResolvedOptions,
  readOnce,
  type TensorCheck,
  validateAttentionTensors,
  validateMatmulTensors,
} from './validate.js';

/**
 * A tensor that lives on a backend's device, as a handle the backend defines (webgpu: a `GPUBuffer`
 * and its element count). The gate validates it exactly as it validates a `Float32Array`: the
 * backend recognises its own handle and checks it is usable ({@link DeviceImplementation.checkTensor}),
 * then the gate compares `elements` with the length the shape implies, so a device call's errors
 * name the same arguments with the same expected lengths as a host call's.
 */
export interface DeviceTensor {
  /** Values the tensor holds, each of its {@link dtype} (its buffer may be larger). */
  readonly elements: number;
  /**
   * How the values are stored: `'float32'` (the default when absent) or `'float16'` (binary16, what
   * `attentionBuffers` reads with `precision: 'f16-storage'`, half the bytes; the backend needs the
   * `deviceF16Storage` feature). How a backend lays binary16 values out in its memory is its own.
   */
  readonly dtype?: DeviceDtype;
}

/** How a {@link DeviceTensor} stores its values. */
export type DeviceDtype = 'float32' | 'float16';

/** Every {@link DeviceDtype}, in the order an error message lists them. */
export const DEVICE_DTYPES: readonly DeviceDtype[] = ['float32', 'float16'];

/** A device tensor's dtype, `'float32'` when it names none. */
export function dtypeOf(tensor: DeviceTensor): DeviceDtype {
  return tensor.dtype ?? 'float32';
}

/**
 * Checks a handle's `dtype` field (absent, `'float32'` or `'float16'`) and returns it resolved; for a
 * backend's {@link DeviceImplementation.checkTensor}, which needs the dtype to size the buffer.
 */
export function checkDtype(context: string, argument: string, dtype: unknown): DeviceDtype {
  if (dtype === undefined) return 'float32';
  if (!DEVICE_DTYPES.includes(dtype as DeviceDtype))
    invalidArgument(context, argument, DEVICE_DTYPES.map((d) => `'${d}'`).join(' or '), dtype);
  return dtype as DeviceDtype;
}

/** Options of `upload`. */
export interface UploadOptions {
  /**
   * How the new tensor stores the values: `'float32'` (default) as given, or `'float16'` rounded to
   * the nearest binary16 value, ties to even (a finite value binary16 would round to infinity,
   * `|x| >= 65520`, is rejected, as `precision: 'f16-storage'` rejects it).
   */
  dtype?: DeviceDtype;
}

/** A validated `upload`: a plain view of the data and the dtype to store it as. */
export interface UploadRequest {
  data: Float32Array;
  dtype: DeviceDtype;
}

/**
 * Memory layout of a device call's q/k/v and output. `bhld` is the spec's `[B, H, L, D]`; `blhd` is
 * `[B, L, H, D]`, what a projection `[B*L, H*D]` produces, so a matmul's output feeds attention (and
 * attention's output feeds the output projection) without a transpose.
 */
export type TensorLayout = 'bhld' | 'blhd';

/** Every {@link TensorLayout}. */
export const TENSOR_LAYOUTS: readonly TensorLayout[] = ['bhld', 'blhd'];

/** Device-resident attention inputs: handles made by (or for) this backend's device. */
export interface DeviceAttentionInputs<T extends DeviceTensor> {
  q: T;
  k: T;
  v: T;
  shape: AttentionShape;
  /** Layout of q, k, v and the returned output. Default `bhld`. */
  layout?: TensorLayout;
}

/** Device-resident attention results: handles that belong to the backend (release them when done). */
export interface DeviceAttentionResult<T extends DeviceTensor> {
  output: T;
  lse?: T;
  weights?: T;
}

/** Device-resident matmul inputs: `a [m, k] @ b [k, n] (+ bias [n])`. */
export interface DeviceMatmulInputs<T extends DeviceTensor> {
  a: T;
  b: T;
  bias?: T;
  shape: MatmulShape;
}

/** A validated device attention call: the same resolved options as an {@link AttentionProblem}. */
export interface DeviceAttentionProblem<T extends DeviceTensor> extends ResolvedOptions {
  q: T;
  k: T;
  v: T;
  shape: ResolvedShape;
  layout: TensorLayout;
}

/** A validated device matmul. */
export interface DeviceMatmulProblem<T extends DeviceTensor> {
  a: T;
  b: T;
  bias: T | null;
  shape: MatmulShape;
}

/** What a tensor is about to be used for: bound in a kernel, or copied back to the host. */
export type TensorUse = 'compute' | 'read';

/**
 * The device-resident half of a {@link BackendImplementation}: what a backend with its own memory
 * (a GPU) writes so that calls chain on the device. The gate validates, checks capabilities,
 * initialises, tracks and rejects after dispose, exactly as for the host calls.
 */
export interface DeviceImplementation<T extends DeviceTensor> {
  /**
   * Recognises this backend's handle and checks that it can be used for `use` (its buffer's usage,
   * not mapped, large enough for `elements`); returns it, or throws `invalid-argument` naming
   * `argument` (or one of its fields). Pure: touches no device and needs no init.
   */
  checkTensor(context: string, argument: string, value: unknown, use: TensorUse): T;
  /**
   * Copies a validated array into a new tensor of `dtype` (release it when done); `'float16'` only
   * when the capabilities list `deviceF16Storage`.
   */
  upload(data: Float32Array, dtype: DeviceDtype): Promise<T>;
  /** Copies a validated tensor's `elements` back to the host (float16 values widened exactly). */
  read(tensor: T): Promise<Float32Array>;
  attention(problem: DeviceAttentionProblem<T>): Promise<DeviceAttentionResult<T>>;
  matmul(problem: DeviceMatmulProblem<T>): Promise<T>;
  /** Hands a tensor the backend returned back to it (a no-op for one it did not make). */
  release(tensor: T): void;
}

/** The device-resident calls the gate adds to an {@link AttentionBackend} whose implementation has them. */
export interface DeviceBackend<T extends DeviceTensor> {
  /**
   * Copies a `Float32Array` into a new device tensor (release it when done); `{ dtype: 'float16' }`
   * stores it as binary16, for `attentionBuffers` with `precision: 'f16-storage'`.
   */
  upload(data: Float32Array, options?: UploadOptions): Promise<T>;
  /** Reads a device tensor's `elements` back (a float16 tensor's values widened to float32, exactly). */
  read(tensor: T): Promise<Float32Array>;
  /** Attention on tensors already on the device; nothing is read back. */
  attentionBuffers(
    inputs: DeviceAttentionInputs<T>,
    options?: AttentionOptions,
  ): Promise<DeviceAttentionResult<T>>;
  /** `a @ b (+ bias)` on device tensors; returns a backend tensor. */
  matmulBuffers(inputs: DeviceMatmulInputs<T>): Promise<T>;
  /** Hands a tensor returned by this backend back to it. */
  release(tensor: T): void;
}

const DEVICE_INPUT_KEYS: ReadonlySet<string> = new Set([...INPUT_KEYS, 'layout']);

/**
 * The gate's check of one device tensor: the backend's own check of the handle, then its element
 * count against the shape, as {@link float32Tensor} does for an array's length.
 */
export function deviceTensorCheck<T extends DeviceTensor>(
  context: string,
  check: DeviceImplementation<T>['checkTensor'],
  use: TensorUse,
): TensorCheck<T> {
  return (argument, value, length, formula) => {
    const tensor = check(context, argument, value, use);
    checkDtype(context, `${argument}.dtype`, tensor.dtype);
    const elements: unknown = tensor.elements;
    if (elements !== length)
      invalidArgument(context, `${argument}.elements`, `${length} (${formula})`, elements);
    return tensor;
  };
}

/**
 * Checks a device attention call by the host call's rules (shape, q/k/v lengths from their element
 * counts, options) plus `layout`. The float32 range rule on `q`/`k` (which needs their values) is
 * not checked: the values are on the device (spec README, "Float32 range").
 */
export function validateDeviceAttention<T extends DeviceTensor>(
  given: DeviceAttentionInputs<T>,
  options: AttentionOptions | undefined,
  check: DeviceImplementation<T>['checkTensor'],
  context = DEVICE_ATTENTION,
): DeviceAttentionProblem<T> {
  const { q, k, v, shape, resolved, inputs } = validateAttentionTensors(
    context,
    given,
    options ?? {},
    DEVICE_INPUT_KEYS,
    deviceTensorCheck(context, check, 'compute'),
  );
  const layout = inputs.layout ?? 'bhld';
  if (!TENSOR_LAYOUTS.includes(layout as TensorLayout))
    invalidArgument(context, 'layout', TENSOR_LAYOUTS.map((l) => `"${l}"`).join(' or '), layout);
  // The storage precision names what q, k and v are: no conversion happens on the device.
  const qkv = [
    ['q', q],
    ['k', k],
    ['v', v],
  ] as const;
  if (resolved.precision === 'f16-storage')
    requireDtype(
      context,
      qkv,
      'float16',
      "options.precision 'f16-storage' reads binary16 tensors: upload with { dtype: 'float16' }",
    );
  else requireDtype(context, qkv, 'float32', "a float16 tensor needs options.precision 'f16-storage'");
  return { q, k, v, shape, ...resolved, layout: layout as TensorLayout };
}

/** Checks a device matmul call by the host call's rules. */
export function validateDeviceMatmul<T extends DeviceTensor>(
  given: DeviceMatmulInputs<T>,
  check: DeviceImplementation<T>['checkTensor'],
  context = 'matmulBuffers',
): DeviceMatmulProblem<T> {
  const problem = validateMatmulTensors(context, given, deviceTensorCheck(context, check, 'compute'));
  const tensors = [
    ['a', problem.a],
    ['b', problem.b],
    ['bias', problem.bias],
  ] as const;
  requireDtype(context, tensors, 'float32', 'the matmul reads float32 tensors');
  return problem;
}

/** Throws `invalid-argument` naming `<argument>.dtype` for the first present tensor not of `wanted`. */
function requireDtype(
  context: string,
  tensors: readonly (readonly [string, DeviceTensor | null])[],
  wanted: DeviceDtype,
  why: string,
): void {
  for (const [argument, tensor] of tensors) {
    if (tensor !== null && dtypeOf(tensor) !== wanted)
      invalidArgument(context, `${argument}.dtype`, `'${wanted}' (${why})`, dtypeOf(tensor));
  }
}

/** Checks a `read`: a tensor of this backend that can be copied back. */
export function validateDeviceRead<T extends DeviceTensor>(
  value: unknown,
  check: DeviceImplementation<T>['checkTensor'],
  context = 'read',
): T {
  const tensor = check(context, 'tensor', value, 'read');
  const elements: unknown = tensor.elements;
  if (typeof elements !== 'number' || !Number.isInteger(elements) || elements < 0)
    invalidArgument(context, 'tensor.elements', 'an integer >= 0', elements);
  return tensor;
}

/**
 * Checks an `upload`: a real `Float32Array` (any length), returned as a plain view, and its options;
 * a float16 upload's finite values must be below binary16's rounding-to-infinity threshold.
 */
export function validateUpload(data: unknown, options?: unknown, context = 'upload'): UploadRequest {
  if (!isFloat32Array(data)) invalidArgument(context, 'data', 'a Float32Array', data);
  const view = float32Tensor(context, 'data', data, typedArrayLength(data), 'its own length');
  if (options === undefined) return { data: view, dtype: 'float32' };
  const fields = readOnce(context, 'options', options, UPLOAD_OPTION_KEYS, 'an object { dtype? }');
  const dtype = checkDtype(context, 'options.dtype', fields.dtype);
  if (dtype === 'float16') checkF16Range(context, [['data', view]]);
  return { data: view, dtype };
}

const UPLOAD_OPTION_KEYS: ReadonlySet<string> = new Set(['dtype']);
