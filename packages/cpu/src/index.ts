/**
 * @attnkit/cpu: attention in pure TypeScript. Blocked, online softmax (FlashAttention's schedule),
 * float64 accumulation, every option of the spec, no `Lq x Lk` buffer unless weights are asked for.
 * @packageDocumentation
 */
// The public surface is the factory, its options and the constants a user plans with; kernels,
// scratch and the cache class are internals (reached through the backend's methods).
export {
  CPU_TOLERANCE,
  type CpuBackendOptions,
  createCpuBackend,
  default,
} from './backend.js';
export { PAGE_TOKENS } from './kernels/cache.js';
