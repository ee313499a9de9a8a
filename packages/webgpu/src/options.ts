import { invalidArgument } from './errors.js';
import type { WebGpuBackendOptions } from './types.js';

// A local check of createWebGpuBackend's options, so a wrong option fails at the factory with an
// AttnkitError naming it instead of a TypeError (or a silently ignored typo) at init. To be replaced
// by the spec's factory-option validator once it exists.

const CONTEXT = 'createWebGpuBackend';

type Check = (value: unknown) => string | null;

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const hasMethods = (value: unknown, names: readonly string[]): boolean =>
  isObject(value) && names.every((name) => typeof value[name] === 'function');

/** Each known option: what it must be (as the error's `expected`), or null when the value fits. */
const OPTIONS: Record<keyof Required<WebGpuBackendOptions>, Check> = {
  // Duck-typed (not instanceof GPUDevice): Dawn's and a browser's classes differ, and so may realms.
  device: (v) =>
    hasMethods(v, ['createBuffer', 'createCommandEncoder', 'pushErrorScope', 'popErrorScope']) &&
    isObject((v as Record<string, unknown>).queue) &&
    isObject((v as Record<string, unknown>).limits)
      ? null
      : 'a GPUDevice',
  gpu: (v) => (hasMethods(v, ['requestAdapter']) ? null : 'a GPU object (with requestAdapter)'),
  adapterOptions: (v) => (isObject(v) ? null : 'a GPURequestAdapterOptions object'),
  nodeWebgpuModule: (v) =>
    typeof v === 'function' || hasMethods(v, ['create'])
      ? null
      : 'the "webgpu" module (with create) or a function that loads it',
  dawnFlags: (v) =>
    Array.isArray(v) && v.every((flag) => typeof flag === 'string') ? null : 'an array of strings',
  workgroupSize: (v) =>
    typeof v === 'number' && Number.isInteger(v) && v >= 1 ? null : 'a positive integer',
};

/** Returns the options (an empty object when absent), or throws `invalid-argument` naming the option. */
export function checkFactoryOptions(options: unknown): WebGpuBackendOptions {
  if (options === undefined) return {};
  if (!isObject(options)) throw invalidArgument(CONTEXT, 'options', 'an object or undefined', options);
  const known = Object.keys(OPTIONS);
  for (const [key, value] of Object.entries(options)) {
    const check = (OPTIONS as Record<string, Check | undefined>)[key];
    if (check === undefined)
      throw invalidArgument(CONTEXT, `options.${key}`, `absent (known options: ${known.join(', ')})`, value);
    // An explicit undefined is the same as leaving the option out.
    if (value === undefined) continue;
    const expected = check(value);
    if (expected !== null) throw invalidArgument(CONTEXT, `options.${key}`, expected, value);
  }
  // A copy: the backend reads its options at init, after the caller may have changed the object.
  return { ...options } as WebGpuBackendOptions;
}
