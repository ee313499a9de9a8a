import type { AttentionBackend, BackendCapabilities, Tolerance } from '@attnkit/spec';

/** Knobs of a conformance run. Every field is optional; the defaults suit a fast CPU backend. */
export interface ConformanceOptions {
  /**
   * Seed of the property-based (random) cases. Default: `ATTNKIT_CONFORMANCE_SEED` from the
   * environment when set, else a fresh one. Printed in the report and in every failure message.
   */
  seed?: number;
  /** Runs per property-based case (fast-check `numRuns`). Default 60. */
  numRuns?: number;
  /**
   * Largest amount of work, in multiply-adds, one case may ask for. A case above it is shrunk (fewer
   * repetitions or runs) and reported as reduced, or left out and reported as omitted, always with
   * the reason. For slow backends (software GPU renderers). Default: no cap.
   */
  maxWork?: number;
  /** Milliseconds one case may take before it fails as hung. Default 60 000. */
  timeoutMs?: number;
  /** Calls of the repeated-call (memory growth) cases. Default 1000. */
  repeatCalls?: number;
  /** Only cases whose id contains this string (or matches this RegExp) run. */
  filter?: string | RegExp;
  /** Called after each case, for progress output. */
  onCaseDone?: (result: CaseResult) => void;
}

/** What a case checks: a result against the reference, or a rejection with one error code. */
export type CaseExpectation =
  | 'match-reference'
  | 'reject-invalid-argument'
  | 'reject-unsupported'
  | 'reject-disposed'
  | 'behaviour';

/** `omitted`: not run at all (the reason is in `note`); a reduced case still passes or fails. */
export type CaseStatus = 'passed' | 'failed' | 'omitted';

/** One case of a report. JSON-serialisable: every number is finite or null. */
export interface CaseResult {
  /** Stable id, `group/name`. */
  id: string;
  group: string;
  /** One line: what the case checks. */
  title: string;
  status: CaseStatus;
  expectation: CaseExpectation;
  /** Why the case ran smaller than written (maxWork), or why it was omitted. */
  note: string | null;
  /** Whether the case ran in a reduced form (see `note`). */
  reduced: boolean;
  /** Largest `|out - ref|` over finite pairs of output, lse and weights; null when nothing was compared. */
  worstAbsError: number | null;
  /** Largest `|out - ref| / |ref|` over finite pairs with `ref != 0`; null when nothing was compared. */
  worstRelError: number | null;
  /** Largest `|out - ref| / (atol + rtol*|ref|)`: above 1 fails. Null when nothing was compared. */
  errorRatio: number | null;
  timeMs: number;
  /** Why it failed (or extra detail); null when there is nothing to say. */
  message: string | null;
}

/** The JSON report of a run. */
export interface ConformanceReport {
  backend: {
    name: string;
    engine: string;
    capabilities: BackendCapabilities | null;
    /** Set when the backend could not be created or initialised. */
    error: string | null;
  };
  tolerance: Tolerance | null;
  seed: number;
  options: {
    numRuns: number;
    maxWork: number | null;
    timeoutMs: number;
    repeatCalls: number;
    filter: string | null;
  };
  startedAt: string;
  durationMs: number;
  cases: CaseResult[];
  totals: { cases: number; passed: number; failed: number; omitted: number; reduced: number };
  /** Problems outside any one case: a dispose that hung, a backend replaced after a timeout. */
  notes: string[];
}

/** Options with every default applied. */
export interface ResolvedConformanceOptions {
  seed: number;
  numRuns: number;
  maxWork: number;
  timeoutMs: number;
  repeatCalls: number;
  filter: string | RegExp | null;
}

/** What a running case can use. Backends obtained here are disposed by the runner. */
export interface CaseContext {
  /** The shared, initialised backend. */
  backend(): Promise<AttentionBackend>;
  /** A new backend from the factory, not yet initialised; the runner disposes it after the case. */
  fresh(): Promise<AttentionBackend>;
  /** Capabilities of the shared backend (read after init). */
  readonly capabilities: BackendCapabilities;
  readonly tolerance: Tolerance;
  readonly options: ResolvedConformanceOptions;
}

/** What a case's run returns; the runner adds id, timing and status. */
export interface CaseOutcome {
  ok: boolean;
  expectation: CaseExpectation;
  worstAbsError?: number | null;
  worstRelError?: number | null;
  errorRatio?: number | null;
  message?: string | null;
  /** Set when the case shrank itself to fit the options (maxWork). */
  reduced?: string | null;
  /** Set when the case does not apply to this backend (e.g. a limit it does not declare): why. */
  omitted?: string | null;
}

/** A conformance case. `work` (multiply-adds, estimated) is compared with `maxWork` before it runs. */
export interface ConformanceCase {
  id: string;
  group: string;
  title: string;
  /**
   * Estimated multiply-adds of the whole case at full size; `capabilities` are the shared backend's
   * (null when it could not initialise), for cases whose size depends on them.
   */
  work(options: ResolvedConformanceOptions, capabilities: BackendCapabilities | null): number;
  /**
   * Called when `work` is above `maxWork`: says what the case will shrink (its `run` reads
   * `options.maxWork` and sizes itself), or returns null when it cannot shrink and must be omitted.
   */
  reduce?: (options: ResolvedConformanceOptions) => string | null;
  run(context: CaseContext): Promise<CaseOutcome>;
}
