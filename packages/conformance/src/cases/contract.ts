import {
  ALL_FEATURES,
  type AttentionBackend,
  type AttentionFeature,
  type AttentionInputs,
  type AttentionOptions,
  type AttentionShape,
  type BackendCapabilities,
  type BackendLimits,
  type MatmulInputs,
  METHOD_FEATURES,
  referenceAttentionProblem64,
  validateAttention,
} from '@attnkit/spec';
import { checkAttention, expectRejection, unsupportedReason } from '../check.js';
import { Comparison, describe, toleranceProblems } from '../compare.js';
import { naiveAttention32 } from '../naive.js';
import { DataSource, hashString } from '../random.js';
import type { CaseContext, CaseOutcome, ConformanceCase } from '../types.js';
import { attentionWork, customCase, full, uniformInputs } from './helpers.js';

const SHAPE: AttentionShape = { batch: 1, queryHeads: 2, queryLength: 3, headDim: 2 };

function validInputs(): AttentionInputs {
  return uniformInputs(new DataSource(7), SHAPE);
}

/** Bad input on purpose: the cases pass values the types forbid. */
function loose<T>(value: unknown): T {
  return value as T;
}

type Mutation = (inputs: Record<string, unknown>, options: Record<string, unknown>) => void;

function invalidAttention(name: string, title: string, argument: string, mutate: Mutation): ConformanceCase {
  return customCase(
    `invalid/${name}`,
    `rejects ${title} (invalid-argument naming ${argument})`,
    0,
    async (context) => {
      const good = validInputs();
      const inputs: Record<string, unknown> = { ...good, shape: { ...good.shape } };
      const options: Record<string, unknown> = {};
      mutate(inputs, options);
      const backend = await context.backend();
      return expectRejection(
        () => backend.attention(loose<AttentionInputs>(inputs), loose<AttentionOptions>(options)),
        'invalid-argument',
        argument,
      );
    },
  );
}

function invalidMatmul(
  name: string,
  title: string,
  argument: string,
  mutate: (inputs: Record<string, unknown>) => void,
): ConformanceCase {
  return customCase(
    `invalid/${name}`,
    `matmul rejects ${title} (invalid-argument naming ${argument})`,
    0,
    async (context) => {
      const data = new DataSource(11);
      const inputs: Record<string, unknown> = {
        a: data.uniform(6),
        b: data.uniform(12),
        shape: { m: 2, k: 3, n: 4 },
      };
      mutate(inputs);
      const backend = await context.backend();
      return expectRejection(() => backend.matmul(loose<MatmulInputs>(inputs)), 'invalid-argument', argument);
    },
  );
}

const setShape =
  (key: string, value: unknown): Mutation =>
  (inputs) => {
    (inputs.shape as Record<string, unknown>)[key] = value;
  };
const setOption =
  (key: string, value: unknown): Mutation =>
  (_inputs, options) => {
    options[key] = value;
  };

