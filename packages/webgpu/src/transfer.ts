import { AttnkitError, describeValue } from '@attnkit/spec';
import { deviceError, untilLost } from './errors.js';
import { MAP_READ_MODE, STORAGE_USAGE, Usage } from './pool.js';
import type { DeviceState } from './state.js';

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

export function checkBuffer(context: string, argument: string, value: unknown, elements: number): GPUBuffer {
  if (!isGpuBuffer(value)) {
    throw new AttnkitError(
      'invalid-argument',
      `${context}: ${argument} must be a GPUBuffer, got ${describeValue(value)}`,
      { argument, expected: 'a GPUBuffer', actual: describeValue(value) },
    );
  }
  if ((value.usage & Usage.STORAGE) === 0) {
    throw new AttnkitError(
      'invalid-argument',
      `${context}: ${argument}.usage must include STORAGE (0x80), got 0x${value.usage.toString(16)}`,
      { argument: `${argument}.usage`, expected: 'STORAGE bit set', actual: `0x${value.usage.toString(16)}` },
    );
  }
  if (value.size < elements * 4) {
    throw new AttnkitError(
      'invalid-argument',
      `${context}: ${argument}.size must be at least ${elements * 4} bytes (${elements} floats), got ${value.size}`,
      {
        argument: `${argument}.size`,
        expected: `at least ${elements * 4} bytes`,
        actual: String(value.size),
      },
    );
  }
  return value;
}

export function uploadFloats(s: DeviceState, data: Float32Array): GPUBuffer {
  const { device, pool } = s;
  const buffer = pool.acquire(Math.max(4, data.byteLength), STORAGE_USAGE);
  if (data.byteLength > 0) device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  return buffer;
}

export function uploadBytes(s: DeviceState, data: Uint8Array): GPUBuffer {
  const { device, pool } = s;
  // writeBuffer wants a multiple of 4 bytes; the shader reads the mask as packed u32 words.
  const padded = new Uint8Array(Math.ceil(Math.max(4, data.byteLength) / 4) * 4);
  padded.set(data);
  const buffer = pool.acquire(padded.byteLength, STORAGE_USAGE);
  device.queue.writeBuffer(buffer, 0, padded.buffer, 0, padded.byteLength);
  return buffer;
}

export function uploadUniform(s: DeviceState, words: ArrayBuffer): GPUBuffer {
  const { device, pool } = s;
  const buffer = pool.acquire(words.byteLength, Usage.UNIFORM | Usage.COPY_DST);
  device.queue.writeBuffer(buffer, 0, words);
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
    return staging.map((st) => new Float32Array(st.buffer.getMappedRange(0, st.bytes).slice(0)));
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
