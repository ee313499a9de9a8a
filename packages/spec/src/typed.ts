/**
 * The engine's own typed-array accessors, captured once. `Symbol.toStringTag`, `length`, `buffer` and
 * `byteOffset` can be overridden on a subclass or an instance (or faked on a plain object), but the
 * getters on `%TypedArray%.prototype` read the internal slots: they cannot be fooled, and they work on
 * arrays from another realm (a worker, an iframe) because every realm's typed arrays have the slots.
 */
const TYPED_ARRAY_PROTOTYPE: object = Object.getPrototypeOf(Uint8Array.prototype) as object;

function intrinsicGetter(key: PropertyKey): (this: unknown) => unknown {
  const getter = Object.getOwnPropertyDescriptor(TYPED_ARRAY_PROTOTYPE, key)?.get;
  if (getter === undefined) throw new Error(`%TypedArray%.prototype has no ${String(key)} getter`);
  return getter;
}

const tagGetter = intrinsicGetter(Symbol.toStringTag);
const lengthGetter = intrinsicGetter('length');
const bufferGetter = intrinsicGetter('buffer');
const byteOffsetGetter = intrinsicGetter('byteOffset');

/** The typed array's real kind (`'Float32Array'`, …), or `undefined` for anything that is not one. */
export function typedArrayTag(value: unknown): string | undefined {
  // the intrinsic getter returns undefined (never throws) for a value without the internal slot
  const tag: unknown = Reflect.apply(tagGetter, value, []);
  return typeof tag === 'string' ? tag : undefined;
}

/** The real element count of a typed array (0 once its buffer is detached). */
export function typedArrayLength(value: unknown): number {
  return Reflect.apply(lengthGetter, value, []) as number;
}

/** True when the typed array's buffer has been detached (transferred, or `postMessage`d away). */
export function isDetachedView(value: unknown): boolean {
  const buffer = Reflect.apply(bufferGetter, value, []) as ArrayBufferLike;
  if (typedArrayLength(value) !== 0) return false;
  if (typeof SharedArrayBuffer !== 'undefined' && buffer instanceof SharedArrayBuffer) return false;
  try {
    // Node 20 has no ArrayBuffer.prototype.detached; constructing a view on a detached buffer throws
    new Uint8Array(buffer);
    return false;
  } catch {
    return true;
  }
}

/**
 * A plain view of the same memory with the real length: what backends receive, so a subclass's
 * overridden accessors or methods never run inside a kernel or a copy.
 */
export function plainFloat32View(value: unknown): Float32Array {
  const buffer = Reflect.apply(bufferGetter, value, []) as ArrayBufferLike;
  const byteOffset = Reflect.apply(byteOffsetGetter, value, []) as number;
  return new Float32Array(buffer, byteOffset, typedArrayLength(value));
}

/** {@link plainFloat32View} for `Uint8Array`. */
export function plainUint8View(value: unknown): Uint8Array {
  const buffer = Reflect.apply(bufferGetter, value, []) as ArrayBufferLike;
  const byteOffset = Reflect.apply(byteOffsetGetter, value, []) as number;
  return new Uint8Array(buffer, byteOffset, typedArrayLength(value));
}
