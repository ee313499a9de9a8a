import {
  type AttentionBackend,
  AttnkitError,
  type BackendCapabilities,
  type BackendFactory,
} from '@attnkit/spec';
import { allCases } from './cases/index.js';
import { describe } from './compare.js';
import type {
  CaseContext,
  CaseOutcome,
  CaseResult,
  ConformanceCase,
  ConformanceOptions,
  ConformanceReport,
  ResolvedConformanceOptions,
} from './types.js';

const SEED_VARIABLE = 'ATTNKIT_CONFORMANCE_SEED';

function environmentSeed(): string | undefined {
  // Browser-safe: `process` may not exist.
  const host = globalThis as { process?: { env?: Record<string, string | undefined> } };
  return host.process?.env?.[SEED_VARIABLE];
}

function badOption(argument: string, expected: string, actual: unknown): never {
  throw new AttnkitError(
    'invalid-argument',
    `conformance: ${argument} must be ${expected}, got ${describe(actual)}`,
    { argument, expected, actual: describe(actual) },
  );
}

/** Applies defaults and checks the options (seed from `ATTNKIT_CONFORMANCE_SEED` when not given). */
export function resolveConformanceOptions(options: ConformanceOptions = {}): ResolvedConformanceOptions {
  let seed = options.seed;
  if (seed === undefined) {
    const text = environmentSeed();
    if (text !== undefined && text.trim() !== '') {
      seed = Number(text);
      if (!Number.isSafeInteger(seed)) badOption(SEED_VARIABLE, 'an integer', text);
    }
  }
  if (seed === undefined) seed = Math.floor(Math.random() * 2 ** 31);
  if (!Number.isSafeInteger(seed)) badOption('options.seed', 'an integer', seed);
  const positive = (name: string, value: number | undefined, fallback: number): number => {
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || Number.isNaN(value) || value <= 0) {
      badOption(`options.${name}`, 'a number > 0', value);
    }
    return value;
  };
  const numRuns = positive('numRuns', options.numRuns, 60);
  const repeatCalls = positive('repeatCalls', options.repeatCalls, 1000);
  if (!Number.isInteger(numRuns)) badOption('options.numRuns', 'an integer', numRuns);
  if (!Number.isInteger(repeatCalls)) badOption('options.repeatCalls', 'an integer', repeatCalls);
  return {
    seed,
    numRuns,
    maxWork: positive('maxWork', options.maxWork, Number.POSITIVE_INFINITY),
    timeoutMs: positive('timeoutMs', options.timeoutMs, 60_000),
    repeatCalls,
    filter: options.filter ?? null,
  };
}

/** The cases a run with these options will list, in order (before capabilities are known). */
export function listCases(options: ConformanceOptions = {}): ConformanceCase[] {
  const filter = options.filter ?? null;
  return allCases().filter((testCase) => matches(filter, testCase.id));
}

function matches(filter: string | RegExp | null, id: string): boolean {
  if (filter === null || filter === '') return true;
  return typeof filter === 'string' ? id.includes(filter) : filter.test(id);
}

class TimeoutError extends Error {}

function withTimeout<T>(work: Promise<T>, ms: number, what: string, verb = 'finish'): Promise<T> {
  if (!Number.isFinite(ms)) return work;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} did not ${verb} within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

const now = (): number => globalThis.performance.now();

/**
 * One conformance run over one factory: a shared backend for most cases, fresh ones where a case asks,
 * every backend it created disposed at the end. {@link runConformance} and the vitest adapter drive it.
 */
export class ConformanceSession {
  readonly options: ResolvedConformanceOptions;
  private shared: AttentionBackend | null = null;
  private sharedReady: Promise<AttentionBackend> | null = null;
  private capabilities: BackendCapabilities | null = null;
  private name = 'unknown';
  private initError: string | null = null;
  private readonly created: AttentionBackend[] = [];
  private readonly disposals: Promise<void>[] = [];
  private readonly results: CaseResult[] = [];
  private readonly notes: string[] = [];
  private readonly startedAt = new Date();
  private readonly startTime = now();

  constructor(
    private readonly factory: BackendFactory,
    options: ConformanceOptions = {},
  ) {
    this.options = resolveConformanceOptions(options);
  }

