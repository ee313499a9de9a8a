import { describe, expect, it } from 'vitest';
import createDefaultWasmBackend, { createWasmBackend, WASM_TOLERANCE } from '../src/index.js';

describe('createWasmBackend options', () => {
  it.each([
    ['threads', 0],
    ['threads', 1.5],
    ['threads', 'many'],
    ['queryBlock', 0],
    ['keyBlock', 5000],
    ['parallelMinWork', -1],
  ])('rejects options.%s = %j naming the option and the expected values', (name, value) => {
    expect(() => createWasmBackend({ [name]: value } as never)).toThrow(
      expect.objectContaining({
        name: 'AttnkitError',
        code: 'invalid-argument',
        argument: `options.${name}`,
      }),
    );
  });

  it('declares the same atol/rtol as @attnkit/cpu plus fudge 2, single-threaded by default', async () => {
    const backend = createDefaultWasmBackend();
    await backend.init();
    expect(backend.capabilities.tolerance).toEqual(WASM_TOLERANCE);
    expect(WASM_TOLERANCE).toEqual({ atol: 1e-6, rtol: 1e-5, fudge: 2 });
    expect(backend.capabilities.threads).toBe(1);
    await backend.dispose();
  });

  it('reports a kernel that cannot be loaded as unavailable, with the URL', async () => {
    const backend = createWasmBackend({ wasmUrl: new URL('file:///nonexistent/attnkit.wasm') });
    await expect(backend.init()).rejects.toMatchObject({
      code: 'unavailable',
      message: expect.stringContaining('file:///nonexistent/attnkit.wasm'),
    });
    await backend.dispose();
  });
});
