import { typedArrayLength, typedArrayTag } from './typed.js';

/**
 * What went wrong, machine-readable. `invalid-argument` and `unsupported` are thrown before any work
 * starts; `unavailable` means a backend cannot run on this machine (with the reason in the message);
 * `disposed` means the backend was used after `dispose()`; `device` wraps a failure reported by a GPU
 * or worker while work was running.
 */
export type AttnkitErrorCode = 'invalid-argument' | 'unsupported' | 'unavailable' | 'disposed' | 'device';

/** Details attached to an {@link AttnkitError}. */
export interface AttnkitErrorDetails {
  /** The argument at fault, as a path: `"q"`, `"options.bias.shape[2]"`, `"shape.kvHeads"`. */
  argument?: string;
  /** What the argument should have been, in words or as a value. */
  expected?: string;
  /** What it was. */
  actual?: string;
  /** The error that caused this one (a GPU validation error, a worker crash). */
  cause?: unknown;
}

/**
 * The one error class every attnkit package throws. Its message always names the argument and the
 * expected and actual values when the fault is in the caller's input, so a failure reads like
 * `attention: options.slidingWindow must be an integer >= 1, got 0`.
 */
export class AttnkitError extends Error {
  readonly code: AttnkitErrorCode;
  readonly argument: string | undefined;
  readonly expected: string | undefined;
  readonly actual: string | undefined;

  constructor(code: AttnkitErrorCode, message: string, details: AttnkitErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'AttnkitError';
    this.code = code;
    this.argument = details.argument;
    this.expected = details.expected;
    this.actual = details.actual;
  }
}

/** Type guard that also works across realms and duplicated package copies (checks `name` and `code`). */
export function isAttnkitError(error: unknown): error is AttnkitError {
  return (
    error instanceof AttnkitError ||
    (error instanceof Error &&
      error.name === 'AttnkitError' &&
      typeof (error as { code?: unknown }).code === 'string')
  );
}

/** Renders a value for an error message: short, unambiguous, never the whole of a big array. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  const tag = typedArrayTag(value);
  if (tag !== undefined) {
    // the real length, not a subclass's `length` getter (which may lie)
    return `${tag}(length ${typedArrayLength(value)})`;
  }
  if (ArrayBuffer.isView(value)) return 'DataView';
  if (Array.isArray(value)) {
    return value.length <= 8 ? `[${value.map(describeValue).join(', ')}]` : `Array(length ${value.length})`;
  }
  if (typeof value === 'function') return 'a function';
  return `an object (${Object.prototype.toString.call(value).slice(8, -1)})`;
}

/** Throws the standard `invalid-argument` error. */
export function invalidArgument(context: string, argument: string, expected: string, actual: unknown): never {
  const actualText = describeValue(actual);
  throw new AttnkitError(
    'invalid-argument',
    `${context}: ${argument} must be ${expected}, got ${actualText}`,
    {
      argument,
      expected,
      actual: actualText,
    },
  );
}

/**
 * Runs an allocation of `bytes` bytes for `what`; an engine refusal (`RangeError: Array buffer
 * allocation failed`, `Invalid typed array length`, a failed `memory.grow`) becomes an `unavailable`
 * error naming what and how much, instead of a raw RangeError from deep inside a kernel. Nothing else
 * is changed, so the backend stays usable: the next call that fits in memory runs normally.
 */
export function allocating<T>(context: string, what: string, bytes: number, allocate: () => T): T {
  try {
    return allocate();
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    throw new AttnkitError(
      'unavailable',
      `${context}: cannot allocate ${what} (${bytes} bytes): ${error.message}`,
      { argument: what, expected: `${bytes} bytes of memory`, actual: 'allocation failed', cause: error },
    );
  }
}
