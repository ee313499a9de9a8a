import { AttnkitError, checkDtype, type DeviceDtype, type TensorUse } from '@attnkit/spec';
import { deviceError, invalidArgument, untilLost } from './errors.js';
import { packedWords } from './f16.js';
import { MAP_READ_MODE, STORAGE_USAGE, Usage } from './pool.js';
import type { DeviceState } from './state.js';
import type { GpuTensor } from './types.js';

export interface Staged {
  buffer: GPUBuffer;
  bytes: number;
}

function isGpuBuffer(value: unknown): value is GPUBuffer {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as GPUBuffer).size === 'number' &&
    typeof (value as GPUBuffer).usage === 'number' &&
    typeof (value as GPUBuffer).destroy === 'function'
  );
}

/**
 * Checks a caller's buffer before anything is acquired: a GPUBuffer with STORAGE (and `extraUsage`,
 * e.g. COPY_SRC to be read back) in its usage, unmapped, and large enough. What the device would
 * only report as a validation error is the caller's argument, so it is `invalid-argument` naming it.
 */
export function checkBuffer(
  context: string,
  argument: string,
  value: unknown,
  needed: { bytes: number; holding: string },
  extraUsage = 0,
): GPUBuffer {
  if (!isGpuBuffer(value)) throw invalidArgument(context, argument, 'a GPUBuffer', value);
  const wanted = Usage.STORAGE | extraUsage;
  if ((value.usage & wanted) !== wanted) {
    const names = Object.entries(Usage)
      .filter(([, bit]) => (wanted & bit) !== 0)
      .map(([name, bit]) => `${name} (0x${bit.toString(16)})`)
      .join(' and ');
    throw new AttnkitError(
      'invalid-argument',
      `${context}: ${argument}.usage must include ${names}, got 0x${value.usage.toString(16)}`,
      { argument: `${argument}.usage`, expected: `${names} set`, actual: `0x${value.usage.toString(16)}` },
    );
  }
  // Absent on some implementations; where present, a mapped (or mapping) buffer cannot be submitted.
  const mapState: unknown = (value as { mapState?: unknown }).mapState;
  if (mapState !== undefined && mapState !== 'unmapped')
    throw invalidArgument(context, `${argument}.mapState`, '"unmapped" (unmap the buffer first)', mapState);
  if (value.size < needed.bytes) {
    throw new AttnkitError(
      'invalid-argument',
      `${context}: ${argument}.size must be at least ${needed.bytes} bytes (${needed.holding}), got ${value.size}`,
      {
        argument: `${argument}.size`,
        expected: `at least ${needed.bytes} bytes`,
        actual: String(value.size),
      },
    );
  }
  return value;
}

/**
 * The device gate's check of a {@link GpuTensor} (`DeviceImplementation.checkTensor`): an object
 * `{ buffer, elements, dtype? }` whose buffer {@link checkBuffer} accepts for `elements` values of
 * its dtype ({@link tensorBytes}; bound in a kernel; `read` also needs COPY_SRC). Each field is read
 * once, into a fresh handle, so a getter cannot hand the check one buffer and the kernel another.
 * The gate then compares `elements` with the shape and the dtype with the call.
 */
export function checkGpuTensor(context: string, argument: string, value: unknown, use: TensorUse): GpuTensor {
  if (typeof value !== 'object' || value === null)
    throw invalidArgument(context, argument, 'a GpuTensor { buffer, elements, dtype? }', value);
  const { buffer, elements, dtype: given } = value as Record<string, unknown>;
  if (typeof elements !== 'number' || !Number.isInteger(elements) || elements < 0)
    throw invalidArgument(context, `${argument}.elements`, 'an integer >= 0', elements);
  const dtype = checkDtype(context, `${argument}.dtype`, given);
  const checked = checkBuffer(
    context,
    `${argument}.buffer`,
    buffer,
    { bytes: tensorBytes(elements, dtype), holding: `${elements} ${dtype} values` },
    use === 'read' ? Usage.COPY_SRC : 0,
  );
  return { buffer: checked, elements, ...(given !== undefined && { dtype }) };
}

/**
 * Bytes a tensor of `elements` values occupies: 4 each as float32; as float16, binary16 pairs in
 * 32-bit words (value `2w` in the low half of word `w`, as WGSL `unpack2x16float` reads them), the
 * last word padded when `elements` is odd.
 */
export function tensorBytes(elements: number, dtype: DeviceDtype): number {
  return dtype === 'float16' ? packedWords(elements) * 4 : elements * 4;
}

function isShared(buffer: ArrayBufferLike): boolean {
  return Object.prototype.toString.call(buffer) === '[object SharedArrayBuffer]';
}

/**
 * Copies `data` into a new pooled buffer now (`writeBuffer` copies at call time, so the caller may
 * reuse the array as soon as this returns).
 */
