import { kvHeadFor, queryPosition, visibleKeyRange } from './masking.js';
import { type ReferenceProblem, referenceAttentionProblem64 } from './reference.js';
import { shapeSymbols } from './symbols.js';
import type {
  AttentionBias,
  AttentionInputs,
  AttentionOptions,
  AttentionProblem,
  KnownAttentionOptions,
} from './types.js';
import { float32Tensor, readOnce, validateAttentionFor } from './validate.js';

const BACKWARD = 'attentionBackward';

/**
 * The inputs of {@link AttentionBackend.attentionBackward}: the forward's inputs, what the forward
 * returned for them (with `returnLse: true`), and the gradient of the loss with respect to the output.
 */
export interface AttentionBackwardInputs extends AttentionInputs {
  /** The forward's output `[B, Hq, Lq, Dv]` for these inputs and options. */
  output: Float32Array;
  /** The forward's `lse [B, Hq, Lq]` (`-Infinity` for a row with no visible key). */
  lse: Float32Array;
  /** dLoss/dOutput `[B, Hq, Lq, Dv]`. */
  gradOutput: Float32Array;
}

/** What `attentionBackward` returns: dLoss with respect to every differentiable input. */
export interface AttentionGradients {
  /** `[B, Hq, Lq, D]`. */
  gradQ: Float32Array;
  /** `[B, Hkv, Lk, D]`: summed over the query heads that share a key/value head (GQA/MQA). */
  gradK: Float32Array;
  /** `[B, Hkv, Lk, Dv]`: summed like `gradK`. */
  gradV: Float32Array;
  /** The bias's own shape: summed over the dimensions it broadcasts along. Present when a bias was given. */
  gradBias?: Float32Array;
  /** `[Hq]`: summed over batch and query rows. Present when sinks were given. */
  gradSinks?: Float32Array;
}

/**
 * The gradients of a call made with options of type `O`: a `bias` makes `gradBias` a `Float32Array`,
 * `sinks` make `gradSinks` one. Options typed {@link AttentionOptions} keep both optional.
 */
export type AttentionGradientsFor<O extends AttentionOptions | undefined> = AttentionGradients &
  (O extends { bias: AttentionBias } ? { gradBias: Float32Array } : unknown) &
  (O extends { sinks: Float32Array } ? { gradSinks: Float32Array } : unknown);

/**
 * A validated backward call: the forward's problem (with `returnLse` and `returnWeights` false: they
 * do not change what is differentiated) and the three extra tensors.
 */
export interface AttentionBackwardProblem extends AttentionProblem {
  output: Float32Array;
  lse: Float32Array;
  gradOutput: Float32Array;
}

const BACKWARD_INPUT_KEYS: ReadonlySet<string> = new Set([
  'q',
  'k',
  'v',
  'shape',
  'output',
  'lse',
  'gradOutput',
]);

/**
 * Checks a backward call: the forward's inputs and options by the forward's rules (same errors,
 * named for `attentionBackward`), then `output`, `lse` and `gradOutput` by type and length. Pure and
 * allocation-free, like `validateAttention`. `returnLse`/`returnWeights` in the options are
 * accepted (the same options object may serve both calls) and ignored.
 */
export function validateAttentionBackward(
  given: AttentionBackwardInputs,
  options: AttentionOptions = {},
): AttentionBackwardProblem {
  const inputs = readOnce(
    BACKWARD,
    'inputs',
    given,
    BACKWARD_INPUT_KEYS,
    'an object { q, k, v, shape, output, lse, gradOutput }',
  );
  const forwardInputs = { q: inputs.q, k: inputs.k, v: inputs.v, shape: inputs.shape } as AttentionInputs;
  const forward = validateAttentionFor(BACKWARD, forwardInputs, options);
  const { batch: B, queryHeads: Hq, queryLength: Lq, valueDim: Dv } = forward.shape;
  const outputFormula = `B*Hq*Lq*Dv = ${B}*${Hq}*${Lq}*${Dv}`;
  const output = float32Tensor(BACKWARD, 'output', inputs.output, B * Hq * Lq * Dv, outputFormula);
  const lse = float32Tensor(BACKWARD, 'lse', inputs.lse, B * Hq * Lq, `B*Hq*Lq = ${B}*${Hq}*${Lq}`);
  const gradOutput = float32Tensor(
    BACKWARD,
    'gradOutput',
    inputs.gradOutput,
    B * Hq * Lq * Dv,
    outputFormula,
  );
  return { ...forward, returnLse: false, returnWeights: false, output, lse, gradOutput };
}

/** The reference's float64 gradients, before any rounding to float32. */
export interface ReferenceGradients64 {
  gradQ: Float64Array;
  gradK: Float64Array;
  gradV: Float64Array;
  gradBias?: Float64Array;
  gradSinks?: Float64Array;
}

/** A backward problem whose tensors may be float64 (the layer's reference feeds its own projections). */
export type ReferenceBackwardProblem = ReferenceProblem & { gradOutput: ArrayLike<number> };