function invalidCases(): ConformanceCase[] {
  const bias = (shape: number[], length = shape.reduce((a, b) => a * b, 1)) => ({
    data: new Float32Array(length),
    shape,
  });
  return [
    invalidAttention('q-length', 'q of the wrong length', 'q', (i) => {
      i.q = new Float32Array(11);
    }),
    invalidAttention('k-length', 'k of the wrong length', 'k', (i) => {
      i.k = new Float32Array(13);
    }),
    invalidAttention('v-length', 'v of the wrong length', 'v', (i) => {
      i.v = new Float32Array(1);
    }),
    invalidAttention('q-float64', 'q as a Float64Array', 'q', (i) => {
      i.q = new Float64Array(12);
    }),
    invalidAttention('k-plain-array', 'k as a plain array', 'k', (i) => {
      i.k = Array.from({ length: 12 }, () => 0);
    }),
    invalidAttention('v-missing', 'a missing v', 'v', (i) => {
      delete i.v;
    }),
    invalidAttention('inputs-unknown-key', 'an unknown key in inputs', 'inputs', (i) => {
      i.mask = new Uint8Array(3);
    }),
    invalidAttention('batch-zero', 'batch 0', 'shape.batch', setShape('batch', 0)),
    invalidAttention('heads-negative', 'queryHeads -2', 'shape.queryHeads', setShape('queryHeads', -2)),
    invalidAttention(
      'length-non-integer',
      'queryLength 2.5',
      'shape.queryLength',
      setShape('queryLength', 2.5),
    ),
    invalidAttention('keyLength-zero', 'keyLength 0', 'shape.keyLength', setShape('keyLength', 0)),
    invalidAttention('headDim-nan', 'headDim NaN', 'shape.headDim', setShape('headDim', Number.NaN)),
    invalidAttention('kvHeads-zero', 'kvHeads 0', 'shape.kvHeads', setShape('kvHeads', 0)),
    invalidAttention('valueDim-string', 'valueDim "2"', 'shape.valueDim', setShape('valueDim', '2')),
    invalidAttention(
      'heads-not-divisible',
      'queryHeads 2 over kvHeads 3 (Hq % Hkv != 0)',
      'shape.queryHeads',
      setShape('kvHeads', 3),
    ),
    invalidAttention('shape-unknown-key', 'an unknown shape key', 'shape.seqLen', setShape('seqLen', 3)),
    invalidAttention('option-unknown-key', 'an unknown option', 'options.mask', setOption('mask', true)),
    invalidAttention(
      'bias-not-broadcastable',
      'a bias dimension that is neither 1 nor full',
      'options.bias.shape[2]',
      setOption('bias', bias([1, 2, 2, 3])),
    ),
    invalidAttention(
      'bias-rank',
      'a 3-d bias shape',
      'options.bias.shape',
      setOption('bias', bias([2, 3, 3])),
    ),
    invalidAttention(
      'bias-data-length',
      'bias data of the wrong length',
      'options.bias.data',
      setOption('bias', bias([1, 1, 3, 3], 8)),
    ),
    invalidAttention(
      'bias-data-float64',
      'bias data as a Float64Array',
      'options.bias.data',
      setOption('bias', { data: new Float64Array(9), shape: [1, 1, 3, 3] }),
    ),
    invalidAttention(
      'window-zero',
      'slidingWindow 0',
      'options.slidingWindow',
      setOption('slidingWindow', 0),
    ),
    invalidAttention(
      'window-non-integer',
      'slidingWindow 1.5',
      'options.slidingWindow',
      setOption('slidingWindow', 1.5),
    ),
    invalidAttention(
      'keyMask-length',
      'a keyMask of the wrong length',
      'options.keyMask',
      setOption('keyMask', new Uint8Array(2)),
    ),
    invalidAttention(
      'keyMask-type',
      'a keyMask that is not a Uint8Array',
      'options.keyMask',
      setOption('keyMask', new Float32Array(3)),
    ),
    invalidAttention('softcap-zero', 'softcap 0', 'options.softcap', setOption('softcap', 0)),
    invalidAttention('softcap-negative', 'softcap -1', 'options.softcap', setOption('softcap', -1)),
    invalidAttention('scale-nan', 'scale NaN', 'options.scale', setOption('scale', Number.NaN)),
    invalidAttention(
      'scale-infinite',
      'scale Infinity',
      'options.scale',
      setOption('scale', Number.POSITIVE_INFINITY),
    ),
    invalidAttention(
      'alibi-length',
      'alibiSlopes of the wrong length',
      'options.alibiSlopes',
      setOption('alibiSlopes', new Float32Array(3)),
    ),
    invalidAttention(
      'sinks-length',
      'sinks of the wrong length',
      'options.sinks',
      setOption('sinks', new Float32Array(1)),
    ),
    invalidAttention('causal-not-boolean', 'causal 1', 'options.causal', setOption('causal', 1)),
    invalidAttention(
      'returnLse-not-boolean',
      'returnLse "yes"',
      'options.returnLse',
      setOption('returnLse', 'yes'),
    ),
    invalidMatmul('matmul-a-length', 'a of the wrong length', 'a', (i) => {
      i.a = new Float32Array(5);
    }),
    invalidMatmul('matmul-b-float64', 'b as a Float64Array', 'b', (i) => {
      i.b = new Float64Array(12);
    }),
    invalidMatmul('matmul-bias-length', 'a bias of the wrong length', 'bias', (i) => {
      i.bias = new Float32Array(3);
    }),
    invalidMatmul('matmul-shape-zero', 'm 0', 'shape.m', (i) => {
      i.shape = { m: 0, k: 3, n: 4 };
    }),
    customCase(
      'invalid/before-any-work',
      'bad input on a fresh backend rejects without allocating, and the backend still works',
      attentionWork(SHAPE),
      async (context) => {
        const backend = await context.fresh();
        const before = backend.memory();
        const outcome = await expectRejection(
          () => backend.attention(loose<AttentionInputs>({ ...validInputs(), q: new Float32Array(5) })),
          'invalid-argument',
          'q',
        );
        if (!outcome.ok) return outcome;
        const after = backend.memory();
        if (after.hostBytes !== before.hostBytes || after.deviceBytes !== before.deviceBytes) {
          return {
            ok: false,
            expectation: 'reject-invalid-argument',
            message: `memory() went from ${JSON.stringify(before)} to ${JSON.stringify(after)} on rejected input`,
          };
        }
        const checked = await checkAttention(backend, context.capabilities, context.tolerance, validInputs());
        return {
          ...checked,
          expectation: 'reject-invalid-argument',
          message: checked.ok ? outcome.message : `after the rejection: ${checked.message}`,
        };
      },
    ),
    everyEntryPointCase(),
  ];
}

