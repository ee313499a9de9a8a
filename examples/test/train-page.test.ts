// The train-induction browser page, end to end: built with vite, served, opened in headless Chromium
// with ?backend=cpu&steps=100&autorun, trained there. The page reports its held-out accuracy on
// window.__trainResult; 100 steps reach the same > 90% the Node test asserts (the cpu backend is
// deterministic float64, so the browser run follows the Node one).
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const FLAGS = [
  '--no-sandbox',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
];
const here = path.dirname(fileURLToPath(import.meta.url));
const TYPES: Record<string, string> = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
};

let outDir = '';

beforeAll(async () => {
  outDir = mkdtempSync(path.join(tmpdir(), 'attnkit-train-page-'));
  await build({
    configFile: path.join(here, '..', 'train-induction', 'vite.config.ts'),
    build: { outDir, emptyOutDir: true },
    logLevel: 'warn',
  });
});

afterAll(() => {
  if (outDir) rmSync(outDir, { recursive: true, force: true });
});

/** A static server over the built page, on a free port. */
async function serve(root: string) {
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const file = path.join(root, decodeURIComponent(url.pathname === '/' ? '/index.html' : url.pathname));
    if (!file.startsWith(root) || !existsSync(file) || !statSync(file).isFile()) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` };
}

describe('the train-induction page', () => {
  it('trains on cpu in headless Chromium and learns induction', async () => {
    const { server, url } = await serve(outDir);
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(error.message));
      await page.goto(`${url}?backend=cpu&steps=100&autorun`);
      await page.waitForFunction(() => window.__trainResult !== undefined, undefined, { timeout: 240_000 });
      const result = await page.evaluate(() => window.__trainResult);
      expect(errors).toEqual([]);
      expect(result).toMatchObject({ backend: 'cpu' });
      if (result === undefined || 'error' in result)
        throw new Error(`the page failed: ${JSON.stringify(result)}`);
      expect(result.accuracy).toBeGreaterThan(0.9);
    } finally {
      await browser.close();
      server.close();
    }
  });
});
