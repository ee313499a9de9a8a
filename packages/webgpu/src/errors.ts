import { AttnkitError, describeValue } from '@attnkit/spec';
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

/** The standard `invalid-argument` error: what was expected of `argument` and what came. */
export function invalidArgument(
  context: string,
  argument: string,
  expected: string,
  actual: unknown,
): AttnkitError {
  const text = describeValue(actual);
  return new AttnkitError('invalid-argument', `${context}: ${argument} must be ${expected}, got ${text}`, {
    argument,
    expected,
    actual: text,
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
 * so a failure of this call is reported to this call even when calls overlap. Every pooled buffer
 * `encode` acquired and still holds goes back to the pool when the call fails (a thrown error or a
 * GPU error in the scopes), so failing calls never grow device memory; on success they belong to
 * what `encode` returned. `encode` runs before this function first awaits, i.e. in the caller's tick.
 */
export async function guarded<T>(s: DeviceState, context: string, encode: () => T): Promise<T> {
  const { device, pool } = s;
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  device.pushErrorScope('internal');
  let collected: { value: T; held: GPUBuffer[] } | undefined;
  let thrown: unknown = null;
  try {
    collected = pool.collect(encode);
  } catch (error) {
    thrown = error ?? new Error('unknown');
  }
  const errors = await Promise.all([device.popErrorScope(), device.popErrorScope(), device.popErrorScope()]);
  if (thrown !== null) throw thrown;
  const kinds = ['internal', 'validation', 'out-of-memory'];
  for (let n = 0; n < errors.length; n++) {
    const error = errors[n];
    if (error) {
      // Submitted work is ordered before any later use of these buffers, so they can be reused.
      for (const buffer of collected?.held ?? []) pool.release(buffer);
      throw deviceError(`${context}: WebGPU ${kinds[n]} error: ${error.message}`, error);
    }
  }
  return (collected as { value: T }).value;
}

/** Resolves with `work`, or rejects with `device` as soon as the device is lost. */
export function untilLost<T>(s: DeviceState, work: Promise<T>, context: string): Promise<T> {
  const lost = s.lostPromise.then((info): never => {
    throw deviceError(`${context}: the GPU device was lost (${info.reason}): ${info.message}`);
  });
  return Promise.race([work, lost]);
}
