// Type-level tests of @attnkit/spec's public API. The `expectTypeOf` assertions are checked by the
// compiler (`pnpm typecheck` runs tsc over test/), so a change to an exported shape fails the build
// even though the runtime calls are no-ops; the few runtime assertions pin the value exports.
import { describe, expect, expectTypeOf, it } from 'vitest';
import * as spec from '../src/index.js';
import defaultFactory, {
  ALL_FEATURES,
  type AttentionBackend,
  type AttentionBias,
  type AttentionFeature,
  type AttentionFlops,
  type AttentionInputs,
  type AttentionOptions,
  type AttentionProblem,
  type AttentionResult,
  type AttentionResultFor,
  type AttentionShape,
  AttnkitError,
  type AttnkitErrorCode,
  attentionFlops,
  type BackendCapabilities,
  type BackendFactory,
  type BackendImplementation,
  type BackendMemory,
  countParameters,
  createBackend,
  createReferenceBackend,
  isAttnkitError,
  type KnownAttentionOptions,
  type LayerConfig,
  type MatmulInputs,
  type MatmulProblem,
  METHOD_FEATURES,
  multiHeadAttention,
  type ParameterCount,
  type ReferenceResult64,
  type ResolvedShape,
  referenceAttention64,
  referenceAttentionProblem64,
  referenceMatmul64,
  resolveShape,
  type Tolerance,
  validateAttention,
  validateMatmul,
} from '../src/index.js';

describe('value exports', () => {
  it('are exactly the documented set (a removal or an accidental export fails here)', () => {
    expect(Object.keys(spec).sort()).toEqual(
      [
        'ALL_FEATURES',
        'DEVICE_DTYPES',
        'METHOD_FEATURES',
        'OPTION_FEATURES',
        'SHAPE_FEATURES',
        'AttnkitError',
        'applyRotary',
        'multiHeadAttentionStep',
        'referenceAttentionBackward64',
        'referenceAttentionBackwardProblem64',
        'resolveRotary',
        'rotateInPlace',
        'roundGradients',
        'snapshotAttentionBackwardProblem',
        'validateAttentionBackward',
        'F16_MAX',
        'F16_ROUNDS_TO_INFINITY',
        'F16_SUBNORMAL_ERROR',
        'F16_UNIT_ROUNDOFF',
        'f16Bits',
        'f16StorageErrorBound',
        'f16Value',
        'roundArrayToF16',
        'roundToF16',
        'withF16StoredInputs',
        'KV_CACHE_PRECISIONS',
        'STORAGE_PRECISIONS',
        'FLOAT32_MAX',
        'FLOAT32_MIN_NORMAL',
        'MAX_TENSOR_ELEMENTS',
        'allocating',
        'assertSupported',
        'checkDtype',
        'assertLayerSupported',
        'assertMatmulSupported',
        'attentionFlops',
        'countParameters',
        'createBackend',
        'openDeviceGate',
        'openGate',
        'TENSOR_LAYOUTS',
        'createReferenceBackend',
        'createReferenceKVCache',
        'ReferenceKVCache',
        'default',
        'describeValue',
        'dtypeOf',
        'isAttnkitError',
        'isFloat32Array',
        'isVisible',
        'kvHeadFor',
        'mergeHeads',
        'multiHeadAttention',
        'multiHeadAttentionBackward',
        'multiHeadAttentionForward',
        'queryPosition',
        'referenceAttention64',
        'referenceAttentionProblem64',
        'referenceMatmul64',
        'referenceMatmulInputs64',
        'referenceMultiHeadAttention64',
        'referenceMultiHeadAttentionBackward64',
        'requiredFeatures',
        'resolveOptions',
        'resolveShape',
        'shapeSymbols',
        'snapshotAttentionProblem',
        'snapshotMatmulProblem',
        'snapshotLayerProblem',
        'snapshotOptions',
        'splitHeads',
        'validateAttention',
        'validateFactoryOptions',
        'validateKVCacheAppend',
        'validateKVCacheAttention',
        'validateKVCacheConfig',
        'validateKVCacheTruncate',
        'validateLayer',
        'validateMatmul',
        'visibleKeyRange',
      ].sort(),
    );
  });

  it('default-exports the zero-argument reference factory the conformance CLI loads', () => {
    expect(defaultFactory).toBe(createReferenceBackend);
    expect(defaultFactory.length).toBe(0);
    expectTypeOf(defaultFactory).toExtend<BackendFactory>();
    expectTypeOf(defaultFactory).parameters.toEqualTypeOf<[]>();
  });

  it('lists every feature once, and the feature union has no member ALL_FEATURES lacks', () => {
    // Record<AttentionFeature, true> only compiles with every member of the union as a key, and
    // the object literal rejects keys outside it: the union is exactly this list.
    const every: Record<AttentionFeature, true> = {
      causal: true,
      slidingWindow: true,
      keyMask: true,
      bias: true,
      alibiSlopes: true,
      softcap: true,
      sinks: true,
      returnLse: true,
      returnWeights: true,
      groupedQuery: true,
      crossAttention: true,
      valueDim: true,
      f16Storage: true,
      kvCache: true,
      kvCacheF16Storage: true,
      backward: true,
      deviceF16Storage: true,
    };
    // kvCache and backward are methods of the backend, not options of attention: METHOD_FEATURES
    expect([...ALL_FEATURES, ...METHOD_FEATURES].sort()).toEqual(Object.keys(every).sort());
    expect([...METHOD_FEATURES].sort()).toEqual([
      'backward',
      'deviceF16Storage',
      'kvCache',
      'kvCacheF16Storage',
    ]);
    expectTypeOf(ALL_FEATURES).toEqualTypeOf<readonly AttentionFeature[]>();
  });
});

