import { describe, expect, it } from 'vitest';
import { bindGroupEntries, binding, bindingDeclarations } from '../src/bindings.js';

// A kernel's table: the uniform block, one read-only and one written storage buffer.
const TABLE = [
  binding('P', 'uniform', 'Params'),
  binding('A', 'read'),
  binding('OUT', 'read_write'),
] as const;

/** Only `size` of a GPUBuffer is read when the entries are made. */
const fakeBuffer = (size: number) => ({ size }) as unknown as GPUBuffer;

describe('binding tables', () => {
  it('number the WGSL declarations in table order', () => {
    expect(bindingDeclarations(TABLE)).toBe(
      [
        '@group(0) @binding(0) var<uniform> P: Params;',
        '@group(0) @binding(1) var<storage, read> A: array<f32>;',
        '@group(0) @binding(2) var<storage, read_write> OUT: array<f32>;',
      ].join('\n'),
    );
  });

  it('bind each storage buffer whole below the binding limit and up to the limit above it', () => {
    const uniform = { buffer: fakeBuffer(256), bytes: 48 };
    const small = fakeBuffer(1024);
    // A pooled size class above a limit that is not a power of two (2^30 - 4 here).
    const large = fakeBuffer(2 ** 30);
    const entries = bindGroupEntries(TABLE, uniform, { A: small, OUT: large }, 2 ** 30 - 4);
    expect(entries).toEqual([
      { binding: 0, resource: { buffer: uniform.buffer, size: 48 } },
      { binding: 1, resource: { buffer: small, size: 1024 } },
      { binding: 2, resource: { buffer: large, size: 2 ** 30 - 4 } },
    ]);
  });
});
