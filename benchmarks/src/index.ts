/**
 * @attnkit/benchmarks: the bench's workloads, its runner (warm-up, repetitions, budgets, reference
 * check) and the peer adapters, all behind one {@link Subject} interface. Browser-safe; Node-only
 * peers and helpers are in `@attnkit/benchmarks/node`.
 * @packageDocumentation
 */

export {
  BACKWARD_GATE_SIZE,
  type BackwardCheck,
  type BackwardReference,
  backwardReferenceFor,
  checkBackward,
  gateWorkload,
} from './backward.js';
export {
  JS_BLOCK_KEYS,
  JS_BLOCK_ROWS,
  JS_DIM,
  JS_FLOP_PER_PASS,
  JS_KEYS,
  jsMultiplyAddKernel,
  type MachineCeilings,
  measureCeilings,
  SIMD_CHAINS,
  SIMD_FLOP_PER_ITERATION,
  simdKernel,
  simdModuleBytes,
} from './ceilings.js';
export {
  buildAttentionModel,
  buildGqaDecodeModel,
  buildGqaModel,
  type OnnxAttentionShape,
  type OnnxGqaDecodeShape,
  type OnnxGqaModel,
  type OnnxGqaShape,
  type OnnxModel,
  type OnnxVariant,
} from './onnx.js';
export { naivePeer } from './peers/naive.js';
export { naiveBackward, naiveForwardWithLse } from './peers/naive-backward.js';
export {
  type OrtModule,
  type OrtPeerOptions,
  type OrtSession,
  type OrtTensor,
  ortPeer,
  resolveSessionOptions,
} from './peers/ort.js';
export {
  fallbackProviders,
  type NodePlacement,
  type OrtGqaPeerOptions,
  ortGqaPeer,
  parseNodePlacements,
} from './peers/ort-gqa.js';
export {
  type GpuBufferLike,
  type GpuDeviceLike,
  type OrtWebGpuGqaOptions,
  type OrtWebGpuModule,
  ortWebGpuGqaPeer,
} from './peers/ort-webgpu.js';
export { type PlacementProbe, placementCheck } from './peers/placement.js';
export { type TfjsBackendName, type TfjsPeerOptions, tfjsPeer } from './peers/tfjs.js';
export {
  lastRowsError,
  PROBE_CHECKED_ROWS,
  type ProbeHooks,
  probeYardsticks,
  type RssProbeResult,
  rssProbe,
} from './probe.js';
export { referenceFor } from './reference.js';
export {
  BACKWARD_RUN,
  type BackwardPhases,
  type CheckResult,
  checkOutput,
  DECODE_CACHE_RUN,
  DECODE_GATE_SIZE,
  FORWARD_GATE_SIZE,
  FULL_RUN,
  type MemoryMeasure,
  QUICK_BACKWARD_RUN,
  QUICK_DECODE_CACHE_RUN,
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
  type DecodePath,
  type ForwardPass,
  type GradientSet,
  PEER_TOLERANCE,
  type PlacementCheck,
  type PreparedBackward,
  type PreparedDecode,
  type PreparedRun,
  type Subject,
  type SubjectInfo,
  type SubjectMemory,
  sliceTokens,
} from './subject.js';
export {
  BACKWARD_FLOP_FACTOR,
  BACKWARD_GRID,
  BACKWARD_HEADLINE_SERIES,
  BACKWARD_QUICK_GRID,
  type BenchMode,
  backwardFlops,
  causalMask,
  DECODE_CACHE_GRID,
  DECODE_CACHE_HEADLINE_SERIES,
  DECODE_CACHE_QUICK_GRID,
  expandGrid,
  type FlopCount,
  FULL_GRID,
  FULL_SIZES,
  type GridSpec,
  HEAD_PRESETS,
  HEADLINE_SERIES,
  HEADLINE_SERIES_IDS,
  type HeadPreset,
  makeInputs,
  makeWorkload,
  QUICK_GRID,
  referenceCost,
  repeatKvHeads,
  seriesId,
  transposeHeads,
  type Workload,
  type WorkloadInputs,
  workloadFlops,
  workloadShape,
} from './workloads.js';
