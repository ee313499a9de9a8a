import {
  type AttentionBackend,
  type AttentionResult,
  type BackendCapabilities,
  f16StorageErrorBound,
  type KVCache,
  type KVCacheAttentionOptions,
  type KVCacheConfig,
  type KVCachePrecision,
  ReferenceKVCache,
  referenceAttention64,
  roundToF16,
  validateAttention,
  validateKVCacheConfig,
} from '@attnkit/spec';
import { expectRejection, outcomeOf } from '../check.js';
import { Comparison, describe } from '../compare.js';
import { naiveAttention32 } from '../naive.js';
import { DataSource, hashString } from '../random.js';
import type { CaseContext, CaseOutcome, ConformanceCase } from '../types.js';
import { customCase } from './helpers.js';

/** Whether the capabilities declare the KV cache; where they do not, every cache case expects `unsupported`. */
function supportsCache(capabilities: BackendCapabilities): boolean {
  return capabilities.features.includes('kvCache');
}

/** Whether the capabilities declare the cache at `config`'s precision (f16 storage is a feature of its own). */
function supportsConfig(capabilities: BackendCapabilities, config: KVCacheConfig): boolean {
  return (
    supportsCache(capabilities) &&
    (config.precision !== 'f16-storage' || capabilities.features.includes('kvCacheF16Storage'))
  );
}

/**
 * A case's expectation on a backend without `kvCache` (or, for an f16-storage config, without
 * `kvCacheF16Storage`): `createKVCache` rejects `unsupported` naming what is missing.
 */
async function expectUnsupported(backend: AttentionBackend, config: KVCacheConfig): Promise<CaseOutcome> {
  const argument = supportsCache(backend.capabilities) ? 'config.precision' : 'kvCache';
  const outcome = await expectRejection(() => backend.createKVCache(config), 'unsupported', argument);
  return { ...outcome, message: outcome.ok ? `rejected as expected: ${outcome.message}` : outcome.message };
}

/** One step of a cache script. */
type Step =
  | { op: 'append'; tokens: number; kept?: number[] }
  | { op: 'attend'; queryLength: number; options?: KVCacheAttentionOptions }
  | { op: 'truncate'; to: number | number[] };

/**
 * Runs a cache script against the backend and against a model of what was appended (the spec's
 * reference cache storage): every attention result, row by row, is compared with
 * `referenceAttention64` on that row's concatenated K/V (`Lk = lengths[b]`), and the cache's
 * `lengths` with the model's after every step.
 */
class ScriptRunner {
  readonly model: ReferenceKVCache;
  private readonly data: DataSource;

  constructor(
    readonly cache: KVCache,
    readonly queryHeads: number,
    readonly comparison: Comparison,
    seed: string,
  ) {
    this.model = new ReferenceKVCache(validateKVCacheConfig(cache.config));
    this.data = new DataSource(hashString(seed));
  }

  private lengthsOk(label: string): void {
    const expected = this.model.config.batch;
    const got = this.cache.lengths;
    for (let b = 0; b < expected; b++) {
      const want = this.model.length(b);
      if (got[b] !== want) {
        this.comparison.fail(`${label}: lengths[${b}] is ${describe(got[b])}, expected ${want}`);
        return;
      }
    }
  }

  /** Starts a step (the call is issued in this tick) and returns its completion. */
  start(step: Step, label: string): Promise<void> {
    const { batch: B, kvHeads: Hkv, headDim: D, valueDim: Dv } = this.model.config;
    if (step.op === 'append') {
      const k = this.data.uniform(B * Hkv * step.tokens * D);
      const v = this.data.uniform(B * Hkv * step.tokens * Dv);
      const kept = step.kept ?? new Array<number>(B).fill(step.tokens);
      const call = this.cache.append({ k, v, tokens: step.tokens, ...(step.kept && { lengths: step.kept }) });
      this.model.append({ k: new Float32Array(k), v: new Float32Array(v), tokens: step.tokens, kept });
      // the cache must have copied them before append returned
      k.fill(Number.NaN);
      v.fill(Number.NaN);
      return call.then(() => this.lengthsOk(label));
    }
    if (step.op === 'truncate') {
      const to = typeof step.to === 'number' ? new Array<number>(B).fill(step.to) : step.to;
      const call = this.cache.truncate(step.to);
      this.model.truncate(to);
      return call.then(() => this.lengthsOk(label));
    }
    const Hq = this.queryHeads;
    const Lq = step.queryLength;
    const q = this.data.uniform(B * Hq * Lq * D);
    const options = step.options ?? {};
    const lengths = Array.from({ length: B }, (_, b) => this.model.length(b));
    const rows = Array.from({ length: B }, (_, b) => this.model.rowTensors(b));
    const qCopy = new Float32Array(q);
    const call = this.cache.attention({ q, queryHeads: Hq, queryLength: Lq }, options);
    q.fill(Number.NaN);
    return call.then((result) => this.compare(label, result, qCopy, lengths, rows, options));
  }

