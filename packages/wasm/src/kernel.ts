/**
 * A live kernel (its memory, the calling thread's instance, the workers) and how one prepared
 * `Params` block is run on it: on the calling thread alone, or on it and every worker at once.
 */
import { AttnkitError } from '@attnkit/spec';
import type { KernelExports } from './abi.js';
import type { WorkerPool } from './threads.js';

/** A live kernel: its memory, the calling thread's instance, and the workers (threads build only). */
export interface Kernel {
  memory: WebAssembly.Memory;
  exports: KernelExports;
  pool: WorkerPool | null;
  /** First byte the per-call arena may use. */
  base: number;
  /** The compiled kernel: a KV cache instantiates it again on a memory of its own. */
  module: WebAssembly.Module;
}

export function deviceError(what: string, error: unknown): AttnkitError {
  if (error instanceof AttnkitError) return error;
  return new AttnkitError('device', `wasm: ${what} failed: ${String(error)}`, { cause: error });
}

/**
 * How a call of `items` work items and `work` multiply-adds runs: on the workers too when there are
 * any, more than one item and at least `parallelMinWork`; `slots` scratch slots, one per thread that
 * can claim an item (the calling thread and each worker).
 */
export function threading(
  pool: WorkerPool | null,
  items: number,
  work: number,
  parallelMinWork: number,
): { parallel: boolean; slots: number } {
  return {
    parallel: pool !== null && items > 1 && work >= parallelMinWork,
    slots: pool === null ? 1 : pool.size + 1,
  };
}

/**
 * Runs `attn_run(params)` until its work items are claimed: with `parallel`, on the calling thread
 * (slot 0) and every worker, which pull items from the block's atomic counter.
 */
export function runItems(kernel: Kernel, params: number, parallel: boolean): Promise<void> {
  return runItemsOn(kernel.exports, kernel.pool, 0, params, parallel);
}

/**
 * {@link runItems} on any instance of the kernel: `memory` 0 is the kernel's own, others are the
 * memories a KV cache attached to the pool ({@link WorkerPool.attach}).
 */
export async function runItemsOn(
  exports: KernelExports,
  pool: WorkerPool | null,
  memory: number,
  params: number,
  parallel: boolean,
): Promise<void> {
  if (parallel && pool !== null) {
    // a worker that died since the last call is replaced first, so that this call can succeed
    await pool.replaceDead();
    const others = pool.run(params, memory);
    try {
      exports.attn_run(params, 0);
    } finally {
      await others;
    }
  } else {
    exports.attn_run(params, 0);
  }
}
