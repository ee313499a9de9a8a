import {
  type AttentionBackend,
  type AttentionBackwardInputs,
  type AttentionGradients,
  type AttentionInputs,
  type AttentionOptions,
  type AttentionShape,
  referenceAttentionProblem64,
  validateAttention,
} from '@attnkit/spec';
import { expectRejection } from '../check.js';
import { backwardUnsupportedReason, checkBackward } from '../check-backward.js';
import { Comparison } from '../compare.js';
import { DataSource, hashString } from '../random.js';
import type { CaseContext, CaseOutcome, ConformanceCase } from '../types.js';
import { planRepeats, repeated } from './behaviour.js';
import {
  type AttentionCaseSpec,
  attentionWork,
  biasOf,
  buildAttention,
  customCase,
  full,
} from './helpers.js';

/** A backward call costs about 2.5 forwards (scores twice, dP, dV, dQ, dK) plus its own forward. */
function backwardWork(shape: AttentionShape): number {
  return Math.ceil(3.5 * attentionWork(shape));
}

/** gradOutput `[B, Hq, Lq, Dv]`, uniform in [-1, 1), drawn after the case's inputs and options. */
function gradOutputFor(id: string, shape: AttentionShape): Float32Array {
  const s = full(shape);
  return new DataSource(hashString(`${id}/gradOutput`)).uniform(
    s.batch * s.queryHeads * s.queryLength * s.valueDim,
  );
}

/** A case: the backend's forward (with lse), then its backward, against the float64 reference gradient. */
function backwardCase(id: string, title: string, spec: AttentionCaseSpec): ConformanceCase {
  return customCase(id, title, backwardWork(spec.shape), async (context) => {
    const { inputs, options } = buildAttention(id, spec);
    const backend = await context.backend();
    return checkBackward(
      backend,
      context.capabilities,
      context.tolerance,
      inputs,
      gradOutputFor(id, spec.shape),
      options,
    );
  });
}

const BASE: AttentionShape = { batch: 2, queryHeads: 2, queryLength: 6, headDim: 4 };

function optionCases(): ConformanceCase[] {
  return [
    backwardCase('backward/default', 'gradients with no options (scale 1/sqrt(D))', { shape: BASE }),
    backwardCase('backward/scale', 'explicit scale 0.37 (a gradient off by the scale fails here)', {
      shape: BASE,
      options: { scale: 0.37 },
    }),
    backwardCase('backward/scale-negative', 'negative scale -0.8', { shape: BASE, options: { scale: -0.8 } }),
    backwardCase('backward/causal', 'causal mask', { shape: BASE, options: { causal: true } }),
    backwardCase('backward/window', 'slidingWindow 3 without causal', {
      shape: BASE,
      options: { slidingWindow: 3 },
    }),
    backwardCase('backward/window-causal', 'slidingWindow 2 with causal', {
      shape: BASE,
      options: { slidingWindow: 2, causal: true },
    }),
    backwardCase('backward/keyMask', 'keyMask: random padding per batch row', {
      shape: BASE,
      options: (data, s) => ({ keyMask: data.mask(s.batch * s.keyLength) }),
    }),
    backwardCase('backward/bias-full', 'bias [B,Hq,Lq,Lk]: gradBias is dS', {
      shape: BASE,
      options: (data) => ({ bias: biasOf(data, BASE) }),
    }),
    backwardCase('backward/bias-per-head', 'bias [1,Hq,Lq,Lk]: gradBias summed over the batch', {
      shape: BASE,
      options: (data) => ({ bias: biasOf(data, BASE, [false, true, true, true]) }),
    }),
    backwardCase('backward/bias-key-row', 'bias [B,1,1,Lk]: gradBias summed over heads and queries', {
      shape: BASE,
      options: (data) => ({ bias: biasOf(data, BASE, [true, false, false, true]) }),
    }),
    backwardCase(
      'backward/bias-scalar',
      'bias [1,1,1,1] with sinks: gradBias is the sum of every dS (= gradSinks summed: each row gives -P_sink*D_i)',
      {
        shape: BASE,
        options: (data) => ({
          bias: biasOf(data, BASE, [false, false, false, false]),
          sinks: new Float32Array([1, -0.5]),
        }),
      },
    ),
    backwardCase('backward/alibi', 'alibiSlopes (a constant: no gradient of its own)', {
      shape: BASE,
      options: { alibiSlopes: new Float32Array([0.5, 0.125]) },
    }),
    backwardCase('backward/alibi-causal', 'alibiSlopes with causal', {
      shape: BASE,
      options: { alibiSlopes: new Float32Array([0.25, 1]), causal: true },
    }),
    backwardCase(
      'backward/softcap-tight',
      'softcap 0.5 on scale-4 scores: through 1 - tanh^2 near saturation',
      {
        shape: BASE,
        options: { softcap: 0.5, scale: 4 },
      },
    ),
    backwardCase('backward/softcap-loose', 'softcap 30 (almost linear)', {
      shape: BASE,
      options: { softcap: 30 },
    }),
    backwardCase('backward/sinks', 'sinks: gradSinks = -sum_i P_sink * D_i (its sign is checked)', {
      shape: BASE,
      options: { sinks: new Float32Array([0.5, -1]) },
    }),
    backwardCase('backward/sinks-large', 'sinks 3: the sink takes most of the mass', {
      shape: BASE,
      options: { sinks: new Float32Array([3, 3]) },
    }),
    backwardCase('backward/everything', 'every option at once, GQA, cross, Dv != D', {
      shape: { batch: 2, queryHeads: 4, kvHeads: 2, queryLength: 5, keyLength: 9, headDim: 6, valueDim: 3 },
      options: (data, s) => ({
        scale: 0.6,
        causal: true,
        slidingWindow: 6,
        keyMask: data.mask(s.batch * s.keyLength, 0.8),
        bias: biasOf(data, s, [false, true, true, true]),
        alibiSlopes: new Float32Array([0.05, 0.1, 0.2, 0.4]),
        softcap: 2,
        sinks: new Float32Array([0.2, -0.3, 0.8, 0]),
      }),
    }),
  ];
}

