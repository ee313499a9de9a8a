import {
  type AttentionBackend,
  type AttentionGradients,
  type AttentionInputs,
  type AttentionOptions,
  type AttentionProblem,
  type BackendCapabilities,
  referenceAttentionBackwardProblem64,
  referenceAttentionProblem64,
  type Tolerance,
  validateAttention,
} from '@attnkit/spec';
import { type GradientErrorBound, logitErrorBound } from './backward-bound.js';
import { expectRejection, outcomeOf, unsupportedReason } from './check.js';
import { Comparison, describe, naiveRowErrors, type RowYardstick } from './compare.js';
import { type NaiveGradients32, naiveAttentionBackward32 } from './naive-backward.js';
import type { CaseOutcome } from './types.js';

/** Why a backward problem cannot run on these capabilities, or null when it can. */
export function backwardUnsupportedReason(
  name: string,
  capabilities: BackendCapabilities,
  problem: AttentionProblem,
): string | null {
  if (!capabilities.features.includes('backward')) return `backend "${name}" does not list backward`;
  return unsupportedReason(name, capabilities, { ...problem, returnLse: false, returnWeights: false });
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice();
}

function sameBytes(view: ArrayBufferView, before: Uint8Array): boolean {
  const now = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  for (let i = 0; i < now.length; i++) if (now[i] !== before[i]) return false;
  return true;
}

/** Every array a backward call reads, by name. */
function backwardViews(
  inputs: AttentionInputs,
  extra: Record<'output' | 'lse' | 'gradOutput', Float32Array>,
  options: AttentionOptions,
): [string, ArrayBufferView][] {
  const views: [string, ArrayBufferView][] = [
    ['q', inputs.q],
    ['k', inputs.k],
    ['v', inputs.v],
    ['output', extra.output],
    ['lse', extra.lse],
    ['gradOutput', extra.gradOutput],
  ];
  if (options.bias) views.push(['options.bias.data', options.bias.data]);
  for (const key of ['keyMask', 'alibiSlopes', 'sinks'] as const) {
    const value = options[key];
    if (value) views.push([`options.${key}`, value]);
  }
  return views;
}

/** How messages name the backward's yardstick. */
const YARDSTICK = 'float32 error (naive, or the logit bound where larger)';

/**
 * Gradients against the float64 reference gradient of the same problem, each tensor with the naive
 * float32 yardstick per row of its last dimension (gradQ/gradK rows of D, gradV of Dv, gradBias of
 * its last axis, gradSinks one per head). That yardstick `err32` is the naive float32 backward's
 * error or the first-order bound of the logits' float32 error (`logitErrorBound`), whichever
 * is larger: the naive composition's recomputed logits round exactly as its forward's did, so their
 * errors cancel in `exp(s - lse)`, and a fused backward, whose forward rounded them differently,
 * has no such luck. gradBias/gradSinks must be present exactly when the
 * problem has a bias/sinks.
 */