/**
 * The executable definition of the gradient, in float64: the derivative of
 * {@link referenceAttentionProblem64}, written out. It recomputes the forward in float64 (the
 * problem's `output` and `lse`, float32 roundings, are not read), so it is the exact gradient at
 * `q, k, v` — what every backend is compared with. Per row (`b, h, i`, key head `g`):
 *
 * ```text
 * forward: r_j = scale * dot(q_i, k_j);  t_j = softcap ? c * tanh(r_j / c) : r_j
 *          s_j = t_j + bias + alibi (visible j), lse = log(sum_j exp(s_j) + exp(sink)),  P_j = exp(s_j - lse)
 *          O_i = sum_j P_j v_j
 * D_i   = dot(dO_i, O_i)                        // = sum_j P_j dP_j: the sink contributes no value
 * dP_j  = dot(dO_i, v_j)
 * dS_j  = P_j * (dP_j - D_i)                    // softmax derivative; 0 for masked keys
 * dV_j += P_j * dO_i                            // summed over the query heads of the group
 * dBias[b,h,i,j] += dS_j                        // summed over the bias's broadcast dimensions
 * dR_j  = softcap ? dS_j * (1 - tanh^2(r_j / c)) : dS_j
 * dQ_i += scale * dR_j * k_j;   dK_j += scale * dR_j * q_i
 * dSink_h += -P_sink * D_i,  P_sink = exp(sink - lse)
 * ```
 * A row with no visible key has `P = 0` and, with a sink, `O = 0` so `D_i = 0`: all its
 * gradients are zero. ALiBi slopes, the scale and the masks are not differentiated (constants).
 */
export function referenceAttentionBackwardProblem64(problem: ReferenceBackwardProblem): ReferenceGradients64 {
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(problem.shape);
  const { q, k, v, gradOutput: dO, scale, softcap, bias, alibiSlopes, sinks, keyMask } = problem;
  const forward = referenceAttentionProblem64({ ...problem, returnLse: true, returnWeights: false });
  const O = forward.output;
  const lse = forward.lse as Float64Array;
  const gradQ = new Float64Array(B * Hq * Lq * D);
  const gradK = new Float64Array(B * Hkv * Lk * D);
  const gradV = new Float64Array(B * Hkv * Lk * Dv);
  const gradBias = bias === null ? undefined : new Float64Array(bias.data.length);
  const gradSinks = sinks === null ? undefined : new Float64Array(Hq);

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const g = kvHeadFor(h, Hq, Hkv);
      const kBase = (b * Hkv + g) * Lk;
      for (let i = 0; i < Lq; i++) {
        const row = (b * Hq + h) * Lq + i;
        const rowLse = lse[row];
        if (rowLse === Number.NEGATIVE_INFINITY) continue; // nothing visible, no sink: zero gradients
        let Di = 0;
        for (let d = 0; d < Dv; d++) Di += dO[row * Dv + d] * O[row * Dv + d];
        if (gradSinks !== undefined && sinks !== null) {
          gradSinks[h] += -Math.exp(sinks[h] - rowLse) * Di;
        }
        const position = queryPosition(i, Lq, Lk);
        const range = visibleKeyRange(position, Lk, problem.causal, problem.slidingWindow);
        for (let j = range.start; j < range.end; j++) {
          if (keyMask !== null && keyMask[b * Lk + j] === 0) continue;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[row * D + d] * k[(kBase + j) * D + d];
          const r = scale * dot;
          let s = r;
          let tanh = 0;
          if (softcap !== null) {
            tanh = Math.tanh(r / softcap);
            s = softcap * tanh;
          }
          let biasIndex = -1;
          if (bias !== null) {
            const [sb, sh, si, sj] = bias.strides;
            biasIndex = b * sb + h * sh + i * si + j * sj;
            s += bias.data[biasIndex];
          }
          if (alibiSlopes !== null) s += -alibiSlopes[h] * (position - j);
          const p = Math.exp(s - rowLse);
          const vBase = (kBase + j) * Dv;
          let dP = 0;
          for (let d = 0; d < Dv; d++) {
            dP += dO[row * Dv + d] * v[vBase + d];
            gradV[vBase + d] += p * dO[row * Dv + d];
          }
          const dS = p * (dP - Di);
          if (gradBias !== undefined) gradBias[biasIndex] += dS;
          const dR = softcap === null ? dS : dS * (1 - tanh * tanh);
          for (let d = 0; d < D; d++) {
            gradQ[row * D + d] += scale * dR * k[(kBase + j) * D + d];
            gradK[(kBase + j) * D + d] += scale * dR * q[row * D + d];
          }
        }
      }
    }
  }
  return {
    gradQ,
    gradK,
    gradV,
    ...(gradBias && { gradBias }),
    ...(gradSinks && { gradSinks }),
  };
}

/** Validates, then computes the float64 reference gradients. The values conformance compares against. */
export function referenceAttentionBackward64<O extends AttentionOptions = AttentionOptions>(
  inputs: AttentionBackwardInputs,
  options?: KnownAttentionOptions<O>,
): ReferenceGradients64 {
  return referenceAttentionBackwardProblem64(validateAttentionBackward(inputs, options));
}

/** Rounds float64 gradients to the float32 result type. */
export function roundGradients(gradients: ReferenceGradients64): AttentionGradients {
  return {
    gradQ: Float32Array.from(gradients.gradQ),
    gradK: Float32Array.from(gradients.gradK),
    gradV: Float32Array.from(gradients.gradV),
    ...(gradients.gradBias && { gradBias: Float32Array.from(gradients.gradBias) }),
    ...(gradients.gradSinks && { gradSinks: Float32Array.from(gradients.gradSinks) }),
  };
}
