import {
  type AttentionBackwardProblem,
  type AttentionGradients,
  shapeSymbols,
  snapshotAttentionBackwardProblem,
} from '@attnkit/spec';
import { uploadAttentionOptions } from './encode.js';
import { encodeBackward } from './encode-backward.js';
import { guarded } from './errors.js';
import { encodeAndRead, intact, intactOptions, optionList, whenUsable } from './host.js';
import { logitTermsOf } from './kernels/shared.js';
import { backwardPipelines } from './pipelines.js';
import { planBackward } from './planning.js';
import type { DeviceState, Runtime } from './state.js';
import { copyToStaging, uploadConcatenated, uploadFloats } from './transfer.js';

// attentionBackward on host arrays: every input uploaded once (before the call's first await, as
// the forward's, see host.ts), the fused backward kernels in one submission, and only the gradients
// read back.

/** The backward pass on host arrays. */
export function attentionBackward(
  rt: Runtime,
  problem: AttentionBackwardProblem,
): Promise<AttentionGradients> {
  return whenUsable(rt, problem, snapshotAttentionBackwardProblem, (s, p) => backwardOn(rt, s, p));
}

async function backwardOn(
  rt: Runtime,
  s: DeviceState,
  problem: AttentionBackwardProblem,
): Promise<AttentionGradients> {
  const context = 'attentionBackward';
  const plan = planBackward(s, rt.workgroupSize, problem.shape, problem, context);
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shapeSymbols(problem.shape);
  const rows = B * Hq * Lq;
  intact(context, 'q', problem.q, rows * D);
  intact(context, 'k', problem.k, B * Hkv * Lk * D);
  intact(context, 'v', problem.v, B * Hkv * Lk * Dv);
  intact(context, 'output', problem.output, rows * Dv);
  intact(context, 'lse', problem.lse, rows);
  intact(context, 'gradOutput', problem.gradOutput, rows * Dv);
  intactOptions(context, problem, B, Lk, Hq);
  // Before the first await: the caller's arrays are copied to the device here.
  const inputs = await guarded(s, context, () => ({
    qd: uploadConcatenated(s, [problem.q, problem.gradOutput]),
    kv: uploadConcatenated(s, [problem.k, problem.v]),
    output: uploadFloats(s, problem.output),
    // lse, then room for delta and norm, which the kernels write.
    rows: uploadConcatenated(s, [problem.lse], 2 * rows * 4),
    options: uploadAttentionOptions(s, problem, Hq),
  }));
  const held = [inputs.qd, inputs.kv, inputs.output, inputs.rows, ...optionList(inputs.options)];
  const [gradQ, gradK, gradV, ...rest] = await encodeAndRead(
    s,
    context,
    held,
    () => backwardPipelines(s, plan.variant, logitTermsOf(problem)),
    (encoder, pipelines) => {
      const out = encodeBackward(s, encoder, plan, pipelines, inputs, context);
      const reads = [
        copyToStaging(s, encoder, out.gradQ, rows * D * 4),
        copyToStaging(s, encoder, out.gradK, B * Hkv * Lk * D * 4),
        copyToStaging(s, encoder, out.gradV, B * Hkv * Lk * Dv * 4),
      ];
      if (out.gradBias !== null && problem.bias !== null)
        reads.push(copyToStaging(s, encoder, out.gradBias, problem.bias.data.length * 4));
      if (out.gradSinks !== null) reads.push(copyToStaging(s, encoder, out.gradSinks, Hq * 4));
      const optional = [out.gradBias, out.gradSinks].filter((b): b is GPUBuffer => b !== null);
      return { reads, made: [out.gradQ, out.gradK, out.gradV, ...out.temps, ...optional] };
    },
  );
  const gradients: AttentionGradients = { gradQ, gradK, gradV };
  if (problem.bias !== null) gradients.gradBias = rest.shift();
  if (problem.sinks !== null) gradients.gradSinks = rest.shift();
  return gradients;
}