  private compare(
    label: string,
    result: AttentionResult,
    q: Float32Array,
    lengths: number[],
    rows: { k: Float32Array; v: Float32Array }[],
    options: KVCacheAttentionOptions,
  ): void {
    const { batch: B, kvHeads: Hkv, headDim: D, valueDim: Dv } = this.model.config;
    const Hq = this.queryHeads;
    const Lq = q.length / (B * Hq * D);
    if (typeof result !== 'object' || result === null || !(result.output instanceof Float32Array)) {
      this.comparison.fail(`${label}: result is ${describe(result)}`);
      return;
    }
    if (result.output.length !== B * Hq * Lq * Dv) {
      this.comparison.fail(`${label}: output length ${result.output.length}, expected ${B * Hq * Lq * Dv}`);
      return;
    }
    if (options.returnLse && !(result.lse instanceof Float32Array && result.lse.length === B * Hq * Lq)) {
      this.comparison.fail(`${label}: lse is ${describe(result.lse)}, expected Float32Array(${B * Hq * Lq})`);
      return;
    }
    for (let b = 0; b < B; b++) {
      const inputs = {
        q: q.slice(b * Hq * Lq * D, (b + 1) * Hq * Lq * D),
        k: rows[b].k,
        v: rows[b].v,
        shape: {
          batch: 1,
          queryHeads: Hq,
          kvHeads: Hkv,
          queryLength: Lq,
          keyLength: lengths[b],
          headDim: D,
          valueDim: Dv,
        },
      };
      const reference = referenceAttention64(inputs, options);
      let naive: ReturnType<typeof naiveAttention32> | null = null;
      const lazy = () => {
        naive ??= naiveAttention32(validateAttention(inputs, options));
        return naive;
      };
      const out = result.output.subarray(b * Hq * Lq * Dv, (b + 1) * Hq * Lq * Dv);
      const lse = result.lse?.subarray(b * Hq * Lq, (b + 1) * Hq * Lq);
      if (this.model.config.precision !== 'f16-storage') {
        this.comparison.tensor(`${label} row ${b} output`, out, reference.output, () => lazy().output, Dv);
        if (reference.lse && lse)
          this.comparison.tensor(`${label} row ${b} lse`, lse, reference.lse, () => lazy().lse);
        continue;
      }
      // f16 storage, two checks. (1) What the caller gets: the original inputs against the backend's
      // float32 tolerance plus the spec's declared f16 storage bound. (2) What the kernel does with
      // what it stored: K/V rounded to binary16 here (the spec's arithmetic roundToF16) against the
      // float32 tolerance alone, so a kernel error far below the declared bound still fails.
      const bound = f16StorageErrorBound({ ...inputs, scale: validateAttention(inputs, options).scale });
      this.comparison.tensor(
        `${label} row ${b} output`,
        out,
        reference.output,
        () => lazy().output,
        Dv,
        bound.output,
      );
      if (reference.lse && lse)
        this.comparison.tensor(`${label} row ${b} lse`, lse, reference.lse, () => lazy().lse, 1, bound.lse);
      const stored = { ...inputs, k: inputs.k.map(roundToF16), v: inputs.v.map(roundToF16) };
      const storedReference = referenceAttention64(stored, options);
      let storedNaive: ReturnType<typeof naiveAttention32> | null = null;
      const storedLazy = () => {
        storedNaive ??= naiveAttention32(validateAttention(stored, options));
        return storedNaive;
      };
      const what = `${label} row ${b}`;
      this.comparison.tensor(
        `${what} output (on f16-rounded K/V)`,
        out,
        storedReference.output,
        () => storedLazy().output,
        Dv,
      );
      if (storedReference.lse && lse) {
        this.comparison.tensor(
          `${what} lse (on f16-rounded K/V)`,
          lse,
          storedReference.lse,
          () => storedLazy().lse,
        );
      }
    }
  }

