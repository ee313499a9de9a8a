import { referenceAttention64 } from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import {
  buildAttentionModel,
  buildGqaModel,
  checkOutput,
  FORWARD_GATE_SIZE,
  makeInputs,
  makeWorkload,
  naivePeer,
  PEER_TOLERANCE,
  type RunOptions,
  referenceCost,
  referenceFor,
  repeatKvHeads,
  runSubject,
  type Subject,
  transposeHeads,
} from '../src/index.js';
import { ortNodePeer, ortWebNodePeer } from '../src/node.js';
import type { OrtModule, OrtTensor } from '../src/peers/ort.js';

const hooks = { now: () => performance.now(), reference: async (w: never, i: never) => referenceFor(w, i) };

/**
 * The formulations the browser's WebGPU peers use, run here on onnxruntime-node's CPU EP: the same
 * ONNX graphs, so a wrong layout or mask shows against the float64 reference without a GPU.
 */
describe('ONNX formulations of the WebGPU peers, on onnxruntime-node', () => {
  const run = async (bytes: Uint8Array, feeds: Record<string, OrtTensor>, output: string) => {
    const ort = (await import('onnxruntime-node')) as unknown as OrtModule;
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'] });
    try {
      return (await session.run(feeds))[output].data as Float32Array;
    } finally {
      await session.release();
    }
  };

  it('MultiHeadAttention with the causal mask as an attention_bias initializer matches the causal reference', async () => {
    const ort = (await import('onnxruntime-node')) as unknown as OrtModule;
    const w = makeWorkload('prefill', true, 16, 'gqa', 24);
    const inputs = makeInputs(w, 3);
    const { queryHeads: Hq, kvHeads: Hkv, queryLength: L, headDim: D } = inputs.shape;
    const shape = { queryHeads: Hq, kvHeads: Hkv, queryLength: L, keyLength: L, headDim: D, causal: true };
    const model = buildAttentionModel('mha', { ...shape, mhaCausal: 'bias' });
    expect(model.inputs.map((x) => x.name)).toEqual(['q', 'k', 'v']);
    const bhld = (x: Float32Array) => transposeHeads(repeatKvHeads(x, Hkv, Hq), Hq, L, D);
    const dims = [1, L, Hq * D];
    const out = await run(
      model.bytes,
      {
        q: new ort.Tensor('float32', transposeHeads(inputs.q, Hq, L, D), dims),
        k: new ort.Tensor('float32', bhld(inputs.k), dims),
        v: new ort.Tensor('float32', bhld(inputs.v), dims),
      },
      'o',
    );
    const ref = referenceAttention64(inputs, { causal: true }).output;
    expect(checkOutput(transposeHeads(out, L, Hq, D), ref, PEER_TOLERANCE).pass).toBe(true);
    // and the mask really is applied: the non-causal reference is far off
    expect(
      checkOutput(
        transposeHeads(out, L, Hq, D),
        referenceFor({ ...w, causal: false }, inputs),
        PEER_TOLERANCE,
      ).pass,
    ).toBe(false);
  });

  it('GroupQueryAttention prefill (no past, seqlens_k = N - 1) matches the causal GQA reference', async () => {
    const ort = (await import('onnxruntime-node')) as unknown as OrtModule;
    const w = makeWorkload('prefill', true, 16, 'gqa', 24);
    const inputs = makeInputs(w, 5);
    const { queryHeads: Hq, kvHeads: Hkv, queryLength: L, headDim: D } = inputs.shape;
    const model = buildGqaModel({ queryHeads: Hq, kvHeads: Hkv, newTokens: L, pastLength: 0, headDim: D });
    expect(model.inputs.map((x) => x.name)).toEqual(['q', 'k', 'v', 'seqlens_k', 'total_sequence_length']);
    const out = await run(
      model.bytes,
      {
        q: new ort.Tensor('float32', transposeHeads(inputs.q, Hq, L, D), [1, L, Hq * D]),
        k: new ort.Tensor('float32', transposeHeads(inputs.k, Hkv, L, D), [1, L, Hkv * D]),
        v: new ort.Tensor('float32', transposeHeads(inputs.v, Hkv, L, D), [1, L, Hkv * D]),
        seqlens_k: new ort.Tensor('int32', new Int32Array([L - 1]), [1]),
        total_sequence_length: new ort.Tensor('int32', new Int32Array([L]), []),
      },
      model.output,
    );
    const ref = referenceAttention64(inputs, { causal: true }).output;
    expect(checkOutput(transposeHeads(out, L, Hq, D), ref, PEER_TOLERANCE).pass).toBe(true);
  });
});

