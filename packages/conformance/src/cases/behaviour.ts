import {
  type AttentionBackend,
  type AttentionInputs,
  type AttentionOptions,
  type AttentionShape,
  type BackendCapabilities,
  type LayerShape,
  type MatmulInputs,
  validateAttention,
} from '@attnkit/spec';
import * as fc from 'fast-check';
import { checkAttention, checkLayer, checkMatmul, unsupportedReason } from '../check.js';
import { Comparison, describe } from '../compare.js';
import { DataSource, hashString } from '../random.js';
import type { CaseContext, CaseOutcome, ConformanceCase, ResolvedConformanceOptions } from '../types.js';
import {
  type AttentionCaseSpec,
  attentionWork,
  biasOf,
  buildAttention,
  customCase,
  full,
  layerInputs,
  layerWork,
} from './helpers.js';

/** Folds several outcomes into one: fails if any failed, worst errors are the maxima. */
function merge(outcomes: readonly CaseOutcome[], labels: readonly string[]): CaseOutcome {
  const worst = (key: 'worstAbsError' | 'worstRelError' | 'errorRatio') => {
    let value: number | null = null;
    for (const outcome of outcomes) {
      const v = outcome[key];
      if (v !== null && v !== undefined && (value === null || v > value)) value = v;
    }
    return value;
  };
  const failures = outcomes
    .map((outcome, index) => (outcome.ok ? null : `${labels[index]}: ${outcome.message}`))
    .filter((text): text is string => text !== null);
  return {
    ok: failures.length === 0,
    expectation: 'match-reference',
    worstAbsError: worst('worstAbsError'),
    worstRelError: worst('worstRelError'),
    errorRatio: worst('errorRatio'),
    message: failures.length
      ? failures.slice(0, 3).join(' | ') + (failures.length > 3 ? ` (+${failures.length - 3} more)` : '')
      : null,
  };
}

function determinismCase(name: string, title: string, spec: AttentionCaseSpec): ConformanceCase {
  const id = `determinism/${name}`;
  return customCase(id, title, 2 * attentionWork(spec.shape), async (context) => {
    const backend = await context.backend();
    const { inputs, options } = buildAttention(id, spec);
    const problem = validateAttention(inputs, options);
    if (unsupportedReason(backend.name, context.capabilities, problem) !== null) {
      return checkAttention(backend, context.capabilities, context.tolerance, inputs, options);
    }
    const first = await checkAttention(backend, context.capabilities, context.tolerance, inputs, options);
    if (!first.ok) return first;
    const a = await backend.attention(inputs, options);
    const b = await backend.attention(inputs, options);
    if (!context.capabilities.deterministic) {
      return {
        ...first,
        expectation: 'behaviour',
        message: 'capabilities.deterministic is false: checked against the reference only',
      };
    }
    const comparison = new Comparison(context.tolerance);
    comparison.identical('output', a.output, b.output);
    comparison.identical('lse', a.lse, b.lse);
    comparison.identical('weights', a.weights, b.weights);
    return { ...first, ok: comparison.ok, expectation: 'behaviour', message: comparison.summary() };
  });
}

function determinismCases(): ConformanceCase[] {
  return [
    determinismCase('plain', 'same input twice gives the same bits', {
      shape: { batch: 2, queryHeads: 2, queryLength: 33, headDim: 16 },
    }),
    determinismCase('causal-gqa-lse-weights', 'same bits with causal GQA, lse and weights', {
      shape: { batch: 1, queryHeads: 4, kvHeads: 2, queryLength: 40, headDim: 8 },
      options: { causal: true, returnLse: true, returnWeights: true },
    }),
    determinismCase('all-options-cross', 'same bits with every option and Lq < Lk', {
      shape: { batch: 2, queryHeads: 2, queryLength: 9, keyLength: 70, headDim: 12, valueDim: 5 },
      options: (d, s) => ({
        causal: true,
        slidingWindow: 40,
        keyMask: d.mask(s.batch * s.keyLength),
        bias: biasOf(d, s),
        alibiSlopes: d.uniform(s.queryHeads, 0, 0.2),
        softcap: 5,
        sinks: d.uniform(s.queryHeads),
        returnLse: true,
      }),
    }),
  ];
}

