/**
 * @attnkit/benchmarks: the bench's workloads, its runner (warm-up, repetitions, budgets, reference
 * check) and the peer adapters, all behind one {@link Subject} interface. Browser-safe; Node-only
 * peers and helpers are in `@attnkit/benchmarks/node`.
 * @packageDocumentation
 */

export {
  type MachineCeilings,
  measureCeilings,
  SIMD_CHAINS,
  SIMD_FLOP_PER_ITERATION,
  simdKernel,
  simdModuleBytes,
} from './ceilings.js';
export { buildAttentionModel, type OnnxAttentionShape, type OnnxModel, type OnnxVariant } from './onnx.js';
export { naivePeer } from './peers/naive.js';
export {
  type OrtModule,
  type OrtPeerOptions,
  type OrtSession,
  type OrtTensor,
  ortPeer,
} from './peers/ort.js';
export { type TfjsBackendName, type TfjsPeerOptions, tfjsPeer } from './peers/tfjs.js';
export { referenceFor } from './reference.js';
export {
  type CheckResult,
  checkOutput,
  FULL_RUN,
  type MemoryMeasure,
  QUICK_RUN,
  type ResultRow,
  type RunHooks,
  type RunOptions,
  runSubject,
  type SubjectReport,
} from './runner.js';
export { percentile, summarize, type TimingStats } from './stats.js';
export {
  backendSubject,
  PEER_TOLERANCE,
  type PreparedRun,
  type Subject,
  type SubjectInfo,
  type SubjectMemory,
} from './subject.js';
export {
  type BenchMode,
  causalMask,
  expandGrid,
  FULL_GRID,
  FULL_SIZES,
  type GridSpec,
  HEAD_PRESETS,
  HEADLINE_SERIES,
  type HeadPreset,
  makeInputs,
  makeWorkload,
  QUICK_GRID,
  referenceCost,
  repeatKvHeads,
  seededRandom,
  seriesId,
  transposeHeads,
  type Workload,
  type WorkloadInputs,
  workloadFlops,
  workloadShape,
} from './workloads.js';
