import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RunOptions, SubjectReport, Workload } from '@attnkit/benchmarks';
import type { SubjectEntry } from './subjects.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Where `vite build` puts the bench page. */
export const PAGE_DIR = path.join(here, 'web');
/** Chromium from Debian's package; `CHROMIUM_PATH` overrides it. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Headless Chromium flags that work on these machines (CONTRIBUTING.md, "Machines"), WebGPU included. */
export const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--enable-unsafe-webgpu',
];

/** What the browser part returns. */
export interface BrowserPart {
  reports: SubjectReport[];
  userAgent: string | null;
  adapter: string | null;
}

function unavailable(entries: readonly SubjectEntry[], reason: string): SubjectReport[] {
  return entries.map((e) => ({
    id: e.id,
    kind: e.kind,
    family: e.id.replace(/-(attention|mha|matmul|gqa)$/, ''),
    label: e.label,
    environment: 'browser',
    status: 'unavailable' as const,
    reason,
    rows: [],
    stopped: {},
    elapsedMs: 0,
  }));
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.css': 'text/css',
};

/** A static file server for the built page, on 127.0.0.1 (a secure context: `navigator.gpu` exists). */
export async function servePage(dir: string): Promise<{ server: Server; url: string }> {
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    const file = path.join(
      dir,
      path.normalize(decodeURIComponent(url.pathname)).replace(/^(\.\.[/\\])+/, ''),
    );
    const target =
      file.endsWith(path.sep) || (existsSync(file) && statSync(file).isDirectory())
        ? path.join(file, 'index.html')
        : file;
    if (!target.startsWith(dir) || !existsSync(target)) {
      response.writeHead(404).end('not found');
      return;
    }
    response.writeHead(200, { 'content-type': TYPES[path.extname(target)] ?? 'application/octet-stream' });
    response.end(readFileSync(target));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}/` };
}

/**
 * Runs the browser subjects in headless Chromium through the bench page (the same runner, same
 * workloads, same inputs as Node). Anything that stops it (no Chromium, no page build, a timeout)
 * is reported as "unavailable: reason" for every browser subject.
 */
export async function runBrowserPart(
  entries: readonly SubjectEntry[],
  series: Workload[][],
  run: RunOptions,
  onRow: (subject: string, workload: string) => void,
  deadlineMs: number,
): Promise<BrowserPart> {
  if (!existsSync(path.join(PAGE_DIR, 'index.html')))
    return {
      reports: unavailable(entries, `bench page not built (${PAGE_DIR}); run pnpm build`),
      userAgent: null,
      adapter: null,
    };
  if (!existsSync(CHROMIUM))
    return {
      reports: unavailable(entries, `no Chromium at ${CHROMIUM} (set CHROMIUM_PATH)`),
      userAgent: null,
      adapter: null,
    };
  const { chromium } = await import('playwright-core');
  const { server, url } = await servePage(PAGE_DIR);
  const browser = await chromium
    .launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS })
    .catch((error: unknown) => error as Error);
  if (browser instanceof Error) {
    server.close();
    return {
      reports: unavailable(entries, `Chromium did not start: ${browser.message.split('\n')[0]}`),
      userAgent: null,
      adapter: null,
    };
  }
  try {
    const page = await browser.newPage();
    await page.exposeFunction('__benchProgress', (subject: string, workload: string) =>
      onRow(subject, workload),
    );
    await page.goto(url);
    await page.waitForFunction(() => window.__benchReady === true, undefined, { timeout: 60000 });
    const request = { subjects: entries.map((e) => e.id), series, options: run };
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`browser part exceeded ${(deadlineMs / 1000).toFixed(0)} s`)),
        deadlineMs,
      );
    });
    // cleared either way: a pending timer would keep the CLI alive long after the report is written
    const result = await Promise.race([page.evaluate((r) => window.runBench(r), request), deadline]).finally(
      () => clearTimeout(timer),
    );
    return { reports: result.reports, userAgent: result.userAgent, adapter: result.adapter };
  } catch (error) {
    return {
      reports: unavailable(
        entries,
        `browser run failed: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`,
      ),
      userAgent: null,
      adapter: null,
    };
  } finally {
    await browser.close().catch(() => undefined);
    server.close();
  }
}
