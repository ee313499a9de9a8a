/**
 * Finding and compiling the kernel, and the few host facts the loader needs, without importing any
 * `node:` module statically: the same file runs in browsers (module workers, pages) and in Node.
 */

/** Which build of the kernel. */
export type KernelFlavour = 'single' | 'threads';

/**
 * The `.wasm` next to this package's JS (`src/` or `dist/` both sit beside `wasm/`). Each URL is a
 * literal `new URL('…', import.meta.url)`: the standard pattern that Node, browsers and bundlers
 * (Vite, webpack 5, Parcel, Rollup plugins) all understand, so a bundled app ships the file as an asset.
 */
export function defaultKernelUrl(flavour: KernelFlavour): URL {
  return flavour === 'threads'
    ? new URL('../wasm/attnkit-threads.wasm', import.meta.url)
    : new URL('../wasm/attnkit.wasm', import.meta.url);
}

/** True in Node (and runtimes that mimic it), where `fetch` cannot read `file:` URLs. */
export function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string';
}

/** `import()` of a Node built-in, hidden from bundlers that would try to resolve it for browsers. */
export function importNode<T>(specifier: string): Promise<T> {
  return import(/* @vite-ignore */ /* webpackIgnore: true */ specifier) as Promise<T>;
}

async function readBytes(url: URL): Promise<ArrayBuffer | Uint8Array> {
  if (url.protocol === 'file:') {
    const fs = await importNode<typeof import('node:fs/promises')>('node:fs/promises');
    return fs.readFile(url);
  }
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url.href} answered ${response.status} ${response.statusText}`);
  return response.arrayBuffer();
}

const compiled = new Map<string, Promise<WebAssembly.Module>>();

/** Compiles (once per URL) the kernel module. */
export function compileKernel(url: URL): Promise<WebAssembly.Module> {
  let module = compiled.get(url.href);
  if (module === undefined) {
    module = readBytes(url).then((bytes) => WebAssembly.compile(bytes as BufferSource));
    // a failed load may be retried later (a file built after the first attempt)
    module.catch(() => compiled.delete(url.href));
    compiled.set(url.href, module);
  }
  return module;
}

/** Logical processors, for `threads: 'auto'`. */
export async function hardwareThreads(): Promise<number> {
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  if (typeof nav?.hardwareConcurrency === 'number' && nav.hardwareConcurrency > 0)
    return nav.hardwareConcurrency;
  if (isNode()) {
    const os = await importNode<typeof import('node:os')>('node:os');
    return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  }
  return 1;
}

/**
 * Null when a shared `WebAssembly.Memory` can be made and handed to workers; otherwise the reason,
 * in words a user can act on.
 */
export function sharedMemoryUnavailableReason(): string | null {
  const g = globalThis as { crossOriginIsolated?: boolean; Worker?: unknown };
  if (typeof SharedArrayBuffer === 'undefined') {
    return 'SharedArrayBuffer is unavailable (the page is not cross-origin isolated: serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)';
  }
  if (g.crossOriginIsolated === false) {
    return 'the page is not cross-origin isolated (crossOriginIsolated is false: serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)';
  }
  if (!isNode() && typeof g.Worker !== 'function') return 'Web Workers are unavailable in this context';
  try {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    if (!(memory.buffer instanceof SharedArrayBuffer)) return 'WebAssembly shared memory is unavailable';
  } catch (error) {
    return `WebAssembly shared memory is unavailable (${String(error)})`;
  }
  return null;
}