export function uploadFloats(s: DeviceState, data: Float32Array): GPUBuffer {
  return uploadConcatenated(s, [data]);
}

/**
 * Copies `parts` one after another into a new pooled buffer now (one binding for several tensors:
 * the backward binds q with gradOutput and k with v to stay within eight storage buffers a stage).
 */
export function uploadConcatenated(
  s: DeviceState,
  parts: readonly Float32Array[],
  extraBytes = 0,
): GPUBuffer {
  const { pool } = s;
  const total = parts.reduce((n, part) => n + part.byteLength, 0) + extraBytes;
  const buffer = pool.acquire(Math.max(4, total), STORAGE_USAGE);
  let offset = 0;
  for (const data of parts) {
    writeFloats(s, buffer, offset, data);
    offset += data.byteLength;
  }
  return buffer;
}

/**
 * Writes `data` into `buffer` at byte `offset` now (the one counted host -> device path for tensor
 * data). Dawn's writeBuffer rejects SharedArrayBuffer memory (TypeError), and a browser's may too:
 * such a view is copied into ordinary memory first (the values are the same).
 */
export function writeFloats(s: DeviceState, buffer: GPUBuffer, offset: number, data: Float32Array): void {
  if (data.byteLength === 0) return;
  const source = isShared(data.buffer) ? new Float32Array(data) : data;
  s.device.queue.writeBuffer(buffer, offset, source.buffer, source.byteOffset, source.byteLength);
  count(s, source.byteLength);
}

/** {@link writeFloats} for 32-bit words (packed f16 pairs). */
export function writeWords(s: DeviceState, buffer: GPUBuffer, offset: number, data: Uint32Array): void {
  if (data.byteLength === 0) return;
  s.device.queue.writeBuffer(buffer, offset, data.buffer, data.byteOffset, data.byteLength);
  count(s, data.byteLength);
}

/** Copies `data` (32-bit words: packed f16 pairs) into a new pooled buffer now, as {@link uploadFloats}. */
export function uploadWords(s: DeviceState, data: Uint32Array): GPUBuffer {
  const buffer = s.pool.acquire(Math.max(4, data.byteLength), STORAGE_USAGE);
  writeWords(s, buffer, 0, data);
  return buffer;
}

function count(s: DeviceState, bytes: number): void {
  s.transfers.uploadBytes += bytes;
  s.transfers.uploads += 1;
}

export function uploadBytes(s: DeviceState, data: Uint8Array): GPUBuffer {
  const { device, pool } = s;
  // writeBuffer wants a multiple of 4 bytes; the shader reads the mask as packed u32 words.
  const padded = new Uint8Array(Math.ceil(Math.max(4, data.byteLength) / 4) * 4);
  padded.set(data);
  const buffer = pool.acquire(padded.byteLength, STORAGE_USAGE);
  device.queue.writeBuffer(buffer, 0, padded.buffer, 0, padded.byteLength);
  count(s, padded.byteLength);
  return buffer;
}

export function uploadUniform(s: DeviceState, words: ArrayBuffer): GPUBuffer {
  const { device, pool } = s;
  const buffer = pool.acquire(words.byteLength, Usage.UNIFORM | Usage.COPY_DST);
  device.queue.writeBuffer(buffer, 0, words);
  count(s, words.byteLength);
  return buffer;
}

/** Maps staging buffers filled by an already submitted command buffer and copies them out. */
export async function readStaging(
  s: DeviceState,
  context: string,
  staging: Staged[],
): Promise<Float32Array[]> {
  const { pool } = s;
  try {
    await untilLost(
      s,
      Promise.all(staging.map((st) => st.buffer.mapAsync(MAP_READ_MODE, 0, st.bytes))),
      context,
    );
    return staging.map((st) => {
      s.transfers.downloadBytes += st.bytes;
      s.transfers.downloads += 1;
      return new Float32Array(st.buffer.getMappedRange(0, st.bytes).slice(0));
    });
  } catch (error) {
    if (error instanceof AttnkitError) throw error;
    throw deviceError(`${context}: reading results back failed: ${String(error)}`, error);
  } finally {
    for (const st of staging) {
      if (st.buffer.mapState === 'mapped') st.buffer.unmap();
      if (st.buffer.mapState === 'unmapped') pool.release(st.buffer);
    }
  }
}

export function copyToStaging(
  s: DeviceState,
  encoder: GPUCommandEncoder,
  source: GPUBuffer,
  bytes: number,
): Staged {
  const { pool } = s;
  const buffer = pool.acquire(bytes, Usage.MAP_READ | Usage.COPY_DST);
  encoder.copyBufferToBuffer(source, 0, buffer, 0, bytes);
  return { buffer, bytes };
}