  async run(steps: readonly Step[]): Promise<void> {
    for (const [index, step] of steps.entries()) await this.start(step, `step ${index} (${step.op})`);
  }
}

interface ScriptSpec {
  config: KVCacheConfig;
  queryHeads: number;
  steps: Step[] | ((data: DataSource) => Step[]);
}

function fullConfig(config: KVCacheConfig) {
  return validateKVCacheConfig(config);
}

/** Multiply-adds of a script: each attention call against the row lengths at that point (twice: backend and reference). */
function scriptWork(config: KVCacheConfig, queryHeads: number, steps: readonly Step[]): number {
  const { batch: B, headDim: D, valueDim: Dv } = fullConfig(config);
  const lengths = new Array<number>(B).fill(0);
  let work = 0;
  for (const step of steps) {
    if (step.op === 'append') for (let b = 0; b < B; b++) lengths[b] += step.kept?.[b] ?? step.tokens;
    else if (step.op === 'truncate')
      for (let b = 0; b < B; b++) lengths[b] = typeof step.to === 'number' ? step.to : step.to[b];
    else for (let b = 0; b < B; b++) work += 2 * queryHeads * step.queryLength * lengths[b] * (D + Dv);
  }
  return work;
}

function stepsOf(id: string, spec: ScriptSpec): Step[] {
  return typeof spec.steps === 'function'
    ? spec.steps(new DataSource(hashString(`${id}#steps`)))
    : spec.steps;
}

async function runScript(context: CaseContext, id: string, spec: ScriptSpec): Promise<CaseOutcome> {
  const backend = await context.backend();
  if (!supportsConfig(context.capabilities, spec.config)) return expectUnsupported(backend, spec.config);
  const comparison = new Comparison(context.tolerance);
  const cache = await backend.createKVCache(spec.config);
  try {
    await new ScriptRunner(cache, spec.queryHeads, comparison, id).run(stepsOf(id, spec));
  } finally {
    await cache.dispose();
  }
  return outcomeOf(comparison);
}

function scriptCase(id: string, title: string, spec: ScriptSpec): ConformanceCase {
  // an f16 case runs the reference twice (original and rounded K/V)
  const references = spec.config.precision === 'f16-storage' ? 1.5 : 1;
  return customCase(
    id,
    title,
    () => references * scriptWork(spec.config, spec.queryHeads, stepsOf(id, spec)),
    (context) => runScript(context, id, spec),
  );
}

/**
 * The same script at a storage precision: `cache/<name>` for f32, `cache/f16/<name>` for
 * f16-storage (same seeds, so the two see the same data).
 */
function atPrecision(
  precision: KVCachePrecision,
  id: string,
  title: string,
  spec: ScriptSpec,
): ConformanceCase {
  if (precision === 'f32') return scriptCase(id, title, spec);
  const name = id.slice('cache/'.length);
  return scriptCase(`cache/f16/${name}`, `${title} (f16 storage)`, {
    ...spec,
    config: { ...spec.config, precision },
    steps: typeof spec.steps === 'function' ? stepsOf(id, spec) : spec.steps,
  });
}

/** Prefill `prompt` tokens (one causal attention over them), then `steps` decode steps of one token. */
function decode(prompt: number, steps: number, options: KVCacheAttentionOptions = {}): Step[] {
  const script: Step[] = [
    { op: 'append', tokens: prompt },
    { op: 'attend', queryLength: prompt, options: { ...options, causal: true } },
  ];
  for (let s = 0; s < steps; s++) {
    script.push({ op: 'append', tokens: 1 }, { op: 'attend', queryLength: 1, options });
  }
  return script;
}

