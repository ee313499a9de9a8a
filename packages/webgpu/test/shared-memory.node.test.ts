import { type AttentionShape, referenceMatmulInputs64 } from '@attnkit/spec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WebGpuBackend } from '../src/index.js';
import { expectClose, expectMatchesReference, inputsFor, newBackend, random } from './helpers.js';

// Node only: a browser page has SharedArrayBuffer only when cross-origin isolated, which the vitest
// browser page is not. The upload path is the same code in both.

let backend: WebGpuBackend;

beforeAll(async () => {
  backend = newBackend();
  await backend.init();
});

afterAll(async () => {
  await backend.dispose();
});

function shared(array: Float32Array): Float32Array {
  // An offset view, so the copy must honour byteOffset as well as the shared backing store.
  const view = new Float32Array(new SharedArrayBuffer(array.byteLength + 8), 8, array.length);
  view.set(array);
  return view;
}

describe('SharedArrayBuffer-backed inputs', () => {
  const shape: AttentionShape = {
    batch: 1,
    queryHeads: 2,
    kvHeads: 1,
    queryLength: 5,
    keyLength: 7,
    headDim: 4,
  };

  it('attention with shared q, k, v and a shared bias matches the float64 reference', async () => {
    const inputs = inputsFor(shape, 21);
    const bias = { data: shared(random(5 * 7, 22)), shape: [1, 1, 5, 7] as [number, number, number, number] };
    const sharedInputs = { ...inputs, q: shared(inputs.q), k: shared(inputs.k), v: shared(inputs.v) };
    await expectMatchesReference(backend, sharedInputs, { bias, causal: true, returnLse: true });
  });

  it('matmul and upload accept shared arrays', async () => {
    const inputs = {
      a: shared(random(12, 23)),
      b: shared(random(20, 24)),
      bias: shared(random(5, 25)),
      shape: { m: 3, k: 4, n: 5 },
    };
    expectClose(
      'matmul',
      await backend.matmul(inputs),
      referenceMatmulInputs64(inputs),
      backend.capabilities.tolerance,
    );
    const data = shared(random(10, 26));
    const tensor = await backend.upload(data);
    expect(await backend.read(tensor)).toEqual(Float32Array.from(data));
    backend.release(tensor);
  });
});
