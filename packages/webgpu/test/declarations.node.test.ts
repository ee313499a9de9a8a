// The published declarations name GPUBuffer, GPUDevice, ...: a user's strict build must find them
// without adding anything to its own tsconfig. TypeScript 6+ declares WebGPU in lib "dom";
// TypeScript 5 does not, so package.json's `types@<6.0` condition gives it types-ts5/index.d.ts,
// which references @webgpu/types (a pinned dependency). Runs both compilers as a user would
// (strict, nodenext, no skipLibCheck) on test/fixtures/strict-user.ts against dist/.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const fixture = fileURLToPath(new URL('./fixtures/strict-user.ts', import.meta.url));
const compilers = [
  ['TypeScript 6 (workspace)', require.resolve('typescript/bin/tsc')],
  ['TypeScript 5.9', require.resolve('typescript-5.9/bin/tsc')],
] as const;

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'attnkit-dts-'));
  // No `lib` (the default includes "dom"), no `types`, no skipLibCheck: a plain strict Node project.
  const config = { compilerOptions: { strict: true, module: 'nodenext', noEmit: true }, files: [fixture] };
  await writeFile(join(dir, 'tsconfig.json'), JSON.stringify(config));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('published declarations', () => {
  it('route TypeScript < 6 to a d.ts that references @webgpu/types, a pinned dependency', async () => {
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));
    expect(Object.keys(pkg.exports['.'])[0]).toBe('types@<6.0'); // conditions match in order
    expect(pkg.exports['.']['types@<6.0']).toBe('./types-ts5/index.d.ts');
    expect(pkg.files).toContain('types-ts5');
    expect(pkg.dependencies['@webgpu/types']).toMatch(/^\d+\.\d+\.\d+$/);
    const ts5 = await readFile(new URL('../types-ts5/index.d.ts', import.meta.url), 'utf8');
    expect(ts5).toContain('/// <reference types="@webgpu/types" />');
  });

  for (const [label, tsc] of compilers) {
    it(`compile in a strict user build with ${label}`, async () => {
      const result = await promisify(execFile)(process.execPath, [tsc, '-p', dir]).then(
        () => ({ code: 0, out: '' }),
        (error: { code?: number; stdout?: string }) => ({ code: error.code ?? 1, out: error.stdout ?? '' }),
      );
      expect(result.out).toBe('');
      expect(result.code).toBe(0);
    }, 120_000);
  }
});
