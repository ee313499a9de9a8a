import {
  ALL_FEATURES,
  type AttentionBackend,
  type AttentionBackwardProblem,
  type AttentionFeature,
  type AttentionGradients,
  type AttentionInputs,
  type AttentionOptions,
  type AttentionProblem,
  type AttentionResult,
  type AttentionResultFor,
  type BackendCapabilities,
  type BackendLimits,
  createBackend,
  type KnownAttentionOptions,
  type LayerInputs,
  multiHeadAttention,
  queryPosition,
  referenceAttentionBackwardProblem64,
  referenceAttentionProblem64,
  referenceMatmul64,
  roundGradients,
  validateAttention,
} from '@attnkit/spec';

/** The reference backend's capabilities, with overrides. */
export function capabilitiesOf(overrides: Partial<BackendCapabilities> = {}): BackendCapabilities {
  return {
    features: [...ALL_FEATURES, 'backward'],
    limits: {},
    tolerance: { atol: 1e-7, rtol: 1e-6 },
    deterministic: true,
    engine: 'test wrapper of the float64 reference',
    threads: 1,
    notes: [],
    ...overrides,
  };
}

function toResult(result: ReturnType<typeof referenceAttentionProblem64>): AttentionResult {
  return {
    output: Float32Array.from(result.output),
    ...(result.lse && { lse: Float32Array.from(result.lse) }),
    ...(result.weights && { weights: Float32Array.from(result.weights) }),
  };
}

export interface WrapOptions {
  name?: string;
  capabilities?: Partial<BackendCapabilities>;
  /** Rewrites the problem before the reference sees it: the planted bug. */
  transform?: (problem: AttentionProblem) => AttentionProblem;
  /** Rewrites the result after: the planted bug. */
  after?: (result: AttentionResult, problem: AttentionProblem) => AttentionResult;
  /** Rewrites the reference gradients of a backward call: a planted backward bug. */
  backward?: (gradients: AttentionGradients, problem: AttentionBackwardProblem) => AttentionGradients;
  /** memory() to report after `calls` attention calls. */
  memory?: (calls: number) => { hostBytes: number; deviceBytes: number };
}

/** A reference backend through the spec's `createBackend`, with a bug planted by `transform`/`after`. */
export function wrapReference(options: WrapOptions = {}): AttentionBackend {
  const capabilities = capabilitiesOf(options.capabilities);
  let calls = 0;
  return createBackend({
    name: options.name ?? 'broken',
    capabilities: () => capabilities,
    init: async () => {},
    attention: async (problem) => {
      calls++;
      const planted = options.transform ? options.transform(problem) : problem;
      const result = toResult(referenceAttentionProblem64(planted));
      return options.after ? options.after(result, problem) : result;
    },
    attentionBackward: async (problem) => {
      const gradients = roundGradients(referenceAttentionBackwardProblem64(problem));
      return options.backward ? options.backward(gradients, problem) : gradients;
    },
    matmul: async ({ a, b, bias, shape }) =>
      Float32Array.from(referenceMatmul64(a, b, shape.m, shape.k, shape.n, bias)),
    memory: () => (options.memory ? options.memory(calls) : { hostBytes: 0, deviceBytes: 0 }),
    dispose: async () => {},
  });
}

/** A full `[B, Hq, Lq, Lk]` bias holding the problem's own bias plus `extra(b, h, i, j)`. */
function fullBias(problem: AttentionProblem, extra: (b: number, h: number, i: number, j: number) => number) {
  const { batch: B, queryHeads: Hq, queryLength: Lq, keyLength: Lk } = problem.shape;
  const data = new Float32Array(B * Hq * Lq * Lk);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++)
      for (let i = 0; i < Lq; i++)
        for (let j = 0; j < Lk; j++) {
          let value = extra(b, h, i, j);
          if (problem.bias) {
            const [sb, sh, si, sj] = problem.bias.strides;
            value += problem.bias.data[b * sb + h * sh + i * si + j * sj];
          }
          data[((b * Hq + h) * Lq + i) * Lk + j] = value;
        }
  const shape = [B, Hq, Lq, Lk] as const;
  return { data, shape, strides: [Hq * Lq * Lk, Lq * Lk, Lk, 1] as const };
}