describe('call types', () => {
  it('takes Float32Array tensors and a shape whose defaults are optional', () => {
    expectTypeOf<AttentionInputs>().toEqualTypeOf<{
      q: Float32Array;
      k: Float32Array;
      v: Float32Array;
      shape: AttentionShape;
    }>();
    expectTypeOf<AttentionShape>().toEqualTypeOf<{
      batch: number;
      queryHeads: number;
      kvHeads?: number;
      queryLength: number;
      keyLength?: number;
      headDim: number;
      valueDim?: number;
    }>();
    expectTypeOf<ResolvedShape>().toEqualTypeOf<Required<AttentionShape>>();
    // a float64 tensor is a different type, not silently accepted
    expectTypeOf<Float64Array>().not.toExtend<AttentionInputs['q']>();
    expectTypeOf<number[]>().not.toExtend<AttentionInputs['q']>();
  });

  it('has every option optional, with the documented types', () => {
    expectTypeOf<AttentionOptions>().toEqualTypeOf<{
      scale?: number;
      causal?: boolean;
      slidingWindow?: number;
      keyMask?: Uint8Array;
      bias?: AttentionBias;
      alibiSlopes?: Float32Array;
      softcap?: number;
      sinks?: Float32Array;
      returnLse?: boolean;
      returnWeights?: boolean;
      precision?: 'f32' | 'f16-storage';
    }>();
    expectTypeOf<AttentionBias['shape']>().toEqualTypeOf<readonly [number, number, number, number]>();
    expectTypeOf<Record<string, never>>().toExtend<AttentionOptions>();
  });

  it('returns a float32 output with lse and weights present only when asked', () => {
    expectTypeOf<AttentionResult>().toEqualTypeOf<{
      output: Float32Array;
      lse?: Float32Array;
      weights?: Float32Array;
    }>();
  });

  it('resolves absent options to null for implementations, never undefined', () => {
    expectTypeOf<AttentionProblem['slidingWindow']>().toEqualTypeOf<number | null>();
    expectTypeOf<AttentionProblem['keyMask']>().toEqualTypeOf<Uint8Array | null>();
    expectTypeOf<AttentionProblem['alibiSlopes']>().toEqualTypeOf<Float32Array | null>();
    expectTypeOf<AttentionProblem['softcap']>().toEqualTypeOf<number | null>();
    expectTypeOf<AttentionProblem['sinks']>().toEqualTypeOf<Float32Array | null>();
    expectTypeOf<AttentionProblem['scale']>().toEqualTypeOf<number>();
    expectTypeOf<AttentionProblem['shape']>().toEqualTypeOf<ResolvedShape>();
    expectTypeOf(validateAttention).toEqualTypeOf<
      (inputs: AttentionInputs, options?: AttentionOptions) => AttentionProblem
    >();
    expectTypeOf(validateMatmul).toEqualTypeOf<(inputs: MatmulInputs) => MatmulProblem>();
    expectTypeOf<MatmulProblem['bias']>().toEqualTypeOf<Float32Array | null>();
    expectTypeOf(resolveShape).returns.toEqualTypeOf<ResolvedShape>();
  });
});