  private async create(): Promise<AttentionBackend> {
    // Bounded: a factory promise that never settles would otherwise leave nothing for the event loop
    // to wait on, and Node would end the run silently with exit code 0.
    const pending = Promise.resolve().then(() => this.factory());
    let backend: AttentionBackend;
    try {
      backend = await withTimeout(pending, this.options.timeoutMs, 'the backend factory', 'settle');
    } catch (error) {
      if (error instanceof TimeoutError) {
        // a backend that arrives after we gave up must still be released
        pending
          .then((late: Partial<AttentionBackend> | null | undefined) =>
            typeof late?.dispose === 'function' ? late.dispose() : undefined,
          )
          .catch(() => undefined);
      }
      throw error;
    }
    if (typeof backend !== 'object' || backend === null || typeof backend.attention !== 'function') {
      throw new Error(`the factory returned ${describe(backend)}, not an AttentionBackend`);
    }
    this.created.push(backend);
    return backend;
  }

  private sharedBackend(): Promise<AttentionBackend> {
    if (this.sharedReady === null) {
      this.sharedReady = (async () => {
        const backend = await this.create();
        this.name = backend.name;
        await withTimeout(backend.init(), this.options.timeoutMs, 'init()');
        this.shared = backend;
        this.capabilities = backend.capabilities;
        return backend;
      })();
    }
    return this.sharedReady;
  }

  /** Creates and initialises the shared backend; a failure is recorded and fails every case. */
  async start(): Promise<void> {
    try {
      await this.sharedBackend();
    } catch (error) {
      this.initError = describe(error);
    }
  }

  /**
   * Makes sure the shared backend exists (replacing one retired after a timeout), without running a
   * case: the CLI's child process calls it before each case so that its watchdog times only the case.
   */
  async prepare(): Promise<void> {
    if (this.initError === null && this.sharedReady === null) await this.start();
  }

  /** Disposes without waiting forever: a backend hung by a timed-out case must not hang the suite. */
  private retire(backend: AttentionBackend): void {
    const index = this.created.indexOf(backend);
    if (index >= 0) this.created.splice(index, 1);
    const disposal = withTimeout(
      Promise.resolve().then(() => backend.dispose()),
      this.options.timeoutMs,
      `dispose() of backend "${backend.name}"`,
    ).catch((error: unknown) => {
      this.notes.push(`dispose failed: ${describe(error)}`);
    });
    this.disposals.push(disposal);
  }