const host = globalThis as {
  gc?: () => void;
  process?: { memoryUsage?: () => { heapUsed: number; external: number } };
};

function hostBytes(): number | null {
  const usage = host.process?.memoryUsage?.();
  return usage ? usage.heapUsed + usage.external : null;
}

function collect(): void {
  if (typeof host.gc === 'function') host.gc();
}

/** Whether a call fits the backend's features and limits. */
function supported(
  context: CaseContext,
  backendName: string,
  inputs: AttentionInputs,
  options: AttentionOptions = {},
): boolean {
  return unsupportedReason(backendName, context.capabilities, validateAttention(inputs, options)) === null;
}

const MiB = 1024 * 1024;
const MIN_REPEATS = 50;

/** A size a repeated-call case can run at: bigger ones first, the last is tiny. */
interface RepeatSize {
  label: string;
  /** Multiply-adds per call. */
  work: number;
}

/**
 * Which size and how many calls fit `maxWork`: the first size whose `repeatCalls` calls fit, else the
 * tiny one with fewer calls (at least 50), else null (omitted). Leaks are per call, so a tiny call
 * still shows one in backend.memory().
 */
export function planRepeats(
  options: ResolvedConformanceOptions,
  sizes: readonly RepeatSize[],
): { size: number; calls: number; note: string | null } | null {
  for (let size = 0; size < sizes.length; size++) {
    if (options.repeatCalls * sizes[size].work <= options.maxWork) {
      const note =
        size === 0
          ? null
          : `${sizes[size].label} calls instead of ${sizes[0].label} (maxWork ${options.maxWork})`;
      return { size, calls: options.repeatCalls, note };
    }
  }
  const last = sizes.length - 1;
  const calls = Math.floor(options.maxWork / sizes[last].work);
  if (calls < MIN_REPEATS) return null;
  return {
    size: last,
    calls,
    note: `${calls} ${sizes[last].label} calls instead of ${options.repeatCalls} ${sizes[0].label} ones (maxWork ${options.maxWork})`,
  };
}

/**
 * `calls` sequential calls: after a warm-up, backend.memory() must stay flat (within one call's
 * tensors) and, in Node, the process heap must not grow past a slack.
 */
export async function repeated(
  context: CaseContext,
  total: number,
  perCallBytes: number,
  call: (backend: AttentionBackend, index: number) => Promise<CaseOutcome | null>,
): Promise<CaseOutcome> {
  const backend = await context.backend();
  const warmup = Math.max(10, Math.floor(total / 10));
  const outcomes: CaseOutcome[] = [];
  const labels: string[] = [];
  let index = 0;
  const runUntil = async (end: number) => {
    for (; index < end; index++) {
      const outcome = await call(backend, index);
      if (outcome !== null) {
        outcomes.push(outcome);
        labels.push(`call ${index}`);
        if (!outcome.ok) return false;
      }
    }
    return true;
  };
  if (!(await runUntil(warmup))) return merge(outcomes, labels);
  collect();
  const memoryBefore = backend.memory();
  const heapBefore = hostBytes();
  if (!(await runUntil(total))) return merge(outcomes, labels);
  collect();
  const memoryAfter = backend.memory();
  const heapAfter = hostBytes();
  const merged = merge(outcomes, labels);
  const problems: string[] = [];
  const growth =
    memoryAfter.hostBytes + memoryAfter.deviceBytes - (memoryBefore.hostBytes + memoryBefore.deviceBytes);
  if (growth > perCallBytes) {
    problems.push(
      `backend.memory() grew by ${growth} bytes over ${total - warmup} calls after warm-up (${JSON.stringify(memoryBefore)} -> ${JSON.stringify(memoryAfter)}); allowed ${perCallBytes}`,
    );
  }
  let heapText = 'process memory not measured (no process.memoryUsage)';
  if (heapBefore !== null && heapAfter !== null) {
    const slack = typeof host.gc === 'function' ? 16 * MiB : 96 * MiB;
    const heapGrowth = heapAfter - heapBefore;
    heapText = `heap+external grew ${(heapGrowth / MiB).toFixed(1)} MiB (slack ${slack / MiB} MiB, gc ${typeof host.gc === 'function' ? 'forced' : 'not exposed'})`;
    if (heapGrowth > slack) problems.push(heapText);
  }
  if (problems.length)
    return {
      ...merged,
      ok: false,
      expectation: 'behaviour',
      message: [merged.message, ...problems].filter(Boolean).join('; '),
    };
  return { ...merged, expectation: 'behaviour', message: `${total} calls; ${heapText}` };
}