/** A random script: appends of 1 token and chunks, ragged rows, truncations, attention of 1..3 queries. */
function randomScript(B: number, count: number): (data: DataSource) => Step[] {
  return (data) => {
    const lengths = new Array<number>(B).fill(0);
    const steps: Step[] = [];
    for (let s = 0; s < count; s++) {
      const kind = data.integer(0, 9);
      if (kind < 5 || Math.min(...lengths) < 3) {
        const tokens = data.integer(0, 1) === 0 ? 1 : data.integer(2, 40);
        const ragged = data.integer(0, 2) === 0;
        const kept = ragged ? lengths.map(() => data.integer(0, tokens)) : undefined;
        steps.push({ op: 'append', tokens, ...(kept && { kept }) });
        for (let b = 0; b < B; b++) lengths[b] += kept?.[b] ?? tokens;
      } else if (kind < 8) {
        const queryLength = Math.min(data.integer(1, 3), ...lengths);
        const causal = data.integer(0, 1) === 1;
        steps.push({ op: 'attend', queryLength, options: { causal, returnLse: true } });
      } else {
        const to = lengths.map((n) => data.integer(Math.max(0, n - 10), n));
        steps.push({ op: 'truncate', to });
        for (let b = 0; b < B; b++) lengths[b] = to[b];
      }
    }
    // end on an attention over every row
    const queryLength = Math.max(1, Math.min(2, ...lengths));
    if (Math.min(...lengths) >= queryLength)
      steps.push({ op: 'attend', queryLength, options: { causal: true } });
    return steps;
  };
}

const SMALL: KVCacheConfig = { batch: 2, kvHeads: 2, headDim: 16 };

/** Slopes and sinks drawn per case, so each option case is seeded by its id. */
function perHead(id: string, heads: number, low: number, high: number): Float32Array {
  return new DataSource(hashString(`${id}#heads`)).uniform(heads, low, high);
}

function scriptCases(precision: KVCachePrecision): ConformanceCase[] {
  const Hq = 4;
  const scriptCase = (id: string, title: string, spec: ScriptSpec) => atPrecision(precision, id, title, spec);
  const optionCases: [string, KVCacheAttentionOptions][] = [
    ['scale', { scale: 0.37 }],
    ['causal', { causal: true }],
    ['sliding-window', { slidingWindow: 5 }],
    ['sliding-window-causal', { slidingWindow: 4, causal: true }],
    ['alibi', { alibiSlopes: perHead('cache/options/alibi', Hq, 0.01, 0.5) }],
    ['softcap', { softcap: 0.8, scale: 3 }],
    ['sinks', { sinks: perHead('cache/options/sinks', Hq, -1, 2) }],
    ['return-lse', { returnLse: true }],
    [
      'combined',
      {
        causal: true,
        slidingWindow: 6,
        alibiSlopes: perHead('cache/options/combined', Hq, 0.01, 0.3),
        softcap: 2,
        sinks: perHead('cache/options/combined#s', Hq, -1, 1),
        returnLse: true,
      },
    ],
  ];
  return [
    scriptCase(
      'cache/decode',
      'prefill then one token at a time, each step against the stateless reference',
      {
        config: SMALL,
        queryHeads: Hq,
        steps: decode(7, 12, { returnLse: true }),
      },
    ),
    scriptCase(
      'cache/random-sequence',
      'random appends (1 token and chunks), ragged rows, truncations, attention',
      {
        config: { batch: 3, kvHeads: 1, headDim: 8, valueDim: 5 },
        queryHeads: 2,
        steps: randomScript(3, 40),
      },
    ),
    scriptCase('cache/ragged', 'rows of different lengths in one call (ragged appends)', {
      config: { batch: 3, kvHeads: 2, headDim: 8 },
      queryHeads: 2,
      steps: [
        { op: 'append', tokens: 6, kept: [6, 2, 4] },
        { op: 'attend', queryLength: 2, options: { causal: true, returnLse: true } },
        { op: 'append', tokens: 3, kept: [0, 3, 1] },
        { op: 'attend', queryLength: 1 },
        { op: 'append', tokens: 1 },
        { op: 'attend', queryLength: 2, options: { causal: true, slidingWindow: 3 } },
      ],
    }),
    scriptCase('cache/truncate-append', 'truncate (one number, then per row) then append again', {
      config: SMALL,
      queryHeads: Hq,
      steps: [
        { op: 'append', tokens: 20 },
        { op: 'attend', queryLength: 1 },
        { op: 'truncate', to: 12 },
        { op: 'attend', queryLength: 1, options: { causal: true } },
        { op: 'append', tokens: 3 },
        { op: 'attend', queryLength: 3, options: { causal: true } },
        { op: 'truncate', to: [5, 9] },
        { op: 'append', tokens: 2 },
        { op: 'attend', queryLength: 2, options: { causal: true, returnLse: true } },
        { op: 'truncate', to: [7, 11] },
        { op: 'attend', queryLength: 1 },
      ],
    }),
    scriptCase('cache/gqa', 'grouped-query attention: 8 query heads over 2 kv heads', {
      config: { batch: 2, kvHeads: 2, headDim: 16 },
      queryHeads: 8,
      steps: decode(5, 6),
    }),
    scriptCase('cache/mqa', 'multi-query attention: 6 query heads over 1 kv head', {
      config: { batch: 1, kvHeads: 1, headDim: 12 },
      queryHeads: 6,
      steps: decode(4, 6),
    }),
    scriptCase('cache/value-dim', 'valueDim != headDim', {
      config: { batch: 2, kvHeads: 1, headDim: 8, valueDim: 3 },
      queryHeads: 2,
      steps: decode(3, 5, { returnLse: true }),
    }),
    scriptCase(
      'cache/pages',
      'growth across many pages (chunks of 300, ~2000 tokens), capacity hint smaller',
      {
        config: { batch: 2, kvHeads: 1, headDim: 4, capacity: 100 },
        queryHeads: 2,
        steps: [
          ...Array.from({ length: 7 }, (): Step => ({ op: 'append', tokens: 300 })),
          { op: 'attend', queryLength: 3, options: { causal: true } },
          { op: 'attend', queryLength: 1, options: { slidingWindow: 700 } },
          { op: 'truncate', to: [511, 257] },
          { op: 'append', tokens: 600, kept: [600, 1] },
          { op: 'attend', queryLength: 2, options: { causal: true, returnLse: true } },
        ],
      },
    ),
    ...optionCases.map(([name, options]) =>
      scriptCase(`cache/options/${name}`, `cache attention with ${name}`, {
        config: SMALL,
        queryHeads: Hq,
        steps: decode(9, 4, options),
      }),
    ),
  ];
}

