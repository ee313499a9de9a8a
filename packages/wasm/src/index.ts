/**
 * @attnkit/wasm: attention in WebAssembly SIMD. A Rust kernel (no crates, `simd128`) computes blocked
 * attention with an online softmax; this loader instantiates it in Node or a browser, manages its
 * linear memory and, when asked, splits the work across workers that share that memory.
 * @packageDocumentation
 */
export {
  createAutoThreadedWasmBackend,
  createWasmBackend,
  default,
  type WasmBackendOptions,
} from './backend.js';
export { cacheTransfers, PAGE_TOKENS } from './cache.js';
export { defaultKernelUrl, type KernelFlavour, sharedMemoryUnavailableReason } from './runtime.js';
export { WASM_TOLERANCE } from './tolerance.js';