function tensorBytes(shape: AttentionShape): number {
  const s = full(shape);
  return (
    4 *
    (s.batch * s.queryHeads * s.queryLength * (s.headDim + s.valueDim) +
      s.batch * s.kvHeads * s.keyLength * (s.headDim + s.valueDim))
  );
}

/**
 * A repeated-call case over `sizes` (per-call shapes, largest first). `shapes` gives the attention
 * inputs of each size for these capabilities; options outside the features are dropped, since the
 * features have cases of their own and this one is about memory.
 */
function repeatedAttentionCase(
  id: string,
  title: string,
  sizes: readonly RepeatSize[],
  shapes: (capabilities: BackendCapabilities) => AttentionShape[],
  wanted: AttentionOptions,
  sampleEvery: number,
): ConformanceCase {
  return customCase(
    id,
    title,
    (options) => options.repeatCalls * sizes[0].work,
    async (context) => {
      const plan = planRepeats(context.options, sizes);
      if (plan === null)
        return { ok: false, expectation: 'behaviour', message: 'internal: no plan fits maxWork' };
      const options: AttentionOptions = {};
      for (const [key, value] of Object.entries(wanted) as [keyof AttentionOptions, never][]) {
        if (context.capabilities.features.includes(key as never)) options[key] = value;
      }
      const backend = await context.backend();
      const source = new DataSource(hashString(id));
      // The planned size, or a smaller one when declared limits forbid it.
      const candidates = shapes(context.capabilities)
        .slice(plan.size)
        .map((shape) => inputsFor(source, shape));
      const fitting = candidates.find((inputs) => supported(context, backend.name, inputs, options));
      if (fitting === undefined) {
        const last = candidates[candidates.length - 1];
        const outcome = await checkAttention(backend, context.capabilities, context.tolerance, last, options);
        return {
          ...outcome,
          message: `memory growth not measured: no repeat shape fits the limits; ${outcome.message}`,
        };
      }
      const variants = [fitting, ...[1, 2, 3].map(() => inputsFor(source, fitting.shape))];
      const outcome = await repeated(context, plan.calls, tensorBytes(fitting.shape), async (b, index) => {
        const input = variants[index % variants.length];
        // A sample of calls is checked against the reference; the rest only have to run.
        if (index % sampleEvery === 0)
          return checkAttention(b, context.capabilities, context.tolerance, input, options);
        await b.attention(input, options);
        return null;
      });
      return { ...outcome, reduced: plan.note };
    },
    (options) => planRepeats(options, sizes)?.note ?? null,
  );
}

const LARGE = 4 * 256 * 128;
const TINY: AttentionShape = { batch: 1, queryHeads: 1, queryLength: 4, headDim: 4 };