/** Decode at Lk ~ 100k: the work is in the attention calls, so maxWork gates it as any case. */
function longCase(precision: KVCachePrecision): ConformanceCase {
  const config: KVCacheConfig = { batch: 1, kvHeads: 1, headDim: 16 };
  const steps: Step[] = [
    ...Array.from({ length: 25 }, (): Step => ({ op: 'append', tokens: 4000 })),
    { op: 'attend', queryLength: 1 },
    { op: 'append', tokens: 1 },
    { op: 'attend', queryLength: 1, options: { causal: true, returnLse: true } },
  ];
  return atPrecision(precision, 'cache/long-decode', 'decode over a 100 001-token cache', {
    config,
    queryHeads: 2,
    steps,
  });
}

function lifecycleCases(): ConformanceCase[] {
  const config: KVCacheConfig = { batch: 2, kvHeads: 2, headDim: 8, capacity: 10 };
  const chunk = (tokens: number) => ({
    k: new Float32Array(2 * 2 * tokens * 8).fill(0.5),
    v: new Float32Array(2 * 2 * tokens * 8).fill(0.25),
    tokens,
  });
  return [
    customCase(
      'cache/dispose-frees',
      'cache.dispose() and backend.dispose() return memory() to its value before',
      0,
      async (context) => {
        const backend = await context.fresh();
        await backend.init();
        if (!supportsCache(backend.capabilities)) return expectUnsupported(backend, config);
        const problems: string[] = [];
        const before = backend.memory().hostBytes;
        const cache = await backend.createKVCache(config);
        await cache.append(chunk(700));
        const held = backend.memory().hostBytes;
        if (held < before) problems.push(`memory fell from ${before} to ${held} after an append`);
        await cache.dispose();
        const after = backend.memory().hostBytes;
        if (after !== before)
          problems.push(`after cache.dispose() hostBytes is ${after}, was ${before} before the cache`);
        const early = await expectRejection(() => cache.append(chunk(1)), 'disposed', 'cache');
        if (!early.ok) problems.push(`cache.append after cache.dispose(): ${early.message}`);
        const second = await backend.createKVCache(config);
        await second.append(chunk(300));
        await backend.dispose();
        const end = backend.memory().hostBytes;
        if (end > before)
          problems.push(`after backend.dispose() hostBytes is ${end}, was ${before} before the caches`);
        for (const [name, outcome] of [
          ['cache.lengths readable after dispose', { ok: Array.isArray(cache.lengths), message: null }],
          [
            'second.attention after backend.dispose()',
            await expectRejection(
              () => second.attention({ q: new Float32Array(2 * 2 * 8), queryHeads: 2, queryLength: 1 }),
              'disposed',
              'backend',
            ),
          ],
          [
            'second.truncate after backend.dispose()',
            await expectRejection(() => second.truncate(0), 'disposed', 'backend'),
          ],
          [
            'createKVCache after backend.dispose()',
            await expectRejection(() => backend.createKVCache(config), 'disposed', 'backend'),
          ],
        ] as const) {
          if (!outcome.ok) problems.push(`${name}: ${outcome.message}`);
        }
        return { ok: problems.length === 0, expectation: 'behaviour', message: problems.join('; ') || null };
      },
    ),
    customCase(
      'cache/concurrent',
      'two caches on one backend, calls interleaved without awaiting',
      4 * 2 * 4 * 60 * 32,
      async (context) => {
        const backend = await context.backend();
        const cfg: KVCacheConfig = { batch: 2, kvHeads: 1, headDim: 16 };
        if (!supportsCache(context.capabilities)) return expectUnsupported(backend, cfg);
        const comparison = new Comparison(context.tolerance);
        const a = new ScriptRunner(await backend.createKVCache(cfg), 2, comparison, 'cache/concurrent#a');
        const b = new ScriptRunner(await backend.createKVCache(cfg), 2, comparison, 'cache/concurrent#b');
        try {
          const steps = decode(6, 8, { returnLse: true });
          for (const [index, step] of steps.entries()) {
            // both caches' calls are in flight together; each cache's own calls run in call order
            await Promise.all([a.start(step, `a step ${index}`), b.start(step, `b step ${index}`)]);
          }
          // and a burst of un-awaited calls on one cache: append, attend, append, attend
          const burst: Step[] = [
            { op: 'append', tokens: 2 },
            { op: 'attend', queryLength: 1, options: { causal: true } },
            { op: 'append', tokens: 1 },
            { op: 'attend', queryLength: 2, options: { causal: true } },
          ];
          await Promise.all(burst.map((step, index) => a.start(step, `a burst ${index}`)));
        } finally {
          await Promise.all([a.cache.dispose(), b.cache.dispose()]);
        }
        return outcomeOf(comparison);
      },
    ),
  ];
}