describe('backend contract', () => {
  it('is async wherever a device may be touched', () => {
    expectTypeOf<AttentionBackend['init']>().toEqualTypeOf<() => Promise<void>>();
    expectTypeOf<AttentionBackend['dispose']>().toEqualTypeOf<() => Promise<void>>();
    expectTypeOf<AttentionBackend['attention']>().toEqualTypeOf<
      <O extends AttentionOptions = AttentionOptions>(
        inputs: AttentionInputs,
        options?: KnownAttentionOptions<O>,
      ) => Promise<AttentionResultFor<O>>
    >();
    expectTypeOf<AttentionBackend['matmul']>().toEqualTypeOf<
      (inputs: MatmulInputs) => Promise<Float32Array>
    >();
    expectTypeOf<AttentionBackend['memory']>().toEqualTypeOf<() => BackendMemory>();
    expectTypeOf<AttentionBackend['name']>().toEqualTypeOf<string>();
    expectTypeOf<AttentionBackend['capabilities']>().toEqualTypeOf<BackendCapabilities>();
  });

  it('makes the result follow the options (returnLse: true gives lse: Float32Array)', async () => {
    const backend = createReferenceBackend();
    const shape = { batch: 1, queryHeads: 1, queryLength: 2, headDim: 2 };
    const inputs = { q: new Float32Array(4), k: new Float32Array(4), v: new Float32Array(4), shape };
    const withLse = await backend.attention(inputs, { causal: true, returnLse: true });
    expectTypeOf(withLse.lse).toEqualTypeOf<Float32Array>();
    expectTypeOf(withLse.weights).toEqualTypeOf<Float32Array | undefined>();
    expect(withLse.lse).toBeInstanceOf(Float32Array); // what the type promises holds at run time
    const both = await backend.attention(inputs, { returnLse: true, returnWeights: true });
    expectTypeOf(both.lse).toEqualTypeOf<Float32Array>();
    expectTypeOf(both.weights).toEqualTypeOf<Float32Array>();
    expect(both.weights).toBeInstanceOf(Float32Array);
    const plain = await backend.attention(inputs);
    expectTypeOf(plain.lse).toEqualTypeOf<Float32Array | undefined>();
    expectTypeOf(plain).toExtend<AttentionResult>();
    // Flags known only at run time keep the fields optional.
    const flag: boolean = plain.output.length > 0;
    const dynamic = await backend.attention(inputs, { returnLse: flag });
    expectTypeOf(dynamic.lse).toEqualTypeOf<Float32Array | undefined>();
    const typed: AttentionOptions = { returnLse: true };
    expectTypeOf((await backend.attention(inputs, typed)).lse).toEqualTypeOf<Float32Array | undefined>();
    const asConst = { returnLse: true } as const;
    expectTypeOf((await backend.attention(inputs, asConst)).lse).toEqualTypeOf<Float32Array>();
    // A typo next to a valid option is still a compile error (the generic keeps excess-property checks).
    // @ts-expect-error retrunLse is not an option
    await backend.attention(inputs, { causal: true, retrunLse: true }).catch(() => undefined);
    expectTypeOf<AttentionResultFor<AttentionOptions>>().toExtend<AttentionResult>();
    expectTypeOf<AttentionResult>().toExtend<AttentionResultFor<AttentionOptions>>();
    expectTypeOf<AttentionResultFor<{ returnLse: true }>['lse']>().toEqualTypeOf<Float32Array>();
    await backend.dispose();
  });

  it('keeps every BackendImplementation wrapped by createBackend an AttentionBackend', () => {
    expectTypeOf(createBackend).toEqualTypeOf<(implementation: BackendImplementation) => AttentionBackend>();
    expectTypeOf<AttentionBackend>().toExtend<Pick<AttentionBackend, 'attention' | 'matmul'>>();
  });

  it('lets a factory be sync or async and take no argument', () => {
    expectTypeOf<BackendFactory>().toEqualTypeOf<() => AttentionBackend | Promise<AttentionBackend>>();
    expectTypeOf<(options: { threads: number }) => AttentionBackend>().not.toExtend<BackendFactory>();
    expectTypeOf<(options?: { threads: number }) => AttentionBackend>().toExtend<BackendFactory>();
  });

  it('declares capabilities the conformance suite reads', () => {
    expectTypeOf<BackendCapabilities['features']>().toEqualTypeOf<readonly AttentionFeature[]>();
    expectTypeOf<BackendCapabilities['tolerance']>().toEqualTypeOf<Tolerance>();
    expectTypeOf<Tolerance>().toEqualTypeOf<{ atol: number; rtol: number; fudge?: number }>();
    expectTypeOf<BackendCapabilities['deterministic']>().toEqualTypeOf<boolean>();
    expectTypeOf<BackendCapabilities['notes']>().toEqualTypeOf<readonly string[]>();
    expectTypeOf<BackendMemory>().toEqualTypeOf<{ hostBytes: number; deviceBytes: number }>();
  });

  it('wraps an implementation that receives resolved problems', () => {
    expectTypeOf(createBackend).toEqualTypeOf<(implementation: BackendImplementation) => AttentionBackend>();
    expectTypeOf<BackendImplementation['attention']>().toEqualTypeOf<
      (problem: AttentionProblem) => Promise<AttentionResult>
    >();
    expectTypeOf<BackendImplementation['matmul']>().toEqualTypeOf<
      (problem: MatmulProblem) => Promise<Float32Array>
    >();
    expectTypeOf<BackendImplementation['capabilities']>().toEqualTypeOf<() => BackendCapabilities>();
  });
});

