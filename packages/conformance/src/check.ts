import {
  type AttentionBackend,
  type AttentionInputs,
  type AttentionOptions,
  type AttentionProblem,
  type AttentionResult,
  type AttnkitErrorCode,
  assertLayerSupported,
  assertMatmulSupported,
  assertSupported,
  type BackendCapabilities,
  f16StorageErrorBound,
  isAttnkitError,
  type LayerInputs,
  type MatmulInputs,
  multiHeadAttention,
  referenceAttentionProblem64,
  referenceMatmulInputs64,
  referenceMultiHeadAttention64,
  type Tolerance,
  validateAttention,
  validateLayer,
  validateMatmul,
  withF16StoredInputs,
} from '@attnkit/spec';
import { Comparison, describe } from './compare.js';
import {
  type NaiveResult32,
  naiveAttention32,
  naiveMatmulInputs32,
  naiveMultiHeadAttention32,
} from './naive.js';
import type { CaseOutcome } from './types.js';

/** Calls `call`, turning a synchronous throw into a rejection but remembering it happened. */
function invoke<T>(call: () => Promise<T>): { promise: Promise<T>; threwSynchronously: boolean } {
  try {
    return { promise: Promise.resolve(call()), threwSynchronously: false };
  } catch (error) {
    return { promise: Promise.reject(error), threwSynchronously: true };
  }
}

/** Why a problem cannot run on these capabilities (`unsupported`), or null when it can. */
export function unsupportedReason(
  name: string,
  capabilities: BackendCapabilities,
  problem: AttentionProblem,
): string | null {
  return rejectionOf(() => assertSupported(name, capabilities, problem));
}

/** The message of the `unsupported` error `check` throws, or `null` when it passes. */
function rejectionOf(check: () => void): string | null {
  try {
    check();
    return null;
  } catch (error) {
    if (isAttnkitError(error) && error.code === 'unsupported') return error.message;
    throw error;
  }
}

/**
 * Expects `call` to reject with an {@link AttnkitError} of `code` whose `argument` starts with
 * `argument` (when given) and whose message names it.
 */
export async function expectRejection(
  call: () => Promise<unknown>,
  code: AttnkitErrorCode,
  argument?: string,
): Promise<CaseOutcome> {
  const expectation =
    code === 'invalid-argument'
      ? 'reject-invalid-argument'
      : code === 'unsupported'
        ? 'reject-unsupported'
        : code === 'disposed'
          ? 'reject-disposed'
          : 'behaviour';
  const { promise, threwSynchronously } = invoke(call);
  let error: unknown;
  try {
    await promise;
    return { ok: false, expectation, message: `resolved; expected a rejection with code "${code}"` };
  } catch (caught) {
    error = caught;
  }
  if (threwSynchronously) {
    return {
      ok: false,
      expectation,
      message: `threw synchronously (${describe(error)}); an async method must return a rejected promise`,
    };
  }
  if (!isAttnkitError(error)) {
    return {
      ok: false,
      expectation,
      message: `rejected with ${describe(error)}; expected AttnkitError "${code}"`,
    };
  }
  if (error.code !== code) {
    return {
      ok: false,
      expectation,
      message: `rejected with code "${error.code}" (${error.message}); expected "${code}"`,
    };
  }
  if (argument !== undefined) {
    const named = error.argument ?? '';
    if (!named.startsWith(argument)) {
      return {
        ok: false,
        expectation,
        message: `error.argument is ${JSON.stringify(error.argument)}; expected it to name ${JSON.stringify(argument)} (${error.message})`,
      };
    }
    // `options.mask` may be worded as `options has unknown key "mask"`: parent and key both named.
    const dot = named.lastIndexOf('.');
    const worded =
      dot > 0 && error.message.includes(named.slice(0, dot)) && error.message.includes(named.slice(dot + 1));
    if (!error.message.includes(named) && !worded) {
      return { ok: false, expectation, message: `message does not name ${named}: ${error.message}` };
    }
  }
  return { ok: true, expectation, message: error.message };
}

function snapshot(arrays: readonly ArrayBufferView[]): Uint8Array[] {
  return arrays.map((view) => new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice());
}

function unchanged(
  names: readonly string[],
  arrays: readonly ArrayBufferView[],
  before: Uint8Array[],
): string[] {
  const changed: string[] = [];
  arrays.forEach((view, index) => {
    const now = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    const then = before[index];
    for (let i = 0; i < now.length; i++) {
      if (now[i] !== then[i]) {
        changed.push(names[index]);
        return;
      }
    }
  });
  return changed;
}