function shapeCases(): ConformanceCase[] {
  return [
    backwardCase('backward/odd-sizes', 'odd sizes: Lq 7, Lk 13, D 5, Dv 3 (nothing divides a tile)', {
      shape: { batch: 1, queryHeads: 3, queryLength: 7, keyLength: 13, headDim: 5, valueDim: 3 },
    }),
    backwardCase('backward/gqa', 'grouped-query 4/2: gradK and gradV summed over each group', {
      shape: { batch: 2, queryHeads: 4, kvHeads: 2, queryLength: 5, headDim: 4 },
    }),
    backwardCase('backward/mqa-causal', 'multi-query 6/1, causal', {
      shape: { batch: 1, queryHeads: 6, kvHeads: 1, queryLength: 5, headDim: 4 },
      options: { causal: true },
    }),
    backwardCase('backward/cross', 'cross-attention Lq 3, Lk 11', {
      shape: { batch: 2, queryHeads: 2, queryLength: 3, keyLength: 11, headDim: 4 },
    }),
    backwardCase('backward/cross-causal-decode', 'one query over 40 keys, causal (bottom-right)', {
      shape: { batch: 1, queryHeads: 2, queryLength: 1, keyLength: 40, headDim: 8 },
      options: { causal: true },
    }),
    backwardCase('backward/value-dim', 'Dv 7 != D 3', {
      shape: { batch: 1, queryHeads: 2, queryLength: 5, headDim: 3, valueDim: 7 },
    }),
    backwardCase(
      'backward/tiles-causal',
      'L 130, D 32, causal: crosses every tile boundary, masked tiles skipped',
      {
        shape: { batch: 1, queryHeads: 2, queryLength: 130, headDim: 32 },
        options: { causal: true },
      },
    ),
    backwardCase('backward/tiles-gqa-window', 'L 97, GQA 4/2, D 16, window 20, causal', {
      shape: { batch: 1, queryHeads: 4, kvHeads: 2, queryLength: 97, headDim: 16 },
      options: { causal: true, slidingWindow: 20 },
    }),
    backwardCase('backward/head-dim-128', 'D 128, L 33', {
      shape: { batch: 1, queryHeads: 1, queryLength: 33, headDim: 128 },
    }),
  ];
}

