/**
 * The kernel's linear memory as the loader uses it: a bump arena laid out afresh by every call,
 * growth with a clear error, and row copies that add or drop the kernel's 4-float padding.
 */
import { AttnkitError } from '@attnkit/spec';

export const PAGE = 65536;
/** A wasm32 memory holds at most 4 GiB. */
export const MAX_MEMORY_BYTES = 65536 * PAGE;

export const align = (n: number, to: number) => Math.ceil(n / to) * to;
export const round4 = (n: number) => align(n, 4);

/**
 * Grows `memory` so that byte `end` is addressable. A refused grow leaves the memory as it was, so
 * the backend stays usable for calls that fit.
 */
export function grow(memory: WebAssembly.Memory, end: number, what: string): void {
  const have = memory.buffer.byteLength;
  if (end <= have) return;
  try {
    memory.grow(Math.ceil((end - have) / PAGE));
  } catch (error) {
    throw new AttnkitError(
      'unavailable',
      `wasm: cannot grow memory from ${have} to ${end} bytes for ${what}: ${String(error)}`,
      { argument: what, expected: `${end} bytes of wasm memory`, actual: `${have} bytes`, cause: error },
    );
  }
}

/** A bump allocator over the kernel memory, reset every call (so buffers are reused, never freed). */
export class Arena {
  end: number;
  constructor(base: number) {
    this.end = base;
  }
  take(bytes: number): number {
    const at = align(this.end, 64);
    this.end = at + bytes;
    return at;
  }
}

export function tooBig(what: string, bytes: number): never {
  throw new AttnkitError(
    'unsupported',
    `wasm: ${what} needs ${bytes} bytes of wasm memory, more than a wasm32 memory holds (${MAX_MEMORY_BYTES})`,
    {
      argument: 'shape',
      expected: `a problem whose tensors fit in ${MAX_MEMORY_BYTES} bytes`,
      actual: `${bytes} bytes`,
    },
  );
}

/** Copies `rows` rows of `cols` floats into rows of `stride` floats (zero padding after each). */
export function copyPadded(
  heap: Float32Array,
  at: number,
  source: Float32Array,
  rows: number,
  cols: number,
  stride: number,
) {
  const start = at >>> 2;
  if (cols === stride) {
    heap.set(source, start);
    return;
  }
  heap.fill(0, start, start + rows * stride);
  for (let r = 0; r < rows; r++) heap.set(source.subarray(r * cols, (r + 1) * cols), start + r * stride);
}

/** The inverse of {@link copyPadded}: a new array of `rows` rows of `cols` floats. */
export function copyUnpadded(
  heap: Float32Array,
  at: number,
  rows: number,
  cols: number,
  stride: number,
): Float32Array {
  const start = at >>> 2;
  if (cols === stride) return heap.slice(start, start + rows * cols);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++)
    out.set(heap.subarray(start + r * stride, start + r * stride + cols), r * cols);
  return out;
}
