import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { biasParams, PARAM, PARAM_BYTES, PARAM_FLOAT_FIELDS, writeParams } from '../src/abi.js';

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
    expect(fields.filter((f) => f.type === 'f32').map((f) => camel(f.name))).toEqual([...PARAM_FLOAT_FIELDS]);
  });

  it('writeParams zeroes the block, then writes u32 fields as integers and f32 fields as float bits', () => {
    const buffer = new ArrayBuffer(PARAM_BYTES + 16);
    const words = new Uint32Array(buffer);
    const floats = new Float32Array(buffer);
    words.fill(0xdeadbeef);
    writeParams(words, floats, 8, { q: 7, scale: 0.5, ...biasParams(40, [1, 2, 3, 0]) });
    const base = 2;
    expect(words[0]).toBe(0xdeadbeef); // before the block: untouched
    expect(words[1]).toBe(0xdeadbeef);
    expect(words[base + PARAM.q]).toBe(7);
    expect(floats[base + PARAM.scale]).toBe(0.5);
    expect(words[base + PARAM.bias]).toBe(40);
    expect([PARAM.biasSb, PARAM.biasSh, PARAM.biasSi, PARAM.biasSj].map((f) => words[base + f])).toEqual([
      1, 2, 3, 0,
    ]);
    expect(words[base + PARAM.softcap]).toBe(0); // not given: zero
    expect(words[base + PARAM_BYTES / 4]).toBe(0xdeadbeef); // after the block: untouched
  });
});