/** A bad call and the argument its error must name. */
interface BadCall {
  name: string;
  code: 'invalid-argument' | 'unsupported' | 'disposed';
  argument: string;
  call: (cache: KVCache) => Promise<unknown>;
}

function badInputCases(): ConformanceCase[] {
  const config: KVCacheConfig = { batch: 2, kvHeads: 2, headDim: 4, valueDim: 3 };
  const q = (Hq: number, Lq: number) => new Float32Array(2 * Hq * Lq * 4);
  const kv = (tokens: number) => ({
    k: new Float32Array(2 * 2 * tokens * 4),
    v: new Float32Array(2 * 2 * tokens * 3),
    tokens,
  });
  // Each runs on a cache holding 3 tokens per row.
  const calls: BadCall[] = [
    {
      name: 'append-k-length',
      code: 'invalid-argument',
      argument: 'chunk.k',
      call: (c) => c.append({ ...kv(2), k: new Float32Array(5) }),
    },
    {
      name: 'append-v-length',
      code: 'invalid-argument',
      argument: 'chunk.v',
      call: (c) => c.append({ ...kv(2), v: new Float32Array(48) }),
    },
    {
      name: 'append-k-type',
      code: 'invalid-argument',
      argument: 'chunk.k',
      call: (c) => c.append({ ...kv(1), k: new Float64Array(16) as unknown as Float32Array }),
    },
    {
      name: 'append-tokens-zero',
      code: 'invalid-argument',
      argument: 'chunk.tokens',
      call: (c) => c.append({ ...kv(1), tokens: 0 }),
    },
    {
      name: 'append-lengths-over',
      code: 'invalid-argument',
      argument: 'chunk.lengths[1]',
      call: (c) => c.append({ ...kv(2), lengths: [1, 3] }),
    },
    {
      name: 'append-lengths-count',
      code: 'invalid-argument',
      argument: 'chunk.lengths',
      call: (c) => c.append({ ...kv(2), lengths: [1] }),
    },
    {
      name: 'append-lengths-negative',
      code: 'invalid-argument',
      argument: 'chunk.lengths[0]',
      call: (c) => c.append({ ...kv(2), lengths: [-1, 1] }),
    },
    {
      name: 'append-unknown-key',
      code: 'invalid-argument',
      argument: 'chunk.token',
      call: (c) => c.append({ ...kv(1), token: 1 } as never),
    },
    {
      name: 'attention-q-length',
      code: 'invalid-argument',
      argument: 'query.q',
      call: (c) => c.attention({ q: q(2, 2), queryHeads: 2, queryLength: 1 }),
    },
    {
      name: 'attention-query-heads',
      code: 'invalid-argument',
      argument: 'query.queryHeads',
      call: (c) => c.attention({ q: q(3, 1), queryHeads: 3, queryLength: 1 }),
    },
    {
      name: 'attention-query-longer-than-row',
      code: 'invalid-argument',
      argument: 'cache.lengths[0]',
      call: (c) => c.attention({ q: q(2, 4), queryHeads: 2, queryLength: 4 }),
    },
    {
      name: 'attention-bad-option',
      code: 'invalid-argument',
      argument: 'options.slidingWindow',
      call: (c) => c.attention({ q: q(2, 1), queryHeads: 2, queryLength: 1 }, { slidingWindow: 0 }),
    },
    {
      name: 'attention-unknown-option',
      code: 'invalid-argument',
      argument: 'options.causl',
      call: (c) => c.attention({ q: q(2, 1), queryHeads: 2, queryLength: 1 }, { causl: true } as never),
    },
    {
      name: 'attention-sinks-length',
      code: 'invalid-argument',
      argument: 'options.sinks',
      call: (c) => c.attention({ q: q(2, 1), queryHeads: 2, queryLength: 1 }, { sinks: new Float32Array(1) }),
    },
    { name: 'truncate-beyond', code: 'invalid-argument', argument: 'lengths', call: (c) => c.truncate(4) },
    { name: 'truncate-negative', code: 'invalid-argument', argument: 'lengths', call: (c) => c.truncate(-1) },
    {
      name: 'truncate-row-beyond',
      code: 'invalid-argument',
      argument: 'lengths[1]',
      call: (c) => c.truncate([1, 5]),
    },
    {
      name: 'truncate-count',
      code: 'invalid-argument',
      argument: 'lengths',
      call: (c) => c.truncate([1, 1, 1]),
    },
    {
      name: 'unsupported-key-mask',
      code: 'unsupported',
      argument: 'options.keyMask',
      call: (c) =>
        c.attention({ q: q(2, 1), queryHeads: 2, queryLength: 1 }, { keyMask: new Uint8Array(6) } as never),
    },
    {
      name: 'unsupported-bias',
      code: 'unsupported',
      argument: 'options.bias',
      call: (c) =>
        c.attention({ q: q(2, 1), queryHeads: 2, queryLength: 1 }, {
          bias: { data: new Float32Array(1), shape: [1, 1, 1, 1] },
        } as never),
    },
    {
      name: 'unsupported-return-weights',
      code: 'unsupported',
      argument: 'options.returnWeights',
      call: (c) =>
        c.attention({ q: q(2, 1), queryHeads: 2, queryLength: 1 }, { returnWeights: true } as never),
    },
  ];
  const cases = calls.map(({ name, code, argument, call }) =>
    customCase(
      `cache/bad-input/${name}`,
      `rejects ${code} naming ${argument}, and the cache is unchanged`,
      0,
      async (context) => {
        const backend = await context.backend();
        if (!supportsCache(context.capabilities)) return expectUnsupported(backend, config);
        const cache = await backend.createKVCache(config);
        try {
          await cache.append(kv(3));
          const outcome = await expectRejection(() => call(cache), code, argument);
          const lengths = cache.lengths;
          if (outcome.ok && (lengths[0] !== 3 || lengths[1] !== 3)) {
            return {
              ...outcome,
              ok: false,
              message: `a rejected call changed lengths to ${describe(lengths)}`,
            };
          }
          return outcome;
        } finally {
          await cache.dispose();
        }
      },
    ),
  );
  const configs: [string, string, unknown][] = [
    ['config-batch', 'config.batch', { batch: 0, kvHeads: 1, headDim: 4 }],
    ['config-head-dim', 'config.headDim', { batch: 1, kvHeads: 1, headDim: 1.5 }],
    ['config-capacity', 'config.capacity', { batch: 1, kvHeads: 1, headDim: 4, capacity: -1 }],
    ['config-unknown-key', 'config.heads', { batch: 1, kvHeads: 1, headDim: 4, heads: 2 }],
    ['config-precision', 'config.precision', { batch: 1, kvHeads: 1, headDim: 4, precision: 'f16' }],
  ];
  for (const [name, argument, bad] of configs) {
    cases.push(
      customCase(
        `cache/bad-input/${name}`,
        `createKVCache rejects invalid-argument naming ${argument}`,
        0,
        async (context) => {
          const backend = await context.backend();
          // validation comes first, on every backend: a bad config is invalid whether or not caches are supported
          return expectRejection(
            () => backend.createKVCache(bad as KVCacheConfig),
            'invalid-argument',
            argument,
          );
        },
      ),
    );
  }
  cases.push(
    customCase(
      'cache/bad-input/disposed-cache',
      'every cache call after cache.dispose() rejects disposed',
      0,
      async (context) => {
        const backend = await context.backend();
        if (!supportsCache(context.capabilities)) return expectUnsupported(backend, config);
        const cache = await backend.createKVCache(config);
        await cache.append(kv(1));
        await cache.dispose();
        await cache.dispose(); // idempotent
        for (const call of [
          () => cache.append(kv(1)),
          () => cache.attention({ q: q(2, 1), queryHeads: 2, queryLength: 1 }),
          () => cache.truncate(0),
        ]) {
          const outcome = await expectRejection(call, 'disposed', 'cache');
          if (!outcome.ok) return outcome;
        }
        return { ok: true, expectation: 'reject-disposed', message: null };
      },
    ),
  );
  return cases;
}