describe('errors', () => {
  it('has one error class with a closed set of codes', () => {
    expectTypeOf<AttnkitErrorCode>().toEqualTypeOf<
      'invalid-argument' | 'unsupported' | 'unavailable' | 'disposed' | 'device'
    >();
    expectTypeOf<AttnkitError>().toExtend<Error>();
    expectTypeOf<AttnkitError['code']>().toEqualTypeOf<AttnkitErrorCode>();
    expectTypeOf<AttnkitError['argument']>().toEqualTypeOf<string | undefined>();
    expectTypeOf<AttnkitError['expected']>().toEqualTypeOf<string | undefined>();
    expectTypeOf<AttnkitError['actual']>().toEqualTypeOf<string | undefined>();
    expectTypeOf(isAttnkitError).guards.toEqualTypeOf<AttnkitError>();
    const error = new AttnkitError('invalid-argument', 'x: must be 1, got 2', {
      argument: 'x',
      expected: '1',
      actual: '2',
    });
    expect(isAttnkitError(error)).toBe(true);
    expect(error).toBeInstanceOf(Error);
  });
});

describe('reference and counting', () => {
  it('computes in float64', () => {
    expectTypeOf(referenceAttention64).returns.toEqualTypeOf<ReferenceResult64>();
    expectTypeOf(referenceAttentionProblem64).returns.toEqualTypeOf<ReferenceResult64>();
    expectTypeOf<ReferenceResult64>().toEqualTypeOf<{
      output: Float64Array;
      lse?: Float64Array;
      weights?: Float64Array;
    }>();
    expectTypeOf(referenceMatmul64).returns.toEqualTypeOf<Float64Array>();
  });

  it('counts parameters and FLOPs with plain numbers', () => {
    expectTypeOf(countParameters).toEqualTypeOf<(config: LayerConfig) => ParameterCount>();
    expectTypeOf<ParameterCount['total']>().toEqualTypeOf<number>();
    expectTypeOf(attentionFlops).returns.toEqualTypeOf<AttentionFlops>();
    expectTypeOf(attentionFlops)
      .parameter(1)
      .toEqualTypeOf<Pick<AttentionOptions, 'causal' | 'slidingWindow' | 'keyMask'> | undefined>();
    expect(countParameters({ modelDim: 12288, queryHeads: 96, headDim: 128, layers: 96 }).total).toBe(
      57_982_058_496,
    );
  });

  it('runs the multi-head attention layer on anything with attention and matmul (its own layer when it has one)', () => {
    expectTypeOf(multiHeadAttention)
      .parameter(0)
      .toEqualTypeOf<
        Pick<AttentionBackend, 'attention' | 'matmul'> & Partial<Pick<AttentionBackend, 'multiHeadAttention'>>
      >();
    expectTypeOf<Pick<AttentionBackend, 'attention' | 'matmul'>>().toExtend<
      Parameters<typeof multiHeadAttention>[0]
    >();
    expectTypeOf<AttentionBackend>().toExtend<Parameters<typeof multiHeadAttention>[0]>();
    expectTypeOf(multiHeadAttention).returns.toEqualTypeOf<Promise<AttentionResult>>();
  });
});