function edgeCases(): ConformanceCase[] {
  return [
    backwardCase(
      'backward/masked-batch-row',
      'a batch row whose keys are all masked: zero gradients, never NaN',
      {
        shape: BASE,
        options: (_data, s) => {
          const keyMask = new Uint8Array(s.batch * s.keyLength).fill(1);
          keyMask.fill(0, 0, s.keyLength);
          return { keyMask };
        },
      },
    ),
    backwardCase('backward/masked-rows-causal', 'causal Lq 6 > Lk 3: the first queries see nothing', {
      shape: { batch: 1, queryHeads: 2, queryLength: 6, keyLength: 3, headDim: 4 },
      options: { causal: true },
    }),
    backwardCase(
      'backward/masked-rows-sinks',
      'rows that see only the sink: zero gradients, gradSinks from the rest',
      {
        shape: { batch: 1, queryHeads: 2, queryLength: 6, keyLength: 3, headDim: 4 },
        options: { causal: true, sinks: new Float32Array([0.5, 1]) },
      },
    ),
    backwardCase('backward/large-logits', 'logits near 60: P from a rounded lse, peaked softmax', {
      shape: { batch: 1, queryHeads: 2, queryLength: 8, headDim: 16 },
      inputs: (data, shape) => {
        const s = full(shape);
        return {
          q: data.uniform(s.batch * s.queryHeads * s.queryLength * s.headDim, -2, 2),
          k: data.uniform(s.batch * s.kvHeads * s.keyLength * s.headDim, -2, 2),
          v: data.uniform(s.batch * s.kvHeads * s.keyLength * s.valueDim),
          shape,
        };
      },
      options: { scale: 4 },
    }),
    backwardCase('backward/scale-zero', 'scale 0: uniform weights, gradQ = gradK = 0', {
      shape: BASE,
      options: { scale: 0 },
    }),
  ];
}

/** Two calls on the same inputs return the same bits (when the backend declares determinism). */
function determinismCase(): ConformanceCase {
  const id = 'backward/deterministic';
  const spec: AttentionCaseSpec = {
    shape: { batch: 1, queryHeads: 4, kvHeads: 2, queryLength: 70, headDim: 16 },
    options: (data, s) => ({
      causal: true,
      bias: biasOf(data, s, [false, true, false, true]),
      sinks: new Float32Array([0.1, 0.2, 0.3, 0.4]),
    }),
  };
  return customCase(
    id,
    'same input, same bits: two backward calls, GQA, broadcast bias, sinks',
    2 * backwardWork(spec.shape),
    async (context) => {
      const { inputs, options } = buildAttention(id, spec);
      const gradOutput = gradOutputFor(id, spec.shape);
      const backend = await context.backend();
      const results: AttentionGradients[] = [];
      for (let call = 0; call < 2; call++) {
        const outcome = await checkBackward(
          backend,
          context.capabilities,
          context.tolerance,
          inputs,
          gradOutput,
          options,
          (gradients) => results.push(gradients),
        );
        if (!outcome.ok || results.length === 0) return outcome;
      }
      if (!context.capabilities.deterministic) {
        return {
          ok: true,
          expectation: 'behaviour',
          message: 'the backend does not declare determinism; only matched the reference',
        };
      }
      const comparison = new Comparison(context.tolerance);
      const [first, second] = results;
      for (const name of ['gradQ', 'gradK', 'gradV', 'gradBias', 'gradSinks'] as const) {
        comparison.identical(name, first[name], second[name]);
      }
      return {
        ...(comparison.ok ? { ok: true } : { ok: false }),
        expectation: 'behaviour',
        message: comparison.summary(),
      };
    },
  );
}