describe('placement of the prefill peers (Node)', () => {
  for (const [name, make] of [
    ['onnxruntime-node MultiHeadAttention', () => ortNodePeer('mha')],
    ['onnxruntime-web wasm Attention op', () => ortWebNodePeer('attention', 1)],
  ] as const) {
    it(`${name}: every node on CPUExecutionProvider, from the verbose log of a separate process`, async () => {
      const peer = make();
      await peer.init();
      try {
        const w = makeWorkload('prefill', true, 16, 'h1', 32);
        const prepared = await peer.prepare(w, makeInputs(w));
        try {
          expect(prepared.placement).toEqual({
            expected: 'CPUExecutionProvider',
            nodes: { CPUExecutionProvider: 1 },
            fallback: null,
          });
        } finally {
          await prepared.dispose();
        }
      } finally {
        await peer.dispose();
      }
    }, 60_000);
  }
});

describe('the prefill correctness gate', () => {
  const RUN: RunOptions = {
    warmup: 1,
    minReps: 1,
    maxReps: 1,
    minTimeMs: 0,
    seriesBudgetMs: 1e6,
    headlineBudgetMs: 1e6,
    maxRunMs: 1e6,
    // the series' sizes (512, 1024) are too large to check, its gate size is not
    checkMaxCost: referenceCost(makeWorkload('prefill', true, 16, 'h1', FORWARD_GATE_SIZE)),
    seed: 1,
  };
  /**
   * The naive peer, 1% off when `wrong`; above the gate size it returns zeros without computing
   * (no reference checks those sizes: what they carry is the gate's verdict, which is under test).
   */
  const peer = (wrong: boolean): Subject => {
    const base = naivePeer();
    return {
      ...base,
      id: wrong ? 'wrong' : 'right',
      async prepare(w, inputs) {
        // large sizes are not computed (nothing checks them): zeros, fast
        if (w.n > FORWARD_GATE_SIZE)
          return { run: async () => new Float32Array(inputs.q.length), dispose() {} };
        const right = await base.prepare(w, inputs);
        return { run: async () => (await right.run()).map((x) => (wrong ? x * 1.01 : x)), dispose() {} };
      },
    };
  };
  const series = [[512, 1024].map((n) => makeWorkload('prefill', true, 16, 'h1', n))];

  it('a series too large to check carries the gate: a subject wrong at the gate size is WRONG at every size', async () => {
    const report = await runSubject(peer(true), 'node', series, RUN, hooks);
    expect(report.rows.map((r) => [r.status, r.check?.pass, r.check?.checkedAt])).toEqual([
      ['ok', false, FORWARD_GATE_SIZE],
      ['ok', false, FORWARD_GATE_SIZE],
    ]);
  });

  it('a right subject passes the gate, each row saying the check ran at the gate size', async () => {
    const report = await runSubject(peer(false), 'node', series, RUN, hooks);
    expect(report.rows.map((r) => [r.check?.pass, r.check?.checkedAt])).toEqual([
      [true, FORWARD_GATE_SIZE],
      [true, FORWARD_GATE_SIZE],
    ]);
  });

  it('a size too large to check carries the worst check of the smaller sizes of its series', async () => {
    const mixed = [[128, 512].map((n) => makeWorkload('prefill', true, 16, 'h1', n))];
    const prepared: number[] = [];
    const counted = peer(true);
    const prepare = counted.prepare.bind(counted);
    counted.prepare = (w, inputs) => {
      prepared.push(w.n);
      return prepare(w, inputs);
    };
    const report = await runSubject(counted, 'node', mixed, RUN, hooks);
    expect(report.rows.map((r) => [r.check?.pass, r.check?.checkedAt])).toEqual([
      [false, undefined],
      [false, 128],
    ]);
    // no gate: the checked size 128 speaks for the series
    expect(prepared).toEqual([128, 512]);
  });
});