/** One bad call for every entry point of the contract, with the argument its error must name. */
function badEntryPointCalls(backend: AttentionBackend): [string, () => Promise<unknown>, string][] {
  const good = validInputs();
  // SHAPE: output [1, 2, 3, 2], lse [1, 2, 3]; gradOutput one element short.
  const backward = {
    ...good,
    output: new Float32Array(12),
    lse: new Float32Array(6),
    gradOutput: new Float32Array(11),
  };
  const layer = {
    x: new Float32Array(3 * 4),
    shape: { batch: 1, queryLength: 3, modelDim: 4, queryHeads: 2, headDim: 2 },
    weights: {
      wq: new Float32Array(16),
      wk: new Float32Array(16),
      wv: new Float32Array(16),
      wo: new Float32Array(16),
    },
  };
  return [
    ['attention', () => backend.attention({ ...good, k: new Float32Array(5) }), 'k'],
    ['attentionBackward', () => backend.attentionBackward(backward), 'gradOutput'],
    [
      'matmul',
      () => backend.matmul({ a: new Float32Array(6), b: new Float32Array(5), shape: { m: 2, k: 3, n: 2 } }),
      'b',
    ],
    ['multiHeadAttention', () => backend.multiHeadAttention({ ...layer, x: new Float32Array(11) }), 'x'],
    [
      'multiHeadAttention options',
      () => backend.multiHeadAttention(layer, { sinks: new Float32Array(3) }),
      'options.sinks',
    ],
    ['createKVCache', () => backend.createKVCache({ batch: 1, kvHeads: 0, headDim: 2 }), 'config.kvHeads'],
  ];
}

/** Every entry point on a fresh backend: bad input rejects naming the argument, allocating nothing. */
function everyEntryPointCase(): ConformanceCase {
  return customCase(
    'invalid/every-entry-point',
    "bad input to attention, attentionBackward, matmul, multiHeadAttention and createKVCache (and a KV cache's append, attention and truncate) rejects naming the argument, allocating nothing",
    attentionWork(SHAPE),
    async (context) => {
      const backend = await context.fresh();
      const problems: string[] = [];
      const unchanged = (entry: string, before: { hostBytes: number; deviceBytes: number }) => {
        const after = backend.memory();
        if (after.hostBytes !== before.hostBytes || after.deviceBytes !== before.deviceBytes)
          problems.push(`${entry}: memory() went from ${JSON.stringify(before)} to ${JSON.stringify(after)}`);
      };
      const expectNamed = async (entry: string, call: () => Promise<unknown>, argument: string) => {
        const before = backend.memory();
        const outcome = await expectRejection(call, 'invalid-argument', argument);
        if (!outcome.ok) problems.push(`${entry}: ${outcome.message}`);
        unchanged(entry, before);
      };
      // Fresh (never initialised), then initialised: validation comes before any allocation both times.
      for (const round of ['fresh', 'initialised']) {
        if (round === 'initialised') await backend.init();
        for (const [entry, call, argument] of badEntryPointCalls(backend))
          await expectNamed(`${entry} (${round})`, call, argument);
      }
      if (context.capabilities.features.includes('kvCache')) {
        const cache = await backend.createKVCache({ batch: 1, kvHeads: 2, headDim: 2 });
        try {
          await cache.append({ k: new Float32Array(4), v: new Float32Array(4), tokens: 1 });
          const calls: [string, () => Promise<unknown>, string][] = [
            [
              'cache.append',
              () => cache.append({ k: new Float32Array(4), v: new Float32Array(3), tokens: 1 }),
              'chunk.v',
            ],
            [
              'cache.attention',
              () => cache.attention({ q: new Float32Array(3), queryHeads: 2, queryLength: 1 }),
              'query.q',
            ],
            ['cache.truncate', () => cache.truncate(2), 'lengths'],
          ];
          for (const [entry, call, argument] of calls) await expectNamed(entry, call, argument);
          if (cache.lengths[0] !== 1)
            problems.push(`the cache's length is ${cache.lengths[0]} after rejected calls, expected 1`);
        } finally {
          await cache.dispose();
        }
      }
      if (problems.length > 0)
        return { ok: false, expectation: 'reject-invalid-argument', message: problems.join('; ') };
      const checked = await checkAttention(backend, context.capabilities, context.tolerance, validInputs());
      return {
        ...checked,
        expectation: 'reject-invalid-argument',
        message: checked.ok ? null : `after the rejections: ${checked.message}`,
      };
    },
  );
}