function memoryCases(): ConformanceCase[] {
  const matmulSizes: RepeatSize[] = [
    { label: '32x64x64 matmul', work: 32 * 64 * 64 },
    { label: '4x8x8 matmul', work: 4 * 8 * 8 },
  ];
  return [
    repeatedAttentionCase(
      'memory/repeated-attention',
      'repeated attention calls: backend.memory() flat, no heap growth',
      [
        { label: 'decode (Lk 256, D 64, 4 heads)', work: LARGE },
        { label: 'tiny (L 4, D 4)', work: attentionWork(TINY) },
      ],
      // Decode-shaped when allowed: big k/v per call and little arithmetic, so a leaked copy shows.
      (capabilities) => [
        capabilities.features.includes('crossAttention')
          ? { batch: 1, queryHeads: 4, queryLength: 1, keyLength: 256, headDim: 64 }
          : { batch: 1, queryHeads: 4, queryLength: 16, headDim: 64 },
        TINY,
      ],
      {},
      97,
    ),
    repeatedAttentionCase(
      'memory/repeated-options',
      'repeated calls with causal, lse and weights: memory flat',
      [
        { label: 'L 16, D 32, 2 heads', work: 2 * 16 * 16 * 64 },
        { label: 'tiny (L 4, D 4)', work: attentionWork(TINY) },
      ],
      () => [{ batch: 1, queryHeads: 2, queryLength: 16, headDim: 32 }, TINY],
      { causal: true, returnLse: true, returnWeights: true },
      101,
    ),
    customCase(
      'memory/repeated-matmul',
      'repeated matmul calls: memory flat',
      (options) => options.repeatCalls * matmulSizes[0].work,
      async (context) => {
        const plan = planRepeats(context.options, matmulSizes);
        if (plan === null)
          return { ok: false, expectation: 'behaviour', message: 'internal: no plan fits maxWork' };
        const [m, k, n] = plan.size === 0 ? [32, 64, 64] : [4, 8, 8];
        const data = new DataSource(9);
        const inputs: MatmulInputs = {
          a: data.uniform(m * k),
          b: data.uniform(k * n),
          bias: data.uniform(n),
          shape: { m, k, n },
        };
        const outcome = await repeated(
          context,
          plan.calls,
          4 * (m * k + k * n + n + m * n),
          async (backend, index) => {
            if (index % 89 === 0) return checkMatmul(backend, context.tolerance, inputs);
            await backend.matmul(inputs);
            return null;
          },
        );
        return { ...outcome, reduced: plan.note };
      },
      (options) => planRepeats(options, matmulSizes)?.note ?? null,
    ),
  ];
}

function inputsFor(data: DataSource, shape: AttentionShape): AttentionInputs {
  const s = full(shape);
  return {
    q: data.uniform(s.batch * s.queryHeads * s.queryLength * s.headDim),
    k: data.uniform(s.batch * s.kvHeads * s.keyLength * s.headDim),
    v: data.uniform(s.batch * s.kvHeads * s.keyLength * s.valueDim),
    shape,
  };
}

const CONCURRENT: [AttentionShape, AttentionCaseSpec['options']][] = [
  [{ batch: 1, queryHeads: 1, queryLength: 1, headDim: 1 }, {}],
  [{ batch: 2, queryHeads: 2, queryLength: 7, headDim: 3 }, { causal: true }],
  [{ batch: 1, queryHeads: 4, kvHeads: 2, queryLength: 9, headDim: 8 }, { returnLse: true }],
  [{ batch: 1, queryHeads: 2, queryLength: 3, keyLength: 11, headDim: 5 }, { slidingWindow: 2 }],
  [
    { batch: 2, queryHeads: 1, queryLength: 16, headDim: 16 },
    (d, s) => ({ keyMask: d.mask(s.batch * s.keyLength) }),
  ],
  [
    { batch: 1, queryHeads: 3, queryLength: 5, headDim: 4, valueDim: 7 },
    (d, s) => ({ bias: biasOf(d, s, [false, true, false, true]) }),
  ],
  [
    { batch: 1, queryHeads: 2, queryLength: 8, headDim: 4 },
    { alibiSlopes: new Float32Array([0.5, 1]), causal: true },
  ],
  [
    { batch: 1, queryHeads: 2, queryLength: 6, headDim: 6 },
    { softcap: 1, scale: 3, returnWeights: true },
  ],
  [
    { batch: 1, queryHeads: 2, queryLength: 6, headDim: 6 },
    { sinks: new Float32Array([1, -1]), returnLse: true },
  ],
  [
    { batch: 3, queryHeads: 1, queryLength: 33, headDim: 2 },
    { causal: true, slidingWindow: 5 },
  ],
  [{ batch: 1, queryHeads: 8, kvHeads: 1, queryLength: 1, keyLength: 20, headDim: 8 }, { causal: true }],
  [{ batch: 1, queryHeads: 1, queryLength: 64, headDim: 32 }, {}],
  [
    { batch: 2, queryHeads: 2, queryLength: 4, headDim: 80 },
    { returnLse: true, returnWeights: true },
  ],
  [
    { batch: 1, queryHeads: 2, queryLength: 9, keyLength: 4, headDim: 3 },
    { causal: true, returnLse: true },
  ],
  [{ batch: 1, queryHeads: 1, queryLength: 2, headDim: 129 }, {}],
  [
    { batch: 1, queryHeads: 6, kvHeads: 3, queryLength: 7, headDim: 5 },
    { causal: true, sinks: new Float32Array(6).fill(0.5) },
  ],
];

