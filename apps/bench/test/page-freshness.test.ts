import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { newestJsMtime, stalePageWarning } from '../src/page-freshness.js';

const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

/** A file at `at` seconds since the epoch. */
function fileAt(file: string, at: number): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, '');
  utimesSync(file, at, at);
}

function workspace(): { page: string; packages: string } {
  const root = mkdtempSync(path.join(os.tmpdir(), 'attnkit-page-'));
  roots.push(root);
  const page = path.join(root, 'web', 'index.html');
  fileAt(page, 2000);
  return { page, packages: path.join(root, 'packages') };
}

describe('bench page freshness', () => {
  it('takes the newest .js file under a folder, nested ones included, and ignores other files', () => {
    const { packages } = workspace();
    fileAt(path.join(packages, 'a', 'dist', 'index.js'), 1000);
    fileAt(path.join(packages, 'a', 'dist', 'kernels', 'k.js'), 1500);
    fileAt(path.join(packages, 'a', 'dist', 'index.d.ts'), 9000);
    expect(newestJsMtime(path.join(packages, 'a', 'dist'))).toBe(1_500_000);
    expect(newestJsMtime(path.join(packages, 'missing'))).toBeNull();
  });

  it('names each package built after the page, and nothing when the page is newer', () => {
    const { page, packages } = workspace();
    fileAt(path.join(packages, 'spec', 'dist', 'index.js'), 1000);
    expect(stalePageWarning(page, packages)).toBeNull();
    fileAt(path.join(packages, 'webgpu', 'dist', 'kernels', 'flash-attention.js'), 3000);
    fileAt(path.join(packages, 'webgl', 'dist', 'index.js'), 2500);
    const warning = stalePageWarning(page, packages);
    expect(warning).toContain('older than the build of webgl, webgpu:');
    expect(warning).toContain('pnpm --filter @attnkit/bench build');
    expect(warning).not.toContain('spec');
  });

  it('says nothing when the page is not built (the browser part reports that)', () => {
    const { page, packages } = workspace();
    rmSync(page);
    fileAt(path.join(packages, 'webgpu', 'dist', 'index.js'), 3000);
    expect(stalePageWarning(page, packages)).toBeNull();
  });
});