async function oneCall(backend: AttentionBackend): Promise<unknown> {
  return backend.attention(validInputs());
}

function lifecycleCases(): ConformanceCase[] {
  const work = attentionWork(SHAPE);
  return [
    customCase(
      'lifecycle/capabilities',
      'capabilities are well formed (features, limits, tolerance, engine)',
      0,
      async (context) => {
        const problems: string[] = [];
        const caps = context.capabilities;
        const known = new Set<string>([...ALL_FEATURES, ...METHOD_FEATURES]);
        if (!Array.isArray(caps.features)) problems.push('features is not an array');
        else
          for (const feature of caps.features)
            if (!known.has(feature)) problems.push(`unknown feature ${JSON.stringify(feature)}`);
        problems.push(...toleranceProblems(caps.tolerance));
        for (const [key, value] of Object.entries(caps.limits ?? {})) {
          if (!(Number.isInteger(value) && (value as number) >= 1)) problems.push(`limits.${key} = ${value}`);
        }
        if (typeof caps.engine !== 'string' || caps.engine === '') problems.push('engine is empty');
        if (!(Number.isInteger(caps.threads) && caps.threads >= 1))
          problems.push(`threads = ${caps.threads}`);
        if (typeof caps.deterministic !== 'boolean') problems.push('deterministic is not a boolean');
        if (!Array.isArray(caps.notes)) problems.push('notes is not an array');
        return {
          ok: problems.length === 0,
          expectation: 'behaviour',
          message: problems.length ? problems.join('; ') : null,
        };
      },
    ),
    customCase(
      'lifecycle/init-idempotent',
      'init() twice (together and after) resolves, then calls work',
      work,
      async (context) => {
        const backend = await context.fresh();
        await Promise.all([backend.init(), backend.init()]);
        await backend.init();
        return checkAttention(backend, context.capabilities, context.tolerance, validInputs());
      },
    ),
    customCase(
      'lifecycle/lazy-init',
      'the first call initialises a backend that was never init()ed',
      work,
      async (context) => {
        const backend = await context.fresh();
        return checkAttention(backend, context.capabilities, context.tolerance, validInputs(), {
          causal: true,
        });
      },
    ),
    customCase(
      'lifecycle/attention-after-dispose',
      'attention after dispose rejects with "disposed"',
      work,
      async (context) => {
        const backend = await context.fresh();
        await oneCall(backend);
        await backend.dispose();
        return expectRejection(() => oneCall(backend), 'disposed');
      },
    ),
    customCase(
      'lifecycle/matmul-after-dispose',
      'matmul after dispose rejects with "disposed"',
      0,
      async (context) => {
        const backend = await context.fresh();
        await backend.init();
        await backend.dispose();
        return expectRejection(
          () =>
            backend.matmul({ a: new Float32Array(2), b: new Float32Array(2), shape: { m: 1, k: 2, n: 1 } }),
          'disposed',
        );
      },
    ),
    customCase(
      'lifecycle/init-after-dispose',
      'init after dispose rejects with "disposed"',
      0,
      async (context) => {
        const backend = await context.fresh();
        await backend.init();
        await backend.dispose();
        return expectRejection(() => backend.init(), 'disposed');
      },
    ),
    customCase(
      'lifecycle/dispose-before-init',
      'dispose of a never-initialised backend resolves; later calls reject "disposed"',
      0,
      async (context) => {
        const backend = await context.fresh();
        await backend.dispose();
        return expectRejection(() => oneCall(backend), 'disposed');
      },
    ),
    customCase('lifecycle/dispose-idempotent', 'dispose() twice resolves', work, async (context) => {
      const backend = await context.fresh();
      await oneCall(backend);
      await Promise.all([backend.dispose(), backend.dispose()]);
      await backend.dispose();
      return { ok: true, expectation: 'behaviour' };
    }),
    customCase(
      'lifecycle/dispose-waits-for-calls',
      'calls in flight when dispose() starts still resolve correctly',
      4 * work,
      async (context) => {
        const backend = await context.fresh();
        await backend.init();
        const inputs = validInputs();
        const calls = [backend.attention(inputs), backend.attention(inputs, { causal: true })];
        const disposal = backend.dispose();
        const comparison = new Comparison(context.tolerance);
        const results = await Promise.allSettled(calls);
        await disposal;
        results.forEach((settled, index) => {
          if (settled.status === 'rejected') {
            comparison.fail(`call ${index} rejected: ${describe(settled.reason)}`);
            return;
          }
          const problem = validateAttention(inputs, index === 0 ? {} : { causal: true });
          comparison.tensor(
            `call ${index} output`,
            settled.value.output,
            referenceAttentionProblem64(problem).output,
            () => naiveAttention32(problem).output,
            problem.shape.valueDim,
          );
        });
        return {
          ok: comparison.ok,
          expectation: 'behaviour',
          worstAbsError: comparison.worstAbs,
          worstRelError: comparison.worstRel,
          errorRatio: comparison.worstRatio,
          message: comparison.summary(),
        };
      },
    ),
    customCase(
      'lifecycle/dispose-frees-memory',
      'after dispose, memory() is back where it was before init',
      20 * work,
      async (context) => {
        const backend = await context.fresh();
        const before = backend.memory();
        await backend.init();
        for (let call = 0; call < 10; call++) await oneCall(backend);
        await backend.matmul({
          a: new Float32Array(6),
          b: new Float32Array(12),
          shape: { m: 2, k: 3, n: 4 },
        });
        await backend.dispose();
        const after = backend.memory();
        const ok = after.hostBytes <= before.hostBytes && after.deviceBytes <= before.deviceBytes;
        return {
          ok,
          expectation: 'behaviour',
          message: `memory() before init ${JSON.stringify(before)}, after dispose ${JSON.stringify(after)}`,
        };
      },
    ),
  ];
}

