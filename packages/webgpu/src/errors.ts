import { AttnkitError } from '@attnkit/spec';
import type { DeviceState } from './state.js';

export const NAME = 'webgpu';

export function deviceError(message: string, cause?: unknown): AttnkitError {
  return new AttnkitError('device', message, {
    argument: 'device',
    expected: 'a working GPUDevice',
    actual: message,
    ...(cause !== undefined && { cause }),
  });
}

export function unsupported(
  argument: string,
  expected: string,
  actual: number | string,
  context = 'attention',
) {
  return new AttnkitError(
    'unsupported',
    `${context}: ${argument} must be ${expected} on backend "${NAME}", got ${actual}`,
    { argument, expected, actual: String(actual) },
  );
}

/**
 * Runs `encode` (which must not await) inside validation, out-of-memory and internal error scopes,
 * so a failure of this call is reported to this call even when calls overlap.
 */
export async function guarded<T>(s: DeviceState, context: string, encode: () => T): Promise<T> {
  const { device } = s;
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  device.pushErrorScope('internal');
  let result: T | undefined;
  let thrown: unknown = null;
  try {
    result = encode();
  } catch (error) {
    thrown = error ?? new Error('unknown');
  }
  const errors = await Promise.all([device.popErrorScope(), device.popErrorScope(), device.popErrorScope()]);
  if (thrown !== null) throw thrown;
  const kinds = ['internal', 'validation', 'out-of-memory'];
  for (let n = 0; n < errors.length; n++) {
    const error = errors[n];
    if (error) throw deviceError(`${context}: WebGPU ${kinds[n]} error: ${error.message}`, error);
  }
  return result as T;
}

/** Resolves with `work`, or rejects with `device` as soon as the device is lost. */
export function untilLost<T>(s: DeviceState, work: Promise<T>, context: string): Promise<T> {
  const lost = s.lostPromise.then((info): never => {
    throw deviceError(`${context}: the GPU device was lost (${info.reason}): ${info.message}`);
  });
  return Promise.race([work, lost]);
}