/** The planted bugs the suite must catch, each with the cases that must fail. */
export const BROKEN: Record<string, { wrap: WrapOptions; filter: RegExp; mustFail: string[] }> = {
  'scale off by 1%': {
    wrap: { transform: (p) => ({ ...p, scale: p.scale * 1.01 }) },
    filter: /^options\//,
    mustFail: ['options/default-scale', 'options/scale-0.37', 'options/causal'],
  },
  'causal off by one': {
    wrap: {
      // Sees only keys strictly before its own position: j < p_i instead of j <= p_i.
      transform: (p) => {
        if (!p.causal) return p;
        const { queryLength: Lq, keyLength: Lk } = p.shape;
        const bias = fullBias(p, (_b, _h, i, j) =>
          j >= queryPosition(i, Lq, Lk) ? Number.NEGATIVE_INFINITY : 0,
        );
        return { ...p, causal: false, bias };
      },
    },
    filter: /^(options|positions)\//,
    mustFail: [
      'options/causal',
      'options/alibi-causal',
      'positions/causal-lq-lt-lk',
      'positions/decode-causal',
    ],
  },
  'keyMask ignored': {
    wrap: { transform: (p) => ({ ...p, keyMask: null }) },
    filter: /^(options|masked|cross)\//,
    mustFail: [
      'options/keyMask',
      'options/keyMask-prefix',
      'masked/keyMask-whole-batch',
      'masked/nan-in-masked-values',
      'cross/keyMask',
    ],
  },
  'sinks ignored': {
    wrap: { transform: (p) => ({ ...p, sinks: null }) },
    filter: /^(options|heads)\//,
    mustFail: ['options/sinks', 'options/sinks-large', 'heads/gqa-alibi-sinks'],
  },
  'GQA mapping wrong (h % Hkv)': {
    wrap: {
      transform: (p) => {
        const { batch: B, queryHeads: Hq, kvHeads: Hkv, keyLength: Lk, headDim: D, valueDim: Dv } = p.shape;
        if (Hkv === Hq) return p;
        const expand = (source: Float32Array, dim: number) => {
          const out = new Float32Array(B * Hq * Lk * dim);
          for (let b = 0; b < B; b++)
            for (let h = 0; h < Hq; h++) {
              const g = h % Hkv; // the bug: interleaved instead of floor(h / (Hq / Hkv))
              out.set(
                source.subarray((b * Hkv + g) * Lk * dim, (b * Hkv + g + 1) * Lk * dim),
                (b * Hq + h) * Lk * dim,
              );
            }
          return out;
        };
        return { ...p, k: expand(p.k, D), v: expand(p.v, Dv), shape: { ...p.shape, kvHeads: Hq } };
      },
    },
    filter: /^heads\//,
    mustFail: ['heads/gqa-4-2', 'heads/gqa-6-3-causal', 'heads/gqa-6-2-lse-weights'],
  },
  'NaN on a fully masked row': {
    wrap: {
      after: (result, problem) => {
        const lse = referenceAttentionProblem64({ ...problem, returnLse: true }).lse as Float64Array;
        const Dv = problem.shape.valueDim;
        lse.forEach((value, row) => {
          if (value === Number.NEGATIVE_INFINITY) result.output.fill(Number.NaN, row * Dv, (row + 1) * Dv);
        });
        return result;
      },
    },
    filter: /^masked\//,
    mustFail: ['masked/keyMask-whole-batch', 'masked/keyMask-everything', 'masked/causal-lq-gt-lk'],
  },
  'bias broadcast wrong (full strides always)': {
    wrap: {
      transform: (p) => {
        if (!p.bias) return p;
        const { queryHeads: Hq, queryLength: Lq, keyLength: Lk } = p.shape;
        return { ...p, bias: { ...p.bias, strides: [Hq * Lq * Lk, Lq * Lk, Lk, 1] } };
      },
    },
    filter: /^options\/bias/,
    mustFail: ['options/bias-[1,1,1,Lk]', 'options/bias-[1,Hq,Lq,Lk]', 'options/bias-[B,1,1,1]'],
  },
  'ALiBi sign flipped': {
    wrap: { transform: (p) => (p.alibiSlopes ? { ...p, alibiSlopes: p.alibiSlopes.map((x) => -x) } : p) },
    filter: /^(options|positions)\/alibi/,
    mustFail: ['options/alibi', 'options/alibi-causal', 'positions/alibi-lq-lt-lk'],
  },
  'top-left instead of bottom-right alignment': {
    wrap: {
      // positions p_i = i: causal masks j > i whatever Lk is
      transform: (p) => {
        if (!p.causal || p.shape.queryLength === p.shape.keyLength) return p;
        const bias = fullBias(p, (_b, _h, i, j) => (j > i ? Number.NEGATIVE_INFINITY : 0));
        return { ...p, causal: false, bias };
      },
    },
    filter: /^positions\//,
    mustFail: ['positions/causal-lq-lt-lk', 'positions/causal-lq-gt-lk', 'positions/decode-causal'],
  },
  'slidingWindow off by one': {
    wrap: { transform: (p) => (p.slidingWindow === null ? p : { ...p, slidingWindow: p.slidingWindow + 1 }) },
    filter: /^options\/window/,
    mustFail: ['options/window-1', 'options/window-3', 'options/window-3-causal'],
  },
  'lse in base 2': {
    wrap: {
      after: (result) => (result.lse ? { ...result, lse: result.lse.map((x) => x / Math.LN2) } : result),
    },
    filter: /^options\//,
    mustFail: ['options/returnLse', 'options/lse-and-weights'],
  },
  'weights leave the sink out of the denominator': {
    wrap: {
      after: (result, problem) => {
        if (!problem.returnWeights || !problem.sinks) return result;
        const weights = referenceAttentionProblem64({ ...problem, sinks: null }).weights as Float64Array;
        return { ...result, weights: Float32Array.from(weights) };
      },
    },
    filter: /^(options|combos|masked)\//,
    mustFail: ['combos/sinks-keyMask-weights', 'options/all'],
  },
  'lse missing the sink': {
    wrap: {
      after: (result, problem) => {
        if (!problem.returnLse || !problem.sinks) return result;
        const withoutSink = referenceAttentionProblem64({ ...problem, sinks: null }).lse as Float64Array;
        return { ...result, lse: Float32Array.from(withoutSink) };
      },
    },
    filter: /^(options|masked|combos)\//,
    mustFail: ['options/sinks-large', 'masked/with-sinks', 'combos/causal-sinks-lse'],
  },
};

