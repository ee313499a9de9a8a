import {
  type AttentionBackend,
  type AttentionInputs,
  type AttentionOptions,
  type AttentionShape,
  type DeviceBackend,
  type DeviceTensor,
  referenceMatmul64,
  roundArrayToF16,
  validateAttention,
} from '@attnkit/spec';
import { compareAttention, expectRejection, outcomeOf, unsupportedReason } from '../check.js';
import { Comparison, describe } from '../compare.js';
import { naiveMatmulInputs32 } from '../naive.js';
import { DataSource, hashString } from '../random.js';
import type { CaseContext, CaseOutcome, ConformanceCase } from '../types.js';
import { at, attentionWork, customCase, full, uniformInputs } from './helpers.js';

// Device-resident calls (spec README, "Device tensors"): a backend with memory of its own adds
// `upload`, `read`, `attentionBuffers`, `matmulBuffers` and `release` through `openDeviceGate`.
// Each case uploads host data, runs on the device, reads back and compares with the float64
// reference, as the host cases do. A backend without device-resident calls must have none of the
// five methods (a partial set is a broken contract): each case then checks exactly that.

const DEVICE_METHODS = ['upload', 'read', 'attentionBuffers', 'matmulBuffers', 'release'] as const;

type DeviceAttentionBackend = AttentionBackend & DeviceBackend<DeviceTensor>;

/**
 * The backend as a device backend, or the outcome of a case on a backend without device calls:
 * passed when none of the five methods exists, failed when only some do.
 */
function deviceOf(backend: AttentionBackend): DeviceAttentionBackend | CaseOutcome {
  const record = backend as unknown as Record<string, unknown>;
  const present = DEVICE_METHODS.filter((name) => typeof record[name] === 'function');
  if (present.length === DEVICE_METHODS.length) return backend as DeviceAttentionBackend;
  if (present.length === 0)
    return {
      ok: true,
      expectation: 'behaviour',
      message: `no device-resident calls: none of ${DEVICE_METHODS.join(', ')} exists, as the contract allows`,
    };
  const missing = DEVICE_METHODS.filter((name) => !present.includes(name));
  return {
    ok: false,
    expectation: 'behaviour',
    message: `device-resident calls are all or none: has ${present.join(', ')} but not ${missing.join(', ')}`,
  };
}

/** A case whose body runs on a device backend (see {@link deviceOf}). */
function deviceCase(
  id: string,
  title: string,
  work: number,
  run: (backend: DeviceAttentionBackend, context: CaseContext, data: DataSource) => Promise<CaseOutcome>,
): ConformanceCase {
  return customCase(id, title, work, async (context) => {
    const device = deviceOf(await context.backend());
    if (!('attentionBuffers' in device)) return device;
    return run(device, context, new DataSource(hashString(id)));
  });
}

/** `[B, H, L, D]` to `[B, L, H, D]` (`toBhld: false`) or back. */
export function transpose(
  t: Float32Array,
  B: number,
  H: number,
  L: number,
  D: number,
  toBhld: boolean,
): Float32Array {
  const out = new Float32Array(t.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let l = 0; l < L; l++)
        for (let d = 0; d < D; d++) {
          const bhld = at(H, L, D, b, h, l, d);
          const blhd = ((b * L + l) * H + h) * D + d;
          if (toBhld) out[bhld] = t[blhd];
          else out[blhd] = t[bhld];
        }
  return out;
}

/** Runs `body` with the tensors it makes, releasing every one afterwards whatever happens. */
async function holding<T>(
  backend: DeviceAttentionBackend,
  body: (keep: (tensor: DeviceTensor) => DeviceTensor) => Promise<T>,
): Promise<T> {
  const made: DeviceTensor[] = [];
  try {
    return await body((tensor) => {
      made.push(tensor);
      return tensor;
    });
  } finally {
    for (const tensor of made) backend.release(tensor);
  }
}

/**
 * Uploads q, k and v (transposed to `[B, L, H, D]` for `blhd`), runs `attentionBuffers`, reads every
 * result back in the spec's `[B, H, L, D]` and compares it with the reference. Where the
 * capabilities cannot run the problem, the call must reject `unsupported`.
 */
