import { describe, expect, it } from 'vitest';
import { createWebglBackend } from '../src/index.js';

// Factory options are checked when the backend is created, before any GL context: this runs in Node.
describe('createWebglBackend options (one validator)', () => {
  it('rejects a typo listing the known options', () => {
    expect(() => createWebglBackend({ tilekeys: 64 } as never)).toThrow(
      expect.objectContaining({
        code: 'invalid-argument',
        argument: 'options.tilekeys',
        message:
          'createWebglBackend: options has unknown key "tilekeys" (known: tileKeys, blockElements, chunkRows, vectorized, context, onPass, open)',
      }),
    );
  });

  it.each([null, 1, [1]])('rejects options = %j', (value) => {
    expect(() => createWebglBackend(value as never)).toThrow(
      expect.objectContaining({ code: 'invalid-argument', argument: 'options' }),
    );
  });

  it.each([
    ['tileKeys', 0, 'an integer in [1, 2147483647]'],
    ['chunkRows', 1.5, 'an integer in [1, 2147483647]'],
    ['vectorized', 'yes', 'a boolean'],
    ['context', 'webgl3', "one of 'auto', 'webgl2', 'webgl'"],
    ['onPass', 'log', 'a function'],
    ['open', 5, 'a function'],
  ])('rejects options.%s = %j naming the expected values', (name, value, expected) => {
    expect(() => createWebglBackend({ [name]: value } as never)).toThrow(
      expect.objectContaining({ code: 'invalid-argument', argument: `options.${name}`, expected }),
    );
  });

  it('reads each option once and accepts the defaults', async () => {
    let reads = 0;
    const backend = createWebglBackend({
      get chunkRows() {
        reads++;
        return reads === 1 ? 64 : 0;
      },
    });
    expect(reads).toBe(1);
    await backend.dispose();
    await createWebglBackend().dispose();
  });
});