const LIMIT_KEYS: (keyof BackendLimits)[] = [
  'batch',
  'queryHeads',
  'kvHeads',
  'queryLength',
  'keyLength',
  'headDim',
  'valueDim',
  'tensorElements',
];

/** Largest tensor a limit case will allocate: beyond it the case is omitted rather than eat memory. */
const LIMIT_ALLOCATION = 2 ** 24;

function limitShape(
  key: keyof BackendLimits,
  size: number,
  canWeights: boolean,
): [AttentionShape, AttentionOptions] | null {
  const shape: AttentionShape = { batch: 1, queryHeads: 1, queryLength: 1, headDim: 1 };
  switch (key) {
    case 'batch':
      return [{ ...shape, batch: size }, {}];
    case 'queryHeads':
    case 'kvHeads':
      return [{ ...shape, queryHeads: size, kvHeads: size }, {}];
    case 'queryLength':
    case 'keyLength':
      return [{ ...shape, queryLength: size, keyLength: size }, {}];
    case 'headDim':
      return [{ ...shape, headDim: size }, {}];
    case 'valueDim':
      return [{ ...shape, headDim: size, valueDim: size }, {}];
    case 'tensorElements': {
      if (canWeights) {
        const side = Math.ceil(Math.sqrt(size));
        return [{ ...shape, queryLength: side, keyLength: side }, { returnWeights: true }];
      }
      return [{ ...shape, batch: size }, {}];
    }
    default:
      return null;
  }
}