function concurrencyCases(): ConformanceCase[] {
  const attentionCalls = CONCURRENT.map(([shape, options], index) => ({
    id: `concurrency/${index}`,
    spec: { shape, options },
  }));
  const work = attentionCalls.reduce((sum, call) => sum + attentionWork(call.spec.shape), 0);
  return [
    customCase(
      'concurrency/attention-16',
      '16 different attention calls in one Promise.all, each right',
      work,
      async (context) => {
        const backend = await context.backend();
        const outcomes = await Promise.all(
          attentionCalls.map(({ id, spec }) => {
            const { inputs, options } = buildAttention(id, spec);
            return checkAttention(backend, context.capabilities, context.tolerance, inputs, options);
          }),
        );
        return merge(
          outcomes,
          attentionCalls.map(({ id }) => id),
        );
      },
    ),
    customCase(
      'concurrency/attention-and-matmul',
      'attention and matmul calls interleaved in one Promise.all',
      work + 8 * 24 * 24 * 24,
      async (context) => {
        const backend = await context.backend();
        const calls: Promise<CaseOutcome>[] = [];
        const labels: string[] = [];
        attentionCalls.slice(0, 8).forEach(({ id, spec }, index) => {
          const { inputs, options } = buildAttention(`${id}/mixed`, spec);
          calls.push(checkAttention(backend, context.capabilities, context.tolerance, inputs, options));
          labels.push(id);
          const data = new DataSource(index + 100);
          const m = 3 + index;
          calls.push(
            checkMatmul(backend, context.tolerance, {
              a: data.uniform(m * 24),
              b: data.uniform(24 * 24),
              shape: { m, k: 24, n: 24 },
            }),
          );
          labels.push(`matmul ${index}`);
        });
        return merge(await Promise.all(calls), labels);
      },
    ),
    customCase(
      'concurrency/same-input-8',
      '8 concurrent calls on the same input agree with the reference (and bitwise when deterministic)',
      8 * attentionWork({ batch: 1, queryHeads: 2, queryLength: 24, headDim: 16 }),
      async (context) => {
        const backend = await context.backend();
        const spec: AttentionCaseSpec = {
          shape: { batch: 1, queryHeads: 2, queryLength: 24, headDim: 16 },
          options: { causal: true, returnLse: true },
        };
        const { inputs, options } = buildAttention('concurrency/same-input-8', spec);
        const outcomes = await Promise.all(
          Array.from({ length: 8 }, () =>
            checkAttention(backend, context.capabilities, context.tolerance, inputs, options),
          ),
        );
        const merged = merge(
          outcomes,
          outcomes.map((_, index) => `call ${index}`),
        );
        if (!merged.ok || !context.capabilities.deterministic) return merged;
        const results = await Promise.all(
          Array.from({ length: 4 }, () => backend.attention(inputs, options)),
        );
        const comparison = new Comparison(context.tolerance);
        for (let index = 1; index < results.length; index++) {
          comparison.identical(`call ${index} output`, results[0].output, results[index].output);
          comparison.identical(`call ${index} lse`, results[0].lse, results[index].lse);
        }
        return { ...merged, ok: comparison.ok, message: comparison.summary() };
      },
    ),
    customCase(
      'concurrency/layers',
      '3 multi-head attention layers at once',
      3 * layerWork({ batch: 1, queryLength: 6, modelDim: 8, queryHeads: 2, headDim: 4 }),
      async (context) => {
        const backend = await context.backend();
        const shape: LayerShape = { batch: 1, queryLength: 6, modelDim: 8, queryHeads: 2, headDim: 4 };
        const outcomes = await Promise.all(
          [0, 1, 2].map((index) =>
            checkLayer(
              backend,
              context.capabilities,
              context.tolerance,
              layerInputs(new DataSource(200 + index), shape, false, index > 0),
              index === 2 ? { causal: true } : {},
            ),
          ),
        );
        return merge(outcomes, ['layer 0', 'layer 1', 'layer 2']);
      },
    ),
  ];
}

