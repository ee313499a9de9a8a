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
}

export function deviceError(what: string, error: unknown): AttnkitError {
  if (error instanceof AttnkitError) return error;
  return new AttnkitError('device', `wasm: ${what} failed: ${String(error)}`, { cause: error });
}

/**
 * Runs `attn_run(params)` until its work items are claimed: with `parallel`, on the calling thread
 * (slot 0) and every worker, which pull items from the block's atomic counter.
 */
export async function runItems(kernel: Kernel, params: number, parallel: boolean): Promise<void> {
  const { exports, pool } = kernel;
  if (parallel && pool !== null) {
    // a worker that died since the last call is replaced first, so that this call can succeed
    await pool.replaceDead();
    const others = pool.run(params);
    try {
      exports.attn_run(params, 0);
    } finally {
      await others;
    }
  } else {
    exports.attn_run(params, 0);
  }
}