/** f16 storage beyond the scripts: it halves what the cache holds, and it rejects what binary16 cannot hold. */
function f16Cases(): ConformanceCase[] {
  const config: KVCacheConfig = { batch: 2, kvHeads: 2, headDim: 16, valueDim: 8 };
  const f16: KVCacheConfig = { ...config, precision: 'f16-storage' };
  const chunk = (tokens: number) => ({
    k: new Float32Array(2 * 2 * tokens * 16).fill(0.5),
    v: new Float32Array(2 * 2 * tokens * 8).fill(0.25),
    tokens,
  });
  const held = (backend: AttentionBackend) => {
    const { hostBytes, deviceBytes } = backend.memory();
    return hostBytes + deviceBytes;
  };
  return [
    customCase(
      'cache/f16/memory-halved',
      'an f16-storage cache holds at most half the bytes of an f32 one (memory(), 700 tokens, even D and Dv)',
      0,
      async (context) => {
        const backend = await context.fresh();
        await backend.init();
        if (!supportsConfig(backend.capabilities, f16)) return expectUnsupported(backend, f16);
        try {
          const grown = async (cfg: KVCacheConfig) => {
            const before = held(backend);
            const cache = await backend.createKVCache(cfg);
            await cache.append(chunk(700));
            const bytes = held(backend) - before;
            await cache.dispose();
            return bytes;
          };
          const full = await grown(config);
          const half = await grown(f16);
          const ok = full > 0 && half > 0 && 2 * half <= full;
          return {
            ok,
            expectation: 'behaviour',
            message: ok ? null : `f32 cache grew memory() by ${full} bytes, the f16-storage one by ${half}`,
          };
        } finally {
          await backend.dispose();
        }
      },
    ),
    customCase(
      'cache/f16/bad-input/append-out-of-range',
      'an f16-storage append of a finite value binary16 rounds to infinity rejects invalid-argument naming chunk.k, unchanged',
      0,
      async (context) => {
        const backend = await context.backend();
        if (!supportsConfig(context.capabilities, f16)) return expectUnsupported(backend, f16);
        const cache = await backend.createKVCache(f16);
        try {
          await cache.append(chunk(2));
          const bad = chunk(1);
          bad.k[5] = -70000;
          const outcome = await expectRejection(() => cache.append(bad), 'invalid-argument', 'chunk.k');
          if (outcome.ok && (cache.lengths[0] !== 2 || cache.lengths[1] !== 2)) {
            return {
              ...outcome,
              ok: false,
              message: `a rejected append changed lengths to ${describe(cache.lengths)}`,
            };
          }
          return outcome;
        } finally {
          await cache.dispose();
        }
      },
    ),
  ];
}

/** Every `cache/*` case. */
export function cacheCases(): ConformanceCase[] {
  return [
    ...scriptCases('f32'),
    longCase('f32'),
    ...lifecycleCases(),
    ...badInputCases(),
    ...scriptCases('f16-storage'),
    longCase('f16-storage'),
    ...f16Cases(),
  ];
}