// ---------------------------------------------------------------- property-based (fast-check)

interface RandomCall {
  batch: number;
  kvHeads: number;
  group: number;
  queryLength: number;
  keyLength: number;
  headDim: number;
  valueDim: number;
  scale: number | null;
  causal: boolean;
  slidingWindow: number | null;
  keyMaskDensity: number | null;
  biasPattern: [boolean, boolean, boolean, boolean] | null;
  alibi: boolean;
  softcap: number | null;
  sinks: boolean;
  returnLse: boolean;
  returnWeights: boolean;
  dataSeed: number;
}

const MAX_RANDOM = { batch: 2, kvHeads: 3, group: 3, length: 9, dim: 9 };
const RANDOM_WORK = 2 * 9 * 9 * 9 * 18;

function randomCallArbitrary(capabilities: BackendCapabilities): fc.Arbitrary<RandomCall> {
  const has = (feature: string) => capabilities.features.includes(feature as never);
  const maybe = <T>(feature: string, arbitrary: fc.Arbitrary<T>, otherwise: T): fc.Arbitrary<T> =>
    has(feature) ? arbitrary : fc.constant(otherwise);
  const length = fc.integer({ min: 1, max: MAX_RANDOM.length });
  const dim = fc.integer({ min: 1, max: MAX_RANDOM.dim });
  return fc.record({
    batch: fc.integer({ min: 1, max: MAX_RANDOM.batch }),
    kvHeads: fc.integer({ min: 1, max: MAX_RANDOM.kvHeads }),
    group: maybe('groupedQuery', fc.integer({ min: 1, max: MAX_RANDOM.group }), 1),
    queryLength: length,
    keyLength: maybe('crossAttention', fc.integer({ min: 0, max: MAX_RANDOM.length }), 0),
    headDim: dim,
    valueDim: maybe('valueDim', fc.integer({ min: 0, max: MAX_RANDOM.dim }), 0),
    scale: fc.option(fc.double({ min: -3, max: 3, noNaN: true })),
    causal: maybe('causal', fc.boolean(), false),
    slidingWindow: maybe('slidingWindow', fc.option(fc.integer({ min: 1, max: 10 })), null),
    keyMaskDensity: maybe('keyMask', fc.option(fc.double({ min: 0, max: 1, noNaN: true })), null),
    biasPattern: maybe(
      'bias',
      fc.option(fc.tuple(fc.boolean(), fc.boolean(), fc.boolean(), fc.boolean())),
      null,
    ),
    alibi: maybe('alibiSlopes', fc.boolean(), false),
    softcap: maybe('softcap', fc.option(fc.double({ min: 0.25, max: 20, noNaN: true })), null),
    sinks: maybe('sinks', fc.boolean(), false),
    returnLse: maybe('returnLse', fc.boolean(), false),
    returnWeights: maybe('returnWeights', fc.boolean(), false),
    dataSeed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  });
}

