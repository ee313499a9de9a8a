/**
 * A pool of workers that each instantiate the threads build of the kernel on one shared memory and
 * run `attn_run` when told. Node `worker_threads` and browser Web Workers run the same script, which
 * is kept as a string so that it needs no file of its own next to the JS (no bundler plugin, no
 * `src/` vs `dist/` difference): a Blob URL in browsers, `eval: true` in Node.
 */
import { importNode, isNode } from './runtime.js';

/** The worker's whole program. Plain ES2017, no imports: it runs as a classic script. */
const WORKER_SOURCE = `
'use strict';
function attnkitWorker(post) {
  var exports = null;
  return function (msg) {
    try {
      if (msg.type === 'init') {
        var instance = new WebAssembly.Instance(msg.module, { env: { memory: msg.memory } });
        exports = instance.exports;
        // a private stack region: instances share the memory, so they must not share the default stack
        exports.__stack_pointer.value = msg.stackTop;
        post({ type: 'ready' });
      } else if (msg.type === 'run') {
        exports.attn_run(msg.params, msg.worker);
        post({ type: 'done' });
      }
    } catch (error) {
      post({ type: 'error', message: String((error && error.stack) || error) });
    }
  };
}
if (typeof require === 'function' && typeof process === 'object') {
  var parentPort = require('node:worker_threads').parentPort;
  parentPort.on('message', attnkitWorker(function (m) { parentPort.postMessage(m); }));
} else {
  self.onmessage = (function (handle) { return function (event) { handle(event.data); }; })(
    attnkitWorker(function (m) { self.postMessage(m); }));
}
`;

interface WorkerReply {
  type: 'ready' | 'done' | 'error';
  message?: string;
}

/** The part of a Node or browser worker the pool uses. */
interface Endpoint {
  post(message: unknown): void;
  /** Resolves with the next reply; rejects if the worker dies. */
  next(): Promise<WorkerReply>;
  /** Node only: whether the worker keeps the process alive. */
  hold(on: boolean): void;
  terminate(): Promise<void>;
}

interface NodeWorker {
  postMessage(message: unknown): void;
  on(event: string, listener: (value: unknown) => void): void;
  off(event: string, listener: (value: unknown) => void): void;
  ref(): void;
  unref(): void;
  terminate(): Promise<number>;
}

function replyQueue() {
  const waiting: { resolve: (r: WorkerReply) => void; reject: (e: Error) => void }[] = [];
  let failure: Error | null = null;
  return {
    deliver(reply: WorkerReply) {
      waiting.shift()?.resolve(reply);
    },
    fail(error: Error) {
      failure = error;
      for (const w of waiting.splice(0)) w.reject(error);
    },
    next(): Promise<WorkerReply> {
      if (failure !== null) return Promise.reject(failure);
      return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
    },
  };
}

async function spawnNode(): Promise<Endpoint> {
  const { Worker } = await importNode<{ Worker: new (src: string, options: object) => NodeWorker }>(
    'node:worker_threads',
  );
  const worker = new Worker(WORKER_SOURCE, { eval: true });
  const queue = replyQueue();
  worker.on('message', (m) => queue.deliver(m as WorkerReply));
  worker.on('error', (e) => queue.fail(e instanceof Error ? e : new Error(String(e))));
  worker.on('exit', (code) => queue.fail(new Error(`worker exited with code ${String(code)}`)));
  return {
    post: (m) => worker.postMessage(m),
    next: () => queue.next(),
    hold: (on) => (on ? worker.ref() : worker.unref()),
    terminate: async () => {
      await worker.terminate();
    },
  };
}

/** The slice of the DOM `Worker` the pool uses (this package compiles without DOM types). */
interface BrowserWorker {
  postMessage(message: unknown): void;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: { message?: string }) => void) | null;
  terminate(): void;
}

function spawnBrowser(): Endpoint {
  const WorkerClass = (globalThis as unknown as { Worker: new (url: string) => BrowserWorker }).Worker;
  const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: 'text/javascript' }));
  const worker = new WorkerClass(url);
  const queue = replyQueue();
  worker.onmessage = (event) => queue.deliver(event.data as WorkerReply);
  worker.onerror = (event) => queue.fail(new Error(event.message || 'worker error'));
  return {
    post: (m) => worker.postMessage(m),
    next: () => queue.next(),
    hold: () => {},
    terminate: async () => {
      worker.terminate();
      // revoked only now: a worker may fetch its script after the constructor returns
      URL.revokeObjectURL(url);
    },
  };
}

async function expect(endpoint: Endpoint, type: 'ready' | 'done'): Promise<void> {
  const reply = await endpoint.next();
  if (reply.type === 'error') throw new Error(reply.message ?? 'worker failed');
  if (reply.type !== type) throw new Error(`worker answered "${reply.type}", expected "${type}"`);
}

/** Workers sharing the main thread's kernel memory. Worker `i` uses scratch slot `i + 1`. */
export class WorkerPool {
  private constructor(private readonly endpoints: Endpoint[]) {}

  /** Spawns `count` workers and instantiates the module in each, with its own stack top. */
  static async start(
    count: number,
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    stackTops: readonly number[],
  ): Promise<WorkerPool> {
    const endpoints: Endpoint[] = [];
    try {
      for (let i = 0; i < count; i++) endpoints.push(isNode() ? await spawnNode() : spawnBrowser());
      await Promise.all(
        endpoints.map((endpoint, i) => {
          endpoint.post({ type: 'init', module, memory, stackTop: stackTops[i] });
          // idle workers must not keep a Node process alive; run() holds them while they work
          return expect(endpoint, 'ready').then(() => endpoint.hold(false));
        }),
      );
    } catch (error) {
      await Promise.allSettled(endpoints.map((e) => e.terminate()));
      throw error;
    }
    return new WorkerPool(endpoints);
  }

  get size(): number {
    return this.endpoints.length;
  }

  /**
   * Tells every worker to run `attn_run(params, i + 1)`; resolves when all have finished. The caller
   * runs slot 0 on its own thread meanwhile.
   */
  run(params: number): Promise<void> {
    return Promise.all(
      this.endpoints.map(async (endpoint, i) => {
        endpoint.hold(true);
        try {
          endpoint.post({ type: 'run', params, worker: i + 1 });
          await expect(endpoint, 'done');
        } finally {
          endpoint.hold(false);
        }
      }),
    ).then(() => undefined);
  }

  async terminate(): Promise<void> {
    await Promise.allSettled(this.endpoints.map((e) => e.terminate()));
  }
}
