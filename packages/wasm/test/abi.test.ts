import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PARAM, PARAM_BYTES } from '../src/abi.js';

// The loader writes the Params block by the word offsets in src/abi.ts; the kernel reads it through
// `#[repr(C)] struct Params` in rust/lib.rs. Every field is 4 bytes, so the two agree exactly when
// the struct's fields, in order, are PARAM's keys (snake_case there, camelCase here) at 0, 1, 2, ...
describe('the Params ABI', () => {
  const source = readFileSync(new URL('../rust/lib.rs', import.meta.url), 'utf8');
  const body = /pub struct Params \{([\s\S]*?)\n\}/.exec(source)?.[1] ?? '';
  const fields = [...body.matchAll(/^\s*(\w+): (u32|f32),/gm)].map(([, name, type]) => ({ name, type }));
  const camel = (name: string) => name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

  it('src/abi.ts PARAM lists rust/lib.rs Params fields in order, one 32-bit word each', () => {
    expect(fields.length).toBeGreaterThan(40);
    expect(fields.map((f) => camel(f.name))).toEqual(
      Object.entries(PARAM)
        .sort((a, b) => a[1] - b[1])
        .map(([name]) => name),
    );
    expect(Object.values(PARAM).sort((a, b) => a - b)).toEqual(fields.map((_, i) => i));
    expect(PARAM_BYTES).toBe(fields.length * 4);
  });

  it('the f32 fields are the ones the loader writes as floats', () => {
    expect(fields.filter((f) => f.type === 'f32').map((f) => camel(f.name))).toEqual([
      'scale',
      'softcap',
      'exactDeltaAbove',
    ]);
  });
});