function buildRandom(call: RandomCall): { inputs: AttentionInputs; options: AttentionOptions } {
  const data = new DataSource(call.dataSeed);
  const queryHeads = call.kvHeads * call.group;
  const shape: AttentionShape = {
    batch: call.batch,
    queryHeads,
    kvHeads: call.kvHeads,
    queryLength: call.queryLength,
    keyLength: call.keyLength === 0 ? call.queryLength : call.keyLength,
    headDim: call.headDim,
    valueDim: call.valueDim === 0 ? call.headDim : call.valueDim,
  };
  const s = full(shape);
  const inputs = inputsFor(data, shape);
  const options: AttentionOptions = {};
  if (call.scale !== null) options.scale = call.scale;
  if (call.causal) options.causal = true;
  if (call.slidingWindow !== null) options.slidingWindow = call.slidingWindow;
  if (call.keyMaskDensity !== null) options.keyMask = data.mask(s.batch * s.keyLength, call.keyMaskDensity);
  if (call.biasPattern !== null) options.bias = biasOf(data, shape, call.biasPattern);
  if (call.alibi) options.alibiSlopes = data.uniform(queryHeads, -0.5, 1);
  if (call.softcap !== null) options.softcap = call.softcap;
  if (call.sinks) options.sinks = data.uniform(queryHeads, -2, 2);
  if (call.returnLse) options.returnLse = true;
  if (call.returnWeights) options.returnWeights = true;
  return { inputs, options };
}

function runsFor(options: ResolvedConformanceOptions, perRun: number): number {
  return Math.max(1, Math.min(options.numRuns, Math.floor(options.maxWork / perRun)));
}

const MIN_RUNS = 5;

function propertyCase(
  id: string,
  title: string,
  perRun: number,
  runShare: number,
  property: (
    context: CaseContext,
    track: (outcome: CaseOutcome) => void,
  ) => fc.IAsyncProperty<unknown> | fc.IAsyncProperty<[unknown]>,
): ConformanceCase {
  const count = (options: ResolvedConformanceOptions) =>
    Math.max(MIN_RUNS, Math.ceil(options.numRuns * runShare));
  return customCase(
    id,
    title,
    (options) => count(options) * perRun,
    async (context) => {
      const runs = Math.max(1, Math.min(count(context.options), runsFor(context.options, perRun)));
      const tracked: CaseOutcome[] = [];
      const track = (outcome: CaseOutcome) => tracked.push(outcome);
      const seed = context.options.seed;
      const details = await fc.check(property(context, track) as fc.IAsyncProperty<[unknown]>, {
        seed,
        numRuns: runs,
      });
      const merged = merge(
        tracked.filter((outcome) => outcome.ok),
        [],
      );
      if (details.failed) {
        const counterexample = fc.stringify(details.counterexample);
        const cause =
          details.errorInstance instanceof Error
            ? details.errorInstance.message
            : describe(details.errorInstance);
        return {
          ...merged,
          ok: false,
          message: `property failed after ${details.numRuns} runs (seed ${seed}, path "${details.counterexamplePath}"; rerun with seed ${seed} or ATTNKIT_CONFORMANCE_SEED=${seed}); shrunk counterexample ${counterexample}: ${cause}`,
        };
      }
      return { ...merged, ok: true, message: `${details.numRuns} runs, seed ${seed}` };
    },
    (options) => {
      const runs = runsFor(options, perRun);
      return runs >= MIN_RUNS
        ? `${runs} runs instead of ${count(options)} (maxWork ${options.maxWork})`
        : null;
    },
  );
}