/** Repeated backward calls: backend.memory() flat and no heap growth after a warm-up. */
function memoryCase(): ConformanceCase {
  const id = 'backward/repeated';
  const sizes = [
    {
      label: 'L 32, D 16, 2 heads',
      work: backwardWork({ batch: 1, queryHeads: 2, queryLength: 32, headDim: 16 }),
    },
    { label: 'tiny (L 4, D 4)', work: backwardWork({ batch: 1, queryHeads: 1, queryLength: 4, headDim: 4 }) },
  ];
  const shapes: AttentionShape[] = [
    { batch: 1, queryHeads: 2, queryLength: 32, headDim: 16 },
    { batch: 1, queryHeads: 1, queryLength: 4, headDim: 4 },
  ];
  // A memory case need not repeat a thousand times, nor be large: a leaked buffer shows in
  // backend.memory() at any size, in 100 calls (and the small shape keeps a software GPU's WebGL1
  // path, 100 forward+backward pairs, well inside the per-case timeout).
  const calls = (context: CaseContext) => Math.min(100, context.options.repeatCalls);
  return customCase(
    id,
    'repeated forward+backward calls: backend.memory() flat, no heap growth',
    (options) => Math.min(100, options.repeatCalls) * sizes[0].work,
    async (context) => {
      const plan = planRepeats({ ...context.options, repeatCalls: calls(context) }, sizes);
      if (plan === null)
        return { ok: false, expectation: 'behaviour', message: 'internal: no plan fits maxWork' };
      const shape = shapes[plan.size];
      const data = new DataSource(hashString(id));
      const s = full(shape);
      const inputs: AttentionInputs = {
        q: data.uniform(s.batch * s.queryHeads * s.queryLength * s.headDim),
        k: data.uniform(s.batch * s.kvHeads * s.keyLength * s.headDim),
        v: data.uniform(s.batch * s.kvHeads * s.keyLength * s.valueDim),
        shape,
      };
      const options: AttentionOptions = { causal: true };
      const gradOutput = gradOutputFor(id, shape);
      const problem = validateAttention(inputs, options);
      if (backwardUnsupportedReason('backend', context.capabilities, problem) !== null) {
        const backend = await context.backend();
        return checkBackward(backend, context.capabilities, context.tolerance, inputs, gradOutput, options);
      }
      const perCall =
        4 *
        (2 * s.queryHeads * s.queryLength * (s.headDim + s.valueDim) +
          2 * s.keyLength * (s.headDim + s.valueDim));
      const outcome = await repeated(
        context,
        plan.calls,
        perCall,
        async (backend: AttentionBackend, index) => {
          if (index % 25 === 0)
            return checkBackward(
              backend,
              context.capabilities,
              context.tolerance,
              inputs,
              gradOutput,
              options,
            );
          const forward = await backend.attention(inputs, { ...options, returnLse: true });
          await backend.attentionBackward(
            { ...inputs, output: forward.output, lse: forward.lse, gradOutput },
            options,
          );
          return null;
        },
      );
      return { ...outcome, reduced: plan.note };
    },
    (options) =>
      planRepeats({ ...options, repeatCalls: Math.min(100, options.repeatCalls) }, sizes)?.note ?? null,
  );
}

/** A fresh backend must reject a malformed backward call with `invalid-argument` before any work. */
function badInputCases(): ConformanceCase[] {
  const shape: AttentionShape = { batch: 1, queryHeads: 2, queryLength: 3, headDim: 4 };
  const base = (): AttentionBackwardInputs => {
    const data = new DataSource(hashString('backward/bad-input'));
    const s = full(shape);
    const inputs: AttentionInputs = {
      q: data.uniform(s.batch * s.queryHeads * s.queryLength * s.headDim),
      k: data.uniform(s.batch * s.kvHeads * s.keyLength * s.headDim),
      v: data.uniform(s.batch * s.kvHeads * s.keyLength * s.valueDim),
      shape,
    };
    const forward = referenceAttentionProblem64({ ...validateAttention(inputs), returnLse: true });
    return {
      ...inputs,
      output: Float32Array.from(forward.output),
      lse: Float32Array.from(forward.lse as Float64Array),
      gradOutput: data.uniform(s.batch * s.queryHeads * s.queryLength * s.valueDim),
    };
  };
  const bad: [string, string, (valid: AttentionBackwardInputs) => AttentionBackwardInputs, string][] = [
    [
      'gradOutput-length',
      'gradOutput one element short',
      (v) => ({ ...v, gradOutput: v.gradOutput.subarray(1) }),
      'gradOutput',
    ],
    [
      'lse-length',
      'lse of Lq*Lk elements instead of B*Hq*Lq',
      (v) => ({ ...v, lse: new Float32Array(9) }),
      'lse',
    ],
    [
      'output-type',
      'output a Float64Array',
      (v) => ({ ...v, output: new Float64Array(v.output) as unknown as Float32Array }),
      'output',
    ],
    [
      'gradOutput-missing',
      'no gradOutput',
      ({ gradOutput: _g, ...rest }) => rest as AttentionBackwardInputs,
      'gradOutput',
    ],
  ];
  return bad.map(([name, title, edit, argument]) =>
    customCase(
      `backward/rejects-${name}`,
      `rejects ${title} (invalid-argument naming ${argument})`,
      0,
      async (context) => {
        const fresh = await context.fresh();
        const outcome: CaseOutcome = await expectRejection(
          () => fresh.attentionBackward(edit(base())),
          'invalid-argument',
          argument,
        );
        return outcome;
      },
    ),
  );
}

/** The `backward/*` group: every option, shape class and edge of the backward pass. */
export function backwardCases(): ConformanceCase[] {
  return [
    ...optionCases(),
    ...shapeCases(),
    ...edgeCases(),
    determinismCase(),
    memoryCase(),
    ...badInputCases(),
  ];
}