  /** Runs one case (respecting maxWork and the timeout) and records its result. */
  async runCase(testCase: ConformanceCase): Promise<CaseResult> {
    const base = { id: testCase.id, group: testCase.group, title: testCase.title };
    const record = (result: CaseResult): CaseResult => {
      this.results.push(result);
      return result;
    };
    const empty = { worstAbsError: null, worstRelError: null, errorRatio: null };
    if (this.initError === null && this.sharedReady === null) await this.start();
    const work = testCase.work(this.options, this.capabilities);
    let reducedNote: string | null = null;
    if (work > this.options.maxWork) {
      reducedNote = testCase.reduce ? testCase.reduce(this.options) : null;
      if (reducedNote === null) {
        return record({
          ...base,
          ...empty,
          status: 'omitted',
          expectation: 'match-reference',
          note: `needs ~${work.toExponential(2)} multiply-adds, above maxWork ${this.options.maxWork}`,
          reduced: false,
          timeMs: 0,
          message: null,
        });
      }
    }
    const started = now();
    if (this.initError === null && this.sharedReady === null) await this.start();
    if (this.initError !== null) {
      return record({
        ...base,
        ...empty,
        status: 'failed',
        expectation: 'match-reference',
        note: reducedNote,
        reduced: reducedNote !== null,
        timeMs: 0,
        message: `backend could not be created or initialised: ${this.initError}`,
      });
    }
    const fresh: AttentionBackend[] = [];
    const capabilities = this.capabilities as BackendCapabilities;
    const context: CaseContext = {
      backend: () => this.sharedBackend(),
      fresh: async () => {
        const backend = await this.create();
        fresh.push(backend);
        return backend;
      },
      capabilities,
      tolerance: capabilities.tolerance,
      options: this.options,
    };
    let outcome: CaseOutcome;
    try {
      outcome = await withTimeout(
        Promise.resolve().then(() => testCase.run(context)),
        this.options.timeoutMs,
        `case ${testCase.id}`,
      );
    } catch (error) {
      outcome = {
        ok: false,
        expectation: 'match-reference',
        message: error instanceof TimeoutError ? error.message : `case threw: ${describe(error)}`,
      };
      if (error instanceof TimeoutError && this.shared !== null) {
        // The shared backend may still be busy with the hung call: later cases get a new one.
        this.notes.push(`case ${testCase.id} timed out; the shared backend was replaced`);
        this.retire(this.shared);
        this.shared = null;
        this.sharedReady = null;
      }
    }
    for (const backend of fresh) this.retire(backend);
    const note = outcome.reduced ?? reducedNote;
    const seedText = testCase.group === 'random' ? ` [seed ${this.options.seed}]` : '';
    if (outcome.omitted) {
      return record({
        ...base,
        ...empty,
        status: 'omitted',
        expectation: outcome.expectation,
        note: outcome.omitted,
        reduced: false,
        timeMs: Math.round((now() - started) * 1000) / 1000,
        message: null,
      });
    }
    return record({
      ...base,
      status: outcome.ok ? 'passed' : 'failed',
      expectation: outcome.expectation,
      note,
      reduced: note !== null,
      worstAbsError: finiteOrNull(outcome.worstAbsError),
      worstRelError: finiteOrNull(outcome.worstRelError),
      errorRatio: finiteOrNull(outcome.errorRatio),
      timeMs: Math.round((now() - started) * 1000) / 1000,
      message: outcome.message ? outcome.message + (outcome.ok ? '' : seedText) : null,
    });
  }

  /** Disposes everything the session created and returns the report. */
  async finish(): Promise<ConformanceReport> {
    for (const backend of [...this.created]) this.retire(backend);
    await Promise.all(this.disposals);
    return this.report();
  }

  /** The report so far, without disposing anything (the CLI's child process sends it after each case). */
  report(): ConformanceReport {
    const cases = this.results;
    const count = (status: CaseResult['status']) => cases.filter((result) => result.status === status).length;
    const capabilities = this.capabilities;
    return {
      backend: {
        name: this.name,
        engine: capabilities?.engine ?? 'unknown',
        capabilities: capabilities === null ? null : JSON.parse(JSON.stringify(capabilities)),
        error: this.initError,
      },
      tolerance: capabilities === null ? null : { ...capabilities.tolerance },
      seed: this.options.seed,
      options: {
        numRuns: this.options.numRuns,
        maxWork: Number.isFinite(this.options.maxWork) ? this.options.maxWork : null,
        timeoutMs: this.options.timeoutMs,
        repeatCalls: this.options.repeatCalls,
        filter: this.options.filter === null ? null : String(this.options.filter),
      },
      startedAt: this.startedAt.toISOString(),
      durationMs: Math.round(now() - this.startTime),
      cases: [...cases],
      totals: {
        cases: cases.length,
        passed: count('passed'),
        failed: count('failed'),
        omitted: count('omitted'),
        reduced: cases.filter((result) => result.reduced && result.status !== 'omitted').length,
      },
      notes: [...this.notes],
    };
  }
}

function finiteOrNull(value: number | null | undefined): number | null {
  return value === null || value === undefined || !Number.isFinite(value) ? null : value;
}

/**
 * Runs every conformance case (or those `options.filter` selects) against backends made by `factory`
 * and returns a JSON-serialisable report. Never throws for a failing backend: failures are in the
 * report. Disposes every backend it created.
 */
export async function runConformance(
  factory: BackendFactory,
  options: ConformanceOptions = {},
): Promise<ConformanceReport> {
  const session = new ConformanceSession(factory, options);
  await session.start();
  for (const testCase of listCases({
    ...(session.options.filter !== null && { filter: session.options.filter }),
  })) {
    const result = await session.runCase(testCase);
    options.onCaseDone?.(result);
  }
  return session.finish();
}