async function checkDeviceAttention(
  backend: DeviceAttentionBackend,
  context: CaseContext,
  inputs: AttentionInputs,
  options: AttentionOptions,
  layout: 'bhld' | 'blhd',
  dtype: 'float32' | 'float16' = 'float32',
): Promise<CaseOutcome> {
  const problem = validateAttention(inputs, options);
  const { batch: B, queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, keyLength: Lk } = problem.shape;
  const { headDim: D, valueDim: Dv } = problem.shape;
  const laid = (t: Float32Array, H: number, L: number, d: number) =>
    layout === 'bhld' ? t.slice() : transpose(t, B, H, L, d, false);
  return holding(backend, async (keep) => {
    const upload = async (t: Float32Array) =>
      keep(await backend.upload(t, dtype === 'float16' ? { dtype } : undefined));
    const hostQ = laid(inputs.q, Hq, Lq, D);
    const q = await upload(hostQ);
    // The upload is a copy: the array may change as soon as it returns.
    hostQ.fill(Number.NaN);
    const k = await upload(laid(inputs.k, Hkv, Lk, D));
    const v = await upload(laid(inputs.v, Hkv, Lk, Dv));
    const call = () => backend.attentionBuffers({ q, k, v, shape: inputs.shape, layout }, options);
    const reason = unsupportedReason(backend.name, context.capabilities, problem);
    if (reason !== null) {
      const outcome = await expectRejection(call, 'unsupported');
      return {
        ...outcome,
        message: outcome.ok ? `rejected as expected: ${outcome.message}` : outcome.message,
      };
    }
    let out: Awaited<ReturnType<typeof call>>;
    try {
      out = await call();
    } catch (error) {
      return {
        ok: false,
        expectation: 'match-reference',
        message: `attentionBuffers rejected: ${describe(error)}`,
      };
    }
    for (const tensor of [out.output, out.lse, out.weights]) if (tensor !== undefined) keep(tensor);
    const comparison = new Comparison(context.tolerance);
    const expectElements = (name: string, tensor: DeviceTensor | undefined, elements: number) => {
      if (tensor === undefined) comparison.fail(`${name}: missing from the result`);
      else if (tensor.elements !== elements)
        comparison.fail(`${name}.elements is ${tensor.elements}, expected ${elements}`);
    };
    expectElements('output', out.output, B * Hq * Lq * Dv);
    if (problem.returnLse) expectElements('lse', out.lse, B * Hq * Lq);
    if (problem.returnWeights) expectElements('weights', out.weights, B * Hq * Lq * Lk);
    if (!comparison.ok) return outcomeOf(comparison);
    const output = await backend.read(out.output);
    compareAttention(
      comparison,
      {
        output: layout === 'bhld' ? output : transpose(output, B, Hq, Lq, Dv, true),
        ...(out.lse !== undefined && { lse: await backend.read(out.lse) }),
        ...(out.weights !== undefined && { weights: await backend.read(out.weights) }),
      },
      problem,
    );
    return outcomeOf(comparison);
  });
}