/**
 * With no declared limit, "as large as memory allows": a size well past the usual (300 heads, 2048
 * positions, D = 4096, 2^22-element tensors) must run and match the reference.
 */
function largeShape(
  key: keyof BackendLimits,
  capabilities: BackendCapabilities,
): [AttentionShape, AttentionOptions] {
  const has = (feature: AttentionFeature) => capabilities.features.includes(feature);
  const tiny: AttentionShape = { batch: 1, queryHeads: 1, queryLength: 2, headDim: 2 };
  switch (key) {
    case 'batch':
      return [{ ...tiny, batch: 300 }, {}];
    case 'queryHeads':
    case 'kvHeads':
      return [{ ...tiny, queryHeads: 300 }, {}];
    case 'queryLength':
      return [{ ...tiny, queryLength: 2048, headDim: 1 }, { causal: has('causal') }];
    case 'keyLength':
      return has('crossAttention')
        ? [{ ...tiny, queryLength: 1, keyLength: 65536, headDim: 4 }, {}]
        : [{ ...tiny, queryLength: 2048, headDim: 1 }, {}];
    case 'headDim':
      return [{ ...tiny, queryLength: 3, headDim: 4096 }, {}];
    case 'valueDim':
      return has('valueDim')
        ? [{ ...tiny, queryLength: 3, headDim: 4, valueDim: 4096 }, {}]
        : [{ ...tiny, queryLength: 3, headDim: 4096 }, {}];
    default:
      // tensorElements: one tensor of 2^22 elements at small cost
      if (has('crossAttention')) return [{ ...tiny, queryLength: 1, keyLength: 65536, headDim: 64 }, {}];
      if (has('returnWeights')) return [{ ...tiny, queryLength: 2048, headDim: 1 }, { returnWeights: true }];
      return [{ ...tiny, batch: 1024, queryLength: 1, headDim: 4096 }, {}];
  }
}

function limitCases(): ConformanceCase[] {
  return LIMIT_KEYS.map((key) =>
    customCase(
      `limits/${key}`,
      `above a declared limits.${key}: rejects "unsupported"; with none declared: a large ${key} runs right`,
      (_options, capabilities) => {
        if (capabilities === null || capabilities.limits[key] !== undefined) return 0;
        return attentionWork(largeShape(key, capabilities)[0]);
      },
      async (context) => {
        const limit = context.capabilities.limits[key];
        const backend = await context.backend();
        if (limit === undefined) {
          const [shape, options] = largeShape(key, context.capabilities);
          const inputs = uniformInputs(new DataSource(hashString(`large-${key}`)), shape);
          const outcome = await checkAttention(
            backend,
            context.capabilities,
            context.tolerance,
            inputs,
            options,
          );
          return {
            ...outcome,
            message: outcome.message ?? `no limits.${key} declared: ${JSON.stringify(shape)} ran`,
          };
        }
        const canWeights = context.capabilities.features.includes('returnWeights');
        const built = limitShape(key, limit + 1, canWeights);
        if (built === null)
          return { ok: false, expectation: 'reject-unsupported', message: `no shape for ${key}` };
        const [shape, options] = built;
        const s = full(shape);
        const largest = Math.max(
          s.batch * s.queryHeads * s.queryLength * Math.max(s.headDim, s.valueDim),
          s.batch * s.kvHeads * s.keyLength * Math.max(s.headDim, s.valueDim),
        );
        if (largest > LIMIT_ALLOCATION) {
          return {
            ok: true,
            expectation: 'reject-unsupported',
            omitted: `limits.${key} = ${limit}: a tensor above it needs ${largest} elements (more than ${LIMIT_ALLOCATION} this suite allocates)`,
          };
        }
        const inputs = uniformInputs(new DataSource(hashString(key)), shape);
        const problem = validateAttention(inputs, options);
        if (unsupportedReason(backend.name, context.capabilities, problem) === null) {
          return {
            ok: false,
            expectation: 'reject-unsupported',
            message: `internal: shape ${JSON.stringify(shape)} does not exceed limits.${key}`,
          };
        }
        return expectRejection(() => backend.attention(inputs, options), 'unsupported');
      },
    ),
  );
}

export function contractCases(): ConformanceCase[] {
  return [...invalidCases(), ...lifecycleCases(), ...limitCases()];
}

export type { CaseContext, CaseOutcome };
export { validInputs };
