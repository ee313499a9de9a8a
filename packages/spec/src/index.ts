/**
 * @attnkit/spec: the exact definition of attention that every attnkit backend implements, the float64
 * reference it is checked against, and the contract a backend meets. The rules are in this package's README ("The semantics").
 * @packageDocumentation
 */
export {
  type AttentionBackend,
  type AttentionRequirements,
  assertLayerSupported,
  assertMatmulSupported,
  assertSupported,
  type BackendCapabilities,
  type BackendFactory,
  type BackendImplementation,
  type BackendLimits,
  type BackendMemory,
  createBackend,
  type Gate,
  openDeviceGate,
  openGate,
  requiredFeatures,
  type Tolerance,
} from './backend.js';
export {
  type AttentionBackwardInputs,
  type AttentionBackwardProblem,
  type AttentionGradients,
  type AttentionGradientsFor,
  type ReferenceBackwardProblem,
  type ReferenceGradients64,
  referenceAttentionBackward64,
  referenceAttentionBackwardProblem64,
  roundGradients,
  validateAttentionBackward,
} from './backward.js';
export {
  KV_CACHE_PRECISIONS,
  type KVCache,
  type KVCacheAppend,
  type KVCacheAppendProblem,
  type KVCacheAttentionOptions,
  type KVCacheAttentionProblem,
  type KVCacheConfig,
  type KVCacheImplementation,
  type KVCachePrecision,
  type KVCacheQuery,
  type ResolvedKVCacheConfig,
  validateKVCacheAppend,
  validateKVCacheAttention,
  validateKVCacheConfig,
  validateKVCacheTruncate,
} from './cache.js';
export {
  createReferenceKVCache,
  ReferenceKVCache,
  type ReferenceKVCacheResult64,
} from './cache-reference.js';
export {
  type AttentionFlops,
  attentionFlops,
  countParameters,
  type LayerConfig,
  type ParameterCount,
} from './counting.js';
export {
  checkDtype,
  DEVICE_DTYPES,
  type DeviceAttentionInputs,
  type DeviceAttentionProblem,
  type DeviceAttentionResult,
  type DeviceBackend,
  type DeviceDtype,
  type DeviceImplementation,
  type DeviceMatmulInputs,
  type DeviceMatmulProblem,
  type DeviceTensor,
  dtypeOf,
  TENSOR_LAYOUTS,
  type TensorLayout,
  type TensorUse,
  type UploadOptions,
  type UploadRequest,
} from './device.js';
export {
  AttnkitError,
  type AttnkitErrorCode,
  type AttnkitErrorDetails,
  allocating,
  describeValue,
  isAttnkitError,
} from './errors.js';
export {
  F16_MAX,
  F16_ROUNDS_TO_INFINITY,
  F16_SUBNORMAL_ERROR,
  F16_UNIT_ROUNDOFF,
  type F16StorageBound,
  type F16StorageBoundInputs,
  f16Bits,
  f16StorageErrorBound,
  f16Value,
  roundArrayToF16,
  roundToF16,
  withF16StoredInputs,
} from './f16.js';
export {
  type FactoryOptionRule,
  type FactoryOptionSchema,
  validateFactoryOptions,
} from './factory.js';
export {
  ALL_FEATURES,
  type AttentionFeature,
  METHOD_FEATURES,
  OPTION_FEATURES,
  SHAPE_FEATURES,
} from './features.js';
export {
  type LayerForwardPass,
  type LayerInputs,
  type LayerProblem,
  type LayerShape,
  type LayerWeights,
  mergeHeads,
  multiHeadAttention,
  type ResolvedLayer,
  type ResolvedLayerWeights,
  referenceMultiHeadAttention64,
  splitHeads,
  validateLayer,
} from './layer.js';
export {
  type LayerActivations,
  type LayerForward,
  type LayerGradients,
  type LayerGradientsOf,
  multiHeadAttentionBackward,
  multiHeadAttentionForward,
  type ReferenceLayerGradients64,
  referenceMultiHeadAttentionBackward64,
} from './layer-backward.js';
export {
  type LayerStepInputs,
  type LayerStepOptions,
  type LayerStepShape,
  multiHeadAttentionStep,
} from './layer-step.js';
export { isVisible, kvHeadFor, queryPosition, visibleKeyRange } from './masking.js';
export {
  type ReferenceProblem,
  type ReferenceResult64,
  referenceAttention64,
  referenceAttentionProblem64,
  referenceMatmul64,
  referenceMatmulInputs64,
} from './reference.js';
export { createReferenceBackend, default } from './reference-backend.js';
export {
  applyRotary,
  type ResolvedRotary,
  type RotaryOptions,
  type RotaryShape,
  resolveRotary,
  rotateInPlace,
} from './rope.js';
export {
  snapshotAttentionBackwardProblem,
  snapshotAttentionProblem,
  snapshotLayerProblem,
  snapshotMatmulProblem,
  snapshotOptions,
} from './snapshot.js';
export { type ShapeSymbols, shapeSymbols } from './symbols.js';
export type {
  AttentionBias,
  AttentionInputs,
  AttentionOptions,
  AttentionProblem,
  AttentionResult,
  AttentionResultFor,
  AttentionShape,
  KnownAttentionOptions,
  MatmulInputs,
  MatmulProblem,
  MatmulShape,
  ResolvedBias,
  ResolvedShape,
  StoragePrecision,
} from './types.js';
export {
  FLOAT32_MAX,
  FLOAT32_MIN_NORMAL,
  isFloat32Array,
  MAX_TENSOR_ELEMENTS,
  type ResolvedOptions,
  resolveOptions,
  resolveShape,
  STORAGE_PRECISIONS,
  validateAttention,
  validateMatmul,
} from './validate.js';