export function compareGradients(
  comparison: Comparison,
  gradients: AttentionGradients | undefined,
  problem: AttentionProblem,
  gradOutput: Float32Array,
  label = '',
): void {
  if (typeof gradients !== 'object' || gradients === null) {
    comparison.fail(`${label}gradients: expected an object, got ${describe(gradients)}`);
    return;
  }
  const reference = referenceAttentionBackwardProblem64({ ...problem, gradOutput });
  let naive: NaiveGradients32 | null = null;
  const lazy = () => {
    naive ??= naiveAttentionBackward32(problem, gradOutput);
    return naive;
  };
  let bound: GradientErrorBound | null = null;
  const lazyBound = () => {
    bound ??= logitErrorBound(problem, gradOutput);
    return bound;
  };
  // err32 per row: the naive float32 error, or the logit bound where that is larger
  const yardstick = (name: keyof GradientErrorBound, ref: ArrayLike<number>, row: number): RowYardstick => ({
    name: YARDSTICK,
    rowErrors: () => {
      const errors = naiveRowErrors(lazy()[name], ref, row);
      const logits = lazyBound()[name];
      if (logits !== undefined)
        for (let r = 0; r < errors.length; r++) errors[r] = Math.max(errors[r], logits[r]);
      return errors;
    },
  });
  const tensor = (name: keyof GradientErrorBound, got: unknown, ref: ArrayLike<number>, row: number) =>
    comparison.tensor(`${label}${name}`, got, ref, yardstick(name, ref, row), row);
  const { headDim: D, valueDim: Dv } = problem.shape;
  tensor('gradQ', gradients.gradQ, reference.gradQ, D);
  tensor('gradK', gradients.gradK, reference.gradK, D);
  tensor('gradV', gradients.gradV, reference.gradV, Dv);
  if (reference.gradBias && problem.bias) {
    tensor('gradBias', gradients.gradBias, reference.gradBias, problem.bias.shape[3]);
  } else if (gradients.gradBias !== undefined) {
    comparison.fail(`${label}gradBias: returned without a bias (expected absent)`);
  }
  if (reference.gradSinks) {
    tensor('gradSinks', gradients.gradSinks, reference.gradSinks, 1);
  } else if (gradients.gradSinks !== undefined) {
    comparison.fail(`${label}gradSinks: returned without sinks (expected absent)`);
  }
}

/**
 * One backward call checked end to end. The backend's own forward (with `returnLse`) produces the
 * `output` and `lse` its backward receives, as a training loop would; its gradients must then match
 * the float64 reference gradient within the declared tolerance, and every input must come back
 * unchanged. When the capabilities cannot run the problem, the call must reject `unsupported`.
 * `onGradients` sees the result (the determinism case compares two).
 */
export async function checkBackward(
  backend: AttentionBackend,
  capabilities: BackendCapabilities,
  tolerance: Tolerance,
  inputs: AttentionInputs,
  gradOutput: Float32Array,
  options: AttentionOptions = {},
  onGradients?: (gradients: AttentionGradients) => void,
): Promise<CaseOutcome> {
  const problem = validateAttention(inputs, options);
  const reason = backwardUnsupportedReason(backend.name, capabilities, problem);
  if (reason !== null) {
    // Valid output/lse from the reference, so only the missing capability can reject the call.
    const forward = referenceAttentionProblem64({ ...problem, returnLse: true, returnWeights: false });
    const call = () =>
      backend.attentionBackward(
        {
          ...inputs,
          output: Float32Array.from(forward.output),
          lse: Float32Array.from(forward.lse as Float64Array),
          gradOutput,
        },
        options,
      );
    const outcome = await expectRejection(call, 'unsupported');
    return {
      ...outcome,
      message: outcome.ok
        ? `rejected as expected: ${outcome.message}`
        : `${outcome.message} (capabilities say: ${reason})`,
    };
  }
  let output: Float32Array;
  let lse: Float32Array;
  try {
    const forward = await backend.attention(inputs, { ...options, returnLse: true });
    output = forward.output;
    lse = forward.lse;
  } catch (error) {
    return {
      ok: false,
      expectation: 'match-reference',
      message: `forward attention rejected: ${describe(error)}`,
    };
  }
  const views = backwardViews(inputs, { output, lse, gradOutput }, options);
  const before = views.map(([, view]) => bytesOf(view));
  let gradients: AttentionGradients;
  try {
    gradients = await backend.attentionBackward({ ...inputs, output, lse, gradOutput }, options);
  } catch (error) {
    return {
      ok: false,
      expectation: 'match-reference',
      message: `attentionBackward rejected: ${describe(error)}`,
    };
  }
  const comparison = new Comparison(tolerance);
  compareGradients(comparison, gradients, problem, gradOutput);
  views.forEach(([name, view], index) => {
    if (!sameBytes(view, before[index])) comparison.fail(`${name} was modified by the backend`);
  });
  onGradients?.(gradients);
  return outcomeOf(comparison);
}
