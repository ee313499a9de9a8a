import { invalidArgument } from './errors.js';
import { typedArrayLength } from './typed.js';
import type { AttentionOptions, AttentionShape, MatmulShape, ResolvedShape } from './types.js';
import {
  float32Tensor,
  INPUT_KEYS,
  isFloat32Array,
  type ResolvedOptions,
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
  /** Float32 elements the tensor holds (its buffer may be larger). */
  readonly elements: number;
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
  /** Copies a validated array into a new tensor (release it when done). */
  upload(data: Float32Array): Promise<T>;
  /** Copies a validated tensor's `elements` back to the host. */
  read(tensor: T): Promise<Float32Array>;
  attention(problem: DeviceAttentionProblem<T>): Promise<DeviceAttentionResult<T>>;
  matmul(problem: DeviceMatmulProblem<T>): Promise<T>;
  /** Hands a tensor the backend returned back to it (a no-op for one it did not make). */
  release(tensor: T): void;
}

/** The device-resident calls the gate adds to an {@link AttentionBackend} whose implementation has them. */
export interface DeviceBackend<T extends DeviceTensor> {
  /** Copies a `Float32Array` into a new device tensor (release it when done). */
  upload(data: Float32Array): Promise<T>;
  /** Reads a device tensor's `elements` back. */
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
  context = 'attentionBuffers',
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
  return { q, k, v, shape, ...resolved, layout: layout as TensorLayout };
}

/** Checks a device matmul call by the host call's rules. */
export function validateDeviceMatmul<T extends DeviceTensor>(
  given: DeviceMatmulInputs<T>,
  check: DeviceImplementation<T>['checkTensor'],
  context = 'matmulBuffers',
): DeviceMatmulProblem<T> {
  return validateMatmulTensors(context, given, deviceTensorCheck(context, check, 'compute'));
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

/** Checks an `upload`: a real `Float32Array` (any length), returned as a plain view. */
export function validateUpload(data: unknown, context = 'upload'): Float32Array {
  if (!isFloat32Array(data)) invalidArgument(context, 'data', 'a Float32Array', data);
  return float32Tensor(context, 'data', data, typedArrayLength(data), 'its own length');
}