/** A scaled copy. */
function scaled(values: Float32Array, factor: number): Float32Array {
  return values.map((value) => value * factor);
}

/** The planted backward bugs the `backward/*` cases must catch. */
export const BROKEN_BACKWARD: Record<string, { wrap: WrapOptions; mustFail: string[] }> = {
  'gradQ and gradK off by the scale (scale applied twice)': {
    wrap: {
      backward: (g, problem) => ({
        ...g,
        gradQ: scaled(g.gradQ, problem.scale),
        gradK: scaled(g.gradK, problem.scale),
      }),
    },
    mustFail: ['backward/default', 'backward/scale', 'backward/causal', 'backward/gqa'],
  },
  'gradK/gradV not summed over a GQA group (only its first query head)': {
    wrap: {
      backward: (g, problem) => {
        const { queryHeads: Hq, kvHeads: Hkv } = problem.shape;
        if (Hq === Hkv) return g;
        // Recompute with the group reduced to its first head: gradients of the other heads dropped.
        const group = Hq / Hkv;
        const dO = problem.gradOutput.slice();
        const { batch: B, queryLength: Lq, valueDim: Dv } = problem.shape;
        for (let b = 0; b < B; b++)
          for (let h = 0; h < Hq; h++)
            if (h % group !== 0) dO.fill(0, (b * Hq + h) * Lq * Dv, (b * Hq + h + 1) * Lq * Dv);
        const firstOnly = roundGradients(referenceAttentionBackwardProblem64({ ...problem, gradOutput: dO }));
        return { ...g, gradK: firstOnly.gradK, gradV: firstOnly.gradV };
      },
    },
    mustFail: ['backward/gqa', 'backward/mqa-causal', 'backward/everything'],
  },
  'gradSinks with the wrong sign': {
    wrap: {
      backward: (g) => (g.gradSinks ? { ...g, gradSinks: scaled(g.gradSinks, -1) } : g),
    },
    mustFail: ['backward/sinks', 'backward/sinks-large', 'backward/everything'],
  },
  'gradBias not summed over its broadcast dimensions (the first cell only)': {
    wrap: {
      backward: (g, problem) => {
        if (!problem.bias || !g.gradBias) return g;
        // the bug: only the [0, 0, 0, :] cells' dS instead of the sum over broadcast dims
        const first = referenceAttentionBackwardProblem64({ ...problem, gradOutput: firstRowOnly(problem) });
        return { ...g, gradBias: Float32Array.from(first.gradBias as Float64Array) };
      },
    },
    mustFail: ['backward/bias-per-head', 'backward/bias-key-row', 'backward/bias-scalar'],
  },
  'fully masked rows return NaN (exp(-inf - -inf))': {
    wrap: {
      backward: (g, problem) => {
        const { batch: B, queryHeads: Hq, queryLength: Lq, headDim: D } = problem.shape;
        const gradQ = g.gradQ.slice();
        for (let row = 0; row < B * Hq * Lq; row++)
          if (problem.lse[row] === Number.NEGATIVE_INFINITY) gradQ.fill(Number.NaN, row * D, (row + 1) * D);
        return { ...g, gradQ };
      },
    },
    mustFail: ['backward/masked-batch-row', 'backward/masked-rows-causal'],
  },
  'dV from the unnormalised weights (lse ignored)': {
    wrap: {
      backward: (g, problem) => ({ ...g, gradV: scaled(g.gradV, Math.exp(problem.lse[0])) }),
    },
    mustFail: ['backward/default', 'backward/causal'],
  },
};