function inputViews(inputs: AttentionInputs, options: AttentionOptions): [string[], ArrayBufferView[]] {
  const names = ['q', 'k', 'v'];
  const views: ArrayBufferView[] = [inputs.q, inputs.k, inputs.v];
  if (options.bias) {
    names.push('options.bias.data');
    views.push(options.bias.data);
  }
  for (const key of ['keyMask', 'alibiSlopes', 'sinks'] as const) {
    const value = options[key];
    if (value) {
      names.push(`options.${key}`);
      views.push(value);
    }
  }
  return [names, views];
}

/**
 * Compares a result with the float64 reference of the same (validated) problem. With `precision:
 * 'f16-storage'`, two checks, as the cache's f16 cases make: (1) what the kernel does with what it
 * stored: the reference on q/k/v rounded by the spec's arithmetic `roundToF16`, with the backend's
 * float32 tolerance alone (and the naive float32 yardstick on the same rounded inputs), so a kernel
 * error far below the declared bound still fails; (2) what the caller gets: the reference on the
 * original inputs with the tolerance plus the spec's declared bound (`f16StorageErrorBound`).
 */
export function compareAttention(
  comparison: Comparison,
  result: AttentionResult | undefined,
  problem: AttentionProblem,
  label = '',
): void {
  if (typeof result !== 'object' || result === null) {
    comparison.fail(`${label}result: expected an object, got ${describe(result)}`);
    return;
  }
  const { valueDim, keyLength } = problem.shape;
  const reference = referenceAttentionProblem64(problem);
  if (problem.precision !== 'f16-storage') {
    compareResult(comparison, result, reference, () => naiveAttention32(problem), valueDim, keyLength, label);
    return;
  }
  const stored = withF16StoredInputs(problem);
  compareResult(
    comparison,
    result,
    reference,
    () => naiveAttention32(stored),
    valueDim,
    keyLength,
    `${label}(on f16-rounded q/k/v) `,
  );
  const original: AttentionProblem = { ...problem, precision: 'f32' };
  compareResult(
    comparison,
    result,
    referenceAttentionProblem64(original),
    () => naiveAttention32(original),
    valueDim,
    keyLength,
    label,
    f16StorageAllowance(problem),
  );
}

/** Per-row allowances on top of the tolerance: the spec's declared error of a storage precision. */
interface RowAllowances {
  output: ArrayLike<number>;
  lse: ArrayLike<number>;
  weights: ArrayLike<number>;
}

/**
 * The spec's f16 storage bound for every row of a problem (`f16StorageErrorBound`, q rounded too). A
 * weight moves by a factor within `e^(+-2E)` (spec README), so by at most `e^2E - 1`.
 */
function f16StorageAllowance(problem: AttentionProblem): RowAllowances {
  const { q, k, v, shape, scale } = problem;
  const { output, lse } = f16StorageErrorBound({ q, k, v, shape, scale, roundsQuery: true });
  return { output, lse, weights: lse.map((E) => Math.expm1(2 * E)) };
}

/** Output, lse and weights against the reference, with the naive float32 result computed once on demand. */
function compareResult(
  comparison: Comparison,
  result: AttentionResult,
  reference: ReturnType<typeof referenceAttentionProblem64>,
  computeNaive: () => NaiveResult32,
  outputRow: number,
  keyLength: number,
  label = '',
  allowances?: RowAllowances,
): void {
  let naive: NaiveResult32 | null = null;
  const lazy = () => {
    naive ??= computeNaive();
    return naive;
  };
  const named = 'f16 storage bound';
  comparison.tensor(
    `${label}output`,
    result.output,
    reference.output,
    () => lazy().output,
    outputRow,
    allowances?.output,
    named,
  );
  if (reference.lse)
    comparison.tensor(`${label}lse`, result.lse, reference.lse, () => lazy().lse, 1, allowances?.lse, named);
  if (reference.weights)
    comparison.tensor(
      `${label}weights`,
      result.weights,
      reference.weights,
      () => lazy().weights,
      keyLength,
      allowances?.weights,
      named,
    );
}

/** Turns a comparison into a case outcome. */
export function outcomeOf(
  comparison: Comparison,
  expectation: CaseOutcome['expectation'] = 'match-reference',
): CaseOutcome {
  return {
    ok: comparison.ok,
    expectation,
    worstAbsError: comparison.worstAbs,
    worstRelError: comparison.worstRel,
    errorRatio: comparison.worstRatio,
    message: comparison.summary(),
  };
}

