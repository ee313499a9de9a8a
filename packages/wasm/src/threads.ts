/**
 * A pool of workers that each instantiate the threads build of the kernel on one shared memory and
 * run `attn_run` when told. Node `worker_threads` and browser Web Workers run the same script, which
 * is kept as a string so that it needs no file of its own next to the JS (no bundler plugin, no
 * `src/` vs `dist/` difference): a Blob URL in browsers, `eval: true` in Node.
 */
import { AttnkitError } from '@attnkit/spec';
import { importNode, isNode } from './runtime.js';

/** The worker's whole program. Plain ES2017, no imports: it runs as a classic script. */
const WORKER_SOURCE = `
'use strict';
function attnkitWorker(post) {
  // one instance per memory: 0 is the kernel's, others belong to KV caches (each has its own memory)
  var instances = {};
  var failNextRun = false;
  return function (msg) {
    try {
      if (msg.type === 'init') {
        var instance = new WebAssembly.Instance(msg.module, { env: { memory: msg.memory } });
        // a private stack region: instances share the memory, so they must not share the default stack
        instance.exports.__stack_pointer.value = msg.stackTop;
        instances[msg.id || 0] = instance.exports;
        post({ type: 'ready' });
      } else if (msg.type === 'drop') {
        delete instances[msg.id];
      } else if (msg.type === 'run') {
        if (failNextRun) {
          // fault injection for tests: die with an uncaught error, mid-call, without answering
          failNextRun = false;
          setTimeout(function () { throw new Error('worker ' + msg.worker + ' crashed (fault injected by a test)'); }, 0);
          return;
        }
        instances[msg.id || 0].attn_run(msg.params, msg.worker);
        post({ type: 'done' });
      } else if (msg.type === 'fail-next-run') {
        failNextRun = true;
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
  /** Resolves with the next reply; rejects once the worker has died. */
  next(): Promise<WorkerReply>;
  /** Node only: whether the worker keeps the process alive. */
  hold(on: boolean): void;
  /** Null while the worker can take work; else why not (it died, or its kernel trapped). */
  unusable(): string | null;
  /** Marks a live worker as not to be used again (the pool replaces it before the next call). */
  retire(reason: string): void;
  /** Test seam: terminates the worker the way a crash would, events and all. */
  kill(): Promise<void>;
  /** Removes the pool's listeners and ends the worker, releasing what it holds. */
  release(): Promise<void>;
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
      failure ??= error;
      for (const w of waiting.splice(0)) w.reject(failure);
    },
    failure(): Error | null {
      return failure;
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
  let retired: string | null = null;
  const onMessage = (m: unknown) => queue.deliver(m as WorkerReply);
  const onError = (e: unknown) => queue.fail(e instanceof Error ? e : new Error(String(e)));
  const onExit = (code: unknown) => queue.fail(new Error(`the worker exited with code ${String(code)}`));
  worker.on('message', onMessage);
  worker.on('error', onError);
  worker.on('exit', onExit);
  return {
    post: (m) => worker.postMessage(m),
    next: () => queue.next(),
    hold: (on) => (on ? worker.ref() : worker.unref()),
    unusable: () => retired ?? queue.failure()?.message ?? null,
    retire: (reason) => {
      retired ??= reason;
    },
    kill: async () => {
      await worker.terminate();
    },
    release: async () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
      // an 'error' emitted while it shuts down, with no listener, would take the whole process down
      worker.on('error', () => {});
      queue.fail(new Error('the worker was released'));
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
  let retired: string | null = null;
  worker.onmessage = (event) => queue.deliver(event.data as WorkerReply);
  // A browser worker survives an uncaught error, but it has stopped in the middle of what it was
  // doing: the pool treats it as dead and replaces it.
  worker.onerror = (event) => queue.fail(new Error(event.message || 'worker error'));
  const end = () => {
    worker.onmessage = null;
    worker.onerror = null;
    worker.terminate();
    // revoked only now: a worker may fetch its script after the constructor returns
    URL.revokeObjectURL(url);
  };
  return {
    post: (m) => worker.postMessage(m),
    next: () => queue.next(),
    hold: () => {},
    unusable: () => retired ?? queue.failure()?.message ?? null,
    retire: (reason) => {
      retired ??= reason;
    },
    // a terminated Web Worker sends no event: say what a crash would have said
    kill: async () => {
      end();
      queue.fail(new Error('the worker was terminated'));
    },
    release: async () => {
      end();
      queue.fail(new Error('the worker was released'));
    },
  };
}

async function expect(endpoint: Endpoint, type: 'ready' | 'done'): Promise<void> {
  const reply = await endpoint.next();
  if (reply.type === 'error') throw new Error(reply.message ?? 'worker failed');
  if (reply.type !== type) throw new Error(`worker answered "${reply.type}", expected "${type}"`);
}

/**
 * Test seam: called with every pool that starts, so that a test can reach the workers of a backend
 * it made (the pool is otherwise private to the backend) and kill one.
 */
export const threadsTestHooks: { poolStarted: ((pool: WorkerPool) => void) | null } = {
  poolStarted: null,
};

/**
 * Workers sharing the main thread's kernel memory. Worker `i` uses scratch slot `i + 1`. A worker
 * that dies (or whose kernel traps) fails the call it was part of, once, and is replaced before the
 * next call: without that, its sticky failure would fail every later call.
 */
export class WorkerPool {
  /** Memories attached by KV caches, by id: a replacement worker instantiates the kernel on each. */
  private readonly attached = new Map<number, { memory: WebAssembly.Memory; stackTops: readonly number[] }>();

  private constructor(
    private readonly endpoints: Endpoint[],
    private readonly module: WebAssembly.Module,
    private readonly memory: WebAssembly.Memory,
    private readonly stackTops: readonly number[],
  ) {}

  /** One worker with the module instantiated on the shared memory, its stack at `stackTop`. */
  private static async spawn(
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    stackTop: number | undefined,
    attached: readonly [number, WebAssembly.Memory, number | undefined][] = [],
  ): Promise<Endpoint> {
    const endpoint = isNode() ? await spawnNode() : spawnBrowser();
    try {
      endpoint.post({ type: 'init', module, memory, stackTop });
      await expect(endpoint, 'ready');
      for (const [id, other, top] of attached) {
        endpoint.post({ type: 'init', module, memory: other, stackTop: top, id });
        await expect(endpoint, 'ready');
      }
      // idle workers must not keep a Node process alive; run() holds them while they work
      endpoint.hold(false);
    } catch (error) {
      await endpoint.release();
      throw error;
    }
    return endpoint;
  }

  /** Spawns `count` workers and instantiates the module in each, with its own stack top. */
  static async start(
    count: number,
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    stackTops: readonly number[],
  ): Promise<WorkerPool> {
    const spawned = await Promise.allSettled(
      Array.from({ length: count }, (_, i) => WorkerPool.spawn(module, memory, stackTops[i])),
    );
    const endpoints = spawned.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = spawned.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) {
      await Promise.allSettled(endpoints.map((e) => e.release()));
      throw failed.reason;
    }
    const pool = new WorkerPool(endpoints, module, memory, stackTops);
    threadsTestHooks.poolStarted?.(pool);
    return pool;
  }

  get size(): number {
    return this.endpoints.length;
  }

  /**
   * Replaces every worker that died or failed since the last call, each with a new one on the same
   * stack region (so a replacement costs no memory), and releases the old one's listeners. Called
   * before a call hands out work, so that the workers that call uses are alive.
   */
  async replaceDead(): Promise<void> {
    await Promise.all(
      this.endpoints.map(async (endpoint, i) => {
        const reason = endpoint.unusable();
        if (reason === null) return;
        await endpoint.release();
        try {
          const attached = [...this.attached].map(
            ([id, a]): [number, WebAssembly.Memory, number | undefined] => [id, a.memory, a.stackTops[i]],
          );
          this.endpoints[i] = await WorkerPool.spawn(this.module, this.memory, this.stackTops[i], attached);
        } catch (error) {
          // the dead one stays in place: the next call tries again
          throw new AttnkitError(
            'device',
            `wasm: cannot replace worker ${i + 1} of ${this.size} (it had stopped: ${reason}): ${String(error)}`,
            {
              argument: `worker ${i + 1}`,
              expected: 'a worker that starts',
              actual: String(error),
              cause: error,
            },
          );
        }
      }),
    );
  }

  /**
   * Tells every worker to run `attn_run(params, i + 1)`; resolves when all have finished. The caller
   * runs slot 0 on its own thread meanwhile. Rejects with a `device` AttnkitError naming the first
   * worker that died or failed, but only after every other worker has stopped touching the memory.
   */
  async run(params: number, memory = 0): Promise<void> {
    const settled = await Promise.allSettled(
      this.endpoints.map(async (endpoint, i) => {
        endpoint.hold(true);
        try {
          endpoint.post({ type: 'run', params, worker: i + 1, id: memory });
          await expect(endpoint, 'done');
        } catch (error) {
          const died = endpoint.unusable() !== null;
          // a trap may leave the instance's stack pointer mid-call: never reuse the worker
          endpoint.retire(String(error));
          throw new AttnkitError(
            'device',
            `wasm: worker ${i + 1} of ${this.size} ${died ? 'died' : 'failed'} during the call (${String(error)}); ` +
              'the call is rejected and the worker is replaced before the next call',
            { argument: `worker ${i + 1}`, expected: 'a live worker', actual: String(error), cause: error },
          );
        } finally {
          endpoint.hold(false);
        }
      }),
    );
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  /**
   * Instantiates the kernel on another memory (a KV cache's) in every worker, worker `i` with its
   * stack at `stackTops[i]` there; `run(params, id)` then runs on it. Called while no run is in flight.
   */
  async attach(id: number, memory: WebAssembly.Memory, stackTops: readonly number[]): Promise<void> {
    this.attached.set(id, { memory, stackTops });
    const settled = await Promise.allSettled(
      this.endpoints.map(async (endpoint, i) => {
        endpoint.hold(true);
        try {
          endpoint.post({ type: 'init', module: this.module, memory, stackTop: stackTops[i], id });
          await expect(endpoint, 'ready');
        } finally {
          endpoint.hold(false);
        }
      }),
    );
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) {
      // a worker that could not take it is replaced (with every attached memory) before the next run
      this.endpoints.forEach((endpoint, i) => {
        const outcome = settled[i];
        if (outcome.status === 'rejected') endpoint.retire(String(outcome.reason));
      });
      throw failed.reason;
    }
  }

  /** Drops the workers' instances on memory `id`, so that the memory can be collected. */
  detach(id: number): void {
    if (!this.attached.delete(id)) return;
    for (const endpoint of this.endpoints)
      if (endpoint.unusable() === null) endpoint.post({ type: 'drop', id });
  }

  /** Test seam: terminates worker `index` (0-based) as if it had been killed. */
  terminateWorker(index: number): Promise<void> {
    return this.endpoints[index].kill();
  }

  /** Test seam: worker `index` dies with an uncaught error on its next run, without answering. */
  failNextRun(index: number): void {
    this.endpoints[index].post({ type: 'fail-next-run' });
  }

  async terminate(): Promise<void> {
    await Promise.allSettled(this.endpoints.map((e) => e.release()));
  }
}