/** gradOutput with every row but the first query of the first head of each batch zeroed. */
function firstRowOnly(problem: AttentionBackwardProblem): Float32Array {
  const { batch: B, queryHeads: Hq, queryLength: Lq, valueDim: Dv } = problem.shape;
  const dO = new Float32Array(problem.gradOutput.length);
  for (let b = 0; b < B; b++) {
    const row = (b * Hq + 0) * Lq + 0;
    dO.set(problem.gradOutput.subarray(row * Dv, (row + 1) * Dv), row * Dv);
  }
  return dO;
}

/**
 * A backend that says it lacks `missing` features and has `limits`, but does not use `createBackend`'s
 * capability check: it runs every call anyway (`honest: false`) — a silent-ignore bug.
 */
export function ignoringBackend(
  missing: AttentionFeature[],
  limits: BackendLimits,
  honest: boolean,
): AttentionBackend {
  const capabilities = capabilitiesOf({ features: ALL_FEATURES.filter((f) => !missing.includes(f)), limits });
  if (honest) return wrapReference({ name: 'limited', capabilities });
  const inner = wrapReference({ name: 'ignoring' });
  const backend: AttentionBackend = {
    name: 'ignoring',
    capabilities,
    init: () => inner.init(),
    attention: async <O extends AttentionOptions = AttentionOptions>(
      inputs: AttentionInputs,
      options?: KnownAttentionOptions<O>,
    ): Promise<AttentionResultFor<O>> => {
      const problem = validateAttention(inputs, options);
      // the bug: unsupported options are dropped instead of rejected
      const stripped: AttentionOptions = { ...options };
      if (missing.includes('sinks')) delete stripped.sinks;
      if (missing.includes('bias')) delete stripped.bias;
      void problem;
      // Stripping options changes what the call returns; the cast is the bug's, not the API's.
      return inner.attention(inputs, stripped) as Promise<AttentionResultFor<O>>;
    },
    attentionBackward: (inputs, options) => inner.attentionBackward(inputs, options),
    matmul: (inputs) => inner.matmul(inputs),
    // The layer composed over this backend's own (option-dropping) attention, so the bug shows there too.
    multiHeadAttention: <O extends AttentionOptions = AttentionOptions>(
      inputs: LayerInputs,
      options?: KnownAttentionOptions<O>,
    ) =>
      multiHeadAttention(
        { attention: backend.attention, matmul: backend.matmul },
        inputs,
        options,
      ) as Promise<AttentionResultFor<O>>,
    createKVCache: (config) => inner.createKVCache(config),
    memory: () => inner.memory(),
    dispose: () => inner.dispose(),
  };
  return backend;
}
