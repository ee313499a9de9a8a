/**
 * @attnkit/conformance: the cases that prove an attnkit backend agrees with the spec, a runner that
 * returns a JSON report, a vitest adapter (`@attnkit/conformance/vitest`) and a CLI
 * (`attnkit-conformance`). Browser-safe: nothing here imports a Node module.
 * @packageDocumentation
 */

export { type GradientErrorBound, logitErrorBound } from './backward-bound.js';
export { checkAttention, checkLayer, checkMatmul, expectRejection } from './check.js';
export { backwardUnsupportedReason, checkBackward, compareGradients } from './check-backward.js';
export {
  Comparison,
  naiveRowErrors,
  type RowYardstick,
  TOLERANCE_CAP,
  toleranceProblems,
} from './compare.js';
export { columnWidthsFor, FULL_COLUMN_WIDTHS, formatReport, summaryLine } from './format.js';
export {
  type NaiveResult32,
  naiveAttention32,
  naiveMatmul32,
  naiveMatmulInputs32,
  naiveMultiHeadAttention32,
} from './naive.js';
export {
  type NaiveGradients32,
  naiveAttentionBackward32,
  naiveBackwardOfForward32,
} from './naive-backward.js';
export { hashString, prng } from './random.js';
export { ConformanceSession, listCases, resolveConformanceOptions, runConformance } from './runner.js';
export { randomArray, randomAttentionInputs, signedPrng, signedUniform } from './test-data.js';
export type {
  CaseContext,
  CaseExpectation,
  CaseOutcome,
  CaseResult,
  CaseStatus,
  ConformanceCase,
  ConformanceOptions,
  ConformanceReport,
  ResolvedConformanceOptions,
} from './types.js';