/**
 * One attention call checked end to end: when the capabilities cannot run it, it must reject with
 * `unsupported`; otherwise the result must match the reference within tolerance and the inputs must
 * come back unchanged.
 */
export async function checkAttention(
  backend: AttentionBackend,
  capabilities: BackendCapabilities,
  tolerance: Tolerance,
  inputs: AttentionInputs,
  options: AttentionOptions = {},
): Promise<CaseOutcome> {
  const problem = validateAttention(inputs, options);
  const reason = unsupportedReason(backend.name, capabilities, problem);
  if (reason !== null) {
    const outcome = await expectRejection(() => backend.attention(inputs, options), 'unsupported');
    return {
      ...outcome,
      message: outcome.ok
        ? `rejected as expected: ${outcome.message}`
        : `${outcome.message} (capabilities say: ${reason})`,
    };
  }
  const [names, views] = inputViews(inputs, options);
  const before = snapshot(views);
  const comparison = new Comparison(tolerance);
  let result: AttentionResult;
  try {
    result = await backend.attention(inputs, options);
  } catch (error) {
    return { ok: false, expectation: 'match-reference', message: `attention rejected: ${describe(error)}` };
  }
  compareAttention(comparison, result, problem);
  for (const name of unchanged(names, views, before)) comparison.fail(`${name} was modified by the backend`);
  return outcomeOf(comparison);
}

/** The multi-head attention layer over the backend's matmul and attention, against the float64 layer. */
export async function checkLayer(
  backend: AttentionBackend,
  capabilities: BackendCapabilities,
  tolerance: Tolerance,
  inputs: LayerInputs,
  options: AttentionOptions = {},
): Promise<CaseOutcome> {
  // The gate's own rule for a layer: its attention's features and limits, and every tensor it makes.
  const reason = rejectionOf(() =>
    assertLayerSupported(backend.name, capabilities, validateLayer(inputs, options)),
  );
  if (reason !== null) {
    const outcome = await expectRejection(() => multiHeadAttention(backend, inputs, options), 'unsupported');
    return {
      ...outcome,
      message: outcome.ok
        ? `rejected as expected: ${outcome.message}`
        : `${outcome.message} (capabilities say: ${reason})`,
    };
  }
  const reference = referenceMultiHeadAttention64(inputs, options);
  const comparison = new Comparison(tolerance);
  let result: AttentionResult;
  try {
    result = await multiHeadAttention(backend, inputs, options);
  } catch (error) {
    return {
      ok: false,
      expectation: 'match-reference',
      message: `multiHeadAttention rejected: ${describe(error)}`,
    };
  }
  const { modelDim, keyLength } = validateLayer(inputs, options).shape;
  compareResult(
    comparison,
    result,
    reference,
    () => naiveMultiHeadAttention32(inputs, options),
    modelDim,
    keyLength,
  );
  return outcomeOf(comparison);
}

/** One matmul against the float64 reference; the inputs must come back unchanged. */
export async function checkMatmul(
  backend: AttentionBackend,
  tolerance: Tolerance,
  inputs: MatmulInputs,
): Promise<CaseOutcome> {
  const reason = rejectionOf(() =>
    assertMatmulSupported(backend.name, backend.capabilities, validateMatmul(inputs).shape),
  );
  if (reason !== null) {
    const outcome = await expectRejection(() => backend.matmul(inputs), 'unsupported');
    return { ...outcome, message: outcome.ok ? `rejected as expected: ${outcome.message}` : outcome.message };
  }
  const reference = referenceMatmulInputs64(inputs);
  const names = ['a', 'b', ...(inputs.bias ? ['bias'] : [])];
  const views = [inputs.a, inputs.b, ...(inputs.bias ? [inputs.bias] : [])];
  const before = snapshot(views);
  const comparison = new Comparison(tolerance);
  let result: Float32Array;
  try {
    result = await backend.matmul(inputs);
  } catch (error) {
    return { ok: false, expectation: 'match-reference', message: `matmul rejected: ${describe(error)}` };
  }
  comparison.tensor('c', result, reference, () => naiveMatmulInputs32(inputs), inputs.shape.n);
  for (const name of unchanged(names, views, before)) comparison.fail(`${name} was modified by the backend`);
  return outcomeOf(comparison);
}
