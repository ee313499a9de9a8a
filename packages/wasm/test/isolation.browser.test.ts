import { referenceAttention64 } from '@attnkit/spec';
import { expect, it } from 'vitest';
import { createWasmBackend, sharedMemoryUnavailableReason, WASM_TOLERANCE } from '../src/index.js';
import { errorRatio, inputsFor } from './helpers.js';

// This project's page is served without COOP/COEP, so it is not cross-origin isolated.
it('runs single-threaded, with the reason, when the page is not cross-origin isolated', async () => {
  expect(globalThis.crossOriginIsolated).toBe(false);
  expect(sharedMemoryUnavailableReason()).toMatch(/cross-origin isolated/);
  const backend = createWasmBackend({ threads: 2 });
  await backend.init();
  expect(backend.capabilities.threads).toBe(1);
  expect(backend.capabilities.engine).toContain('single thread');
  expect(backend.capabilities.notes.join(' ')).toMatch(
    /single-threaded \(2 threads were asked for\).*cross-origin isolated/,
  );
  const inputs = inputsFor({ batch: 1, queryHeads: 3, queryLength: 150, headDim: 32 }, 3);
  const result = await backend.attention(inputs, { causal: true });
  const ref = referenceAttention64(inputs, { causal: true });
  expect(errorRatio(result.output, ref.output, WASM_TOLERANCE.atol, WASM_TOLERANCE.rtol)).toBeLessThanOrEqual(
    1,
  );
  await backend.dispose();
});