function randomCases(): ConformanceCase[] {
  return [
    propertyCase(
      'random/attention',
      'random shapes and options (fast-check) match the reference',
      RANDOM_WORK,
      1,
      (context, track) =>
        fc.asyncProperty(randomCallArbitrary(context.capabilities), async (call) => {
          const { inputs, options } = buildRandom(call);
          const outcome = await checkAttention(
            await context.backend(),
            context.capabilities,
            context.tolerance,
            inputs,
            options,
          );
          track(outcome);
          if (!outcome.ok) throw new Error(outcome.message ?? 'mismatch');
        }),
    ),
    propertyCase(
      'random/attention-heavy-masks',
      'random calls with dense masks and NaN in masked value rows',
      RANDOM_WORK,
      0.5,
      (context, track) =>
        fc.asyncProperty(
          randomCallArbitrary(context.capabilities),
          fc.double({ min: 0, max: 0.4, noNaN: true }),
          async (call, density) => {
            const { inputs, options } = buildRandom(call);
            if (context.capabilities.features.includes('keyMask')) {
              const s = full(inputs.shape);
              const data = new DataSource(call.dataSeed ^ 0x5bd1e995);
              const mask = data.mask(s.batch * s.keyLength, density);
              options.keyMask = mask;
              for (let b = 0; b < s.batch; b++)
                for (let h = 0; h < s.kvHeads; h++)
                  for (let j = 0; j < s.keyLength; j++)
                    if (mask[b * s.keyLength + j] === 0)
                      inputs.v[((b * s.kvHeads + h) * s.keyLength + j) * s.valueDim] = Number.NaN;
            }
            const outcome = await checkAttention(
              await context.backend(),
              context.capabilities,
              context.tolerance,
              inputs,
              options,
            );
            track(outcome);
            if (!outcome.ok) throw new Error(outcome.message ?? 'mismatch');
          },
        ),
    ),
    propertyCase(
      'random/matmul',
      'random matmul shapes with and without bias',
      24 * 24 * 24,
      1,
      (context, track) =>
        fc.asyncProperty(
          fc.integer({ min: 1, max: 24 }),
          fc.integer({ min: 1, max: 24 }),
          fc.integer({ min: 1, max: 24 }),
          fc.boolean(),
          fc.integer({ min: 0, max: 2 ** 31 - 1 }),
          async (m, k, n, withBias, dataSeed) => {
            const data = new DataSource(dataSeed);
            const inputs: MatmulInputs = {
              a: data.uniform(m * k),
              b: data.uniform(k * n),
              shape: { m, k, n },
              ...(withBias && { bias: data.uniform(n) }),
            };
            const outcome = await checkMatmul(await context.backend(), context.tolerance, inputs);
            track(outcome);
            if (!outcome.ok) throw new Error(outcome.message ?? 'mismatch');
          },
        ),
    ),
    propertyCase(
      'random/layer',
      'random multi-head attention layers (self and cross, GQA)',
      layerWork({ batch: 2, queryLength: 8, keyLength: 8, modelDim: 12, queryHeads: 4, headDim: 4 }),
      0.25,
      (context, track) =>
        fc.asyncProperty(
          fc.record({
            batch: fc.integer({ min: 1, max: 2 }),
            queryLength: fc.integer({ min: 1, max: 8 }),
            keyLength: fc.integer({ min: 1, max: 8 }),
            modelDim: fc.integer({ min: 1, max: 12 }),
            kvHeads: fc.integer({ min: 1, max: 2 }),
            group: fc.integer({ min: 1, max: 2 }),
            headDim: fc.integer({ min: 1, max: 4 }),
            cross: fc.boolean(),
            biases: fc.boolean(),
            causal: fc.boolean(),
            dataSeed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
          }),
          async (r) => {
            const shape: LayerShape = {
              batch: r.batch,
              queryLength: r.queryLength,
              keyLength: r.cross ? r.keyLength : r.queryLength,
              modelDim: r.modelDim,
              queryHeads: r.kvHeads * r.group,
              kvHeads: r.kvHeads,
              headDim: r.headDim,
            };
            const inputs = layerInputs(new DataSource(r.dataSeed), shape, r.cross, r.biases);
            const outcome = await checkLayer(
              await context.backend(),
              context.capabilities,
              context.tolerance,
              inputs,
              r.causal ? { causal: true } : {},
            );
            track(outcome);
            if (!outcome.ok) throw new Error(outcome.message ?? 'mismatch');
          },
        ),
    ),
  ];
}

export function behaviourCases(): ConformanceCase[] {
  return [...determinismCases(), ...memoryCases(), ...concurrencyCases(), ...randomCases()];
}