/** Every `device/*` case. */
export function deviceCases(): ConformanceCase[] {
  const gqa: AttentionShape = { batch: 2, queryHeads: 4, kvHeads: 2, queryLength: 7, headDim: 8 };
  const cross: AttentionShape = {
    batch: 2,
    queryHeads: 2,
    kvHeads: 1,
    queryLength: 5,
    keyLength: 9,
    headDim: 8,
    valueDim: 4,
  };
  const withOutputs: AttentionOptions = { causal: true, returnLse: true, returnWeights: true };
  return [
    deviceCase(
      'device/attention',
      'upload, attentionBuffers (GQA, causal, lse and weights), read: against the reference; the upload is a copy',
      attentionWork(gqa),
      (backend, context, data) =>
        checkDeviceAttention(backend, context, uniformInputs(data, gqa), withOutputs, 'bhld'),
    ),
    deviceCase(
      'device/layout-blhd',
      "layout 'blhd' ([B, L, H, D] in and out), cross-attention with Dv != D",
      attentionWork(cross),
      (backend, context, data) =>
        checkDeviceAttention(backend, context, uniformInputs(data, cross), { causal: true }, 'blhd'),
    ),
    deviceCase(
      'device/matmul-chain',
      'matmulBuffers on the output of attentionBuffers, read once: against the float64 matmul of that output',
      attentionWork(gqa) + 7 * 2 * 4 * 8 * 3,
      async (backend, context, data) => {
        const inputs = uniformInputs(data, gqa);
        const w = data.uniform(8 * 3);
        const problem = validateAttention(inputs, {});
        if (unsupportedReason(backend.name, context.capabilities, problem) !== null)
          return checkDeviceAttention(backend, context, inputs, {}, 'bhld');
        return holding(backend, async (keep) => {
          const [q, k, v, b] = await Promise.all(
            [inputs.q, inputs.k, inputs.v, w].map(async (t) => keep(await backend.upload(t))),
          );
          const attended = keep((await backend.attentionBuffers({ q, k, v, shape: gqa })).output);
          const shape = { m: 2 * 4 * 7, k: 8, n: 3 };
          const projected = keep(await backend.matmulBuffers({ a: attended, b, shape }));
          const a = await backend.read(attended);
          const comparison = new Comparison(context.tolerance);
          compareAttention(comparison, { output: a }, problem, 'attention ');
          comparison.tensor(
            'projected',
            await backend.read(projected),
            referenceMatmul64(a, w, shape.m, shape.k, shape.n, null),
            () => naiveMatmulInputs32({ a, b: w, shape }),
            shape.n,
          );
          return outcomeOf(comparison);
        });
      },
    ),
    deviceCase(
      'device/f16-tensors',
      "float16 tensors: upload { dtype: 'float16' } rounds to nearest even, read widens, attentionBuffers with precision 'f16-storage'",
      2 * attentionWork(gqa),
      async (backend, context, data) => {
        const inputs = uniformInputs(data, gqa);
        if (!context.capabilities.features.includes('deviceF16Storage')) {
          const outcome = await expectRejection(
            () => backend.upload(inputs.q, { dtype: 'float16' }),
            'unsupported',
            'options.dtype',
          );
          return {
            ...outcome,
            message: outcome.ok
              ? `no deviceF16Storage: rejected as expected: ${outcome.message}`
              : outcome.message,
          };
        }
        const stored = await holding(backend, async (keep) =>
          backend.read(keep(await backend.upload(inputs.q, { dtype: 'float16' }))),
        );
        const comparison = new Comparison(context.tolerance);
        comparison.identical('read of a float16 upload', stored, roundArrayToF16(inputs.q));
        if (!comparison.ok) return outcomeOf(comparison, 'behaviour');
        const options: AttentionOptions = { ...withOutputs, precision: 'f16-storage' };
        for (const layout of ['bhld', 'blhd'] as const) {
          const outcome = await checkDeviceAttention(backend, context, inputs, options, layout, 'float16');
          if (!outcome.ok) return { ...outcome, message: `${layout}: ${outcome.message}` };
        }
        return { ok: true, expectation: 'match-reference', message: comparison.summary() };
      },
    ),
    deviceCase(
      'device/invalid',
      'bad device calls reject invalid-argument naming the argument, and a good call after them still matches',
      attentionWork(gqa),
      async (backend, context, data) => {
        const inputs = uniformInputs(data, gqa);
        const s = full(gqa);
        const bad = await holding(backend, async (keep) => {
          const q = keep(await backend.upload(inputs.q));
          const k = keep(await backend.upload(inputs.k));
          const short = keep(await backend.upload(inputs.v.subarray(1)));
          const checks: [string, () => Promise<unknown>, string][] = [
            [
              'a v one value short',
              () => backend.attentionBuffers({ q, k, v: short, shape: gqa }),
              'v.elements',
            ],
            [
              "float32 tensors with precision 'f16-storage'",
              () => backend.attentionBuffers({ q, k, v: k, shape: gqa }, { precision: 'f16-storage' }),
              'q.dtype',
            ],
            [
              'a layout that does not exist',
              () => backend.attentionBuffers({ q, k, v: k, shape: gqa, layout: 'lbhd' as 'bhld' }),
              'layout',
            ],
            [
              'a matmul whose b does not match shape.k * shape.n',
              () =>
                backend.matmulBuffers({
                  a: q,
                  b: short,
                  shape: { m: s.batch * s.queryHeads * s.queryLength, k: 8, n: 3 },
                }),
              'b.elements',
            ],
            ['an upload of a plain array', () => backend.upload([1, 2] as unknown as Float32Array), 'data'],
          ];
          for (const [what, call, argument] of checks) {
            const outcome = await expectRejection(call, 'invalid-argument', argument);
            if (!outcome.ok) return { ...outcome, message: `${what}: ${outcome.message}` };
          }
          return null;
        });
        if (bad !== null) return bad;
        return checkDeviceAttention(backend, context, inputs, withOutputs, 'bhld');
      },
    ),
  ];
}
