import { createCpuBackend } from '@attnkit/cpu';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import {
  backendSubject,
  buildGqaDecodeModel,
  DECODE_CACHE_GRID,
  DECODE_CACHE_HEADLINE_SERIES,
  DECODE_CACHE_QUICK_GRID,
  DECODE_GATE_SIZE,
  expandGrid,
  fallbackProviders,
  makeInputs,
  makeWorkload,
  ortGqaPeer,
  parseNodePlacements,
  type RunOptions,
  referenceFor,
  runSubject,
  type Subject,
  sliceTokens,
  workloadShape,
} from '../src/index.js';
import { ortNodeGqaPeer, ortWebGqaNodePeer } from '../src/node.js';
import type { OrtModule } from '../src/peers/ort.js';

/** Short runs: a few steps, no budget stops (the plumbing, not the timing, is under test). */
const RUN: RunOptions = {
  warmup: 1,
  minReps: 3,
  maxReps: 3,
  minTimeMs: 0,
  seriesBudgetMs: 1e6,
  headlineBudgetMs: 1e6,
  maxRunMs: 1e6,
  checkMaxCost: 1e9,
  seed: 1,
  decodeGateSize: DECODE_GATE_SIZE,
};
const hooks = { now: () => performance.now(), reference: async (w: never, i: never) => referenceFor(w, i) };

function maxError(got: Float32Array, ref: Float64Array): number {
  expect(got.length).toBe(ref.length);
  let e = 0;
  for (let i = 0; i < got.length; i++) e = Math.max(e, Math.abs(got[i] - ref[i]));
  return e;
}

describe('decode-cache workloads', () => {
  it('the grid is Lk 1k, 4k, 8k, 16k, 32k x D 64, 128 x GQA 32/8 and MHA 8/8, the bar series first', () => {
    const series = expandGrid(DECODE_CACHE_GRID);
    expect(series).toHaveLength(4);
    expect(series[0][0].series).toBe(DECODE_CACHE_HEADLINE_SERIES);
    expect(DECODE_CACHE_HEADLINE_SERIES).toBe('decode-cache-causal-d128-gqa');
    for (const s of series) expect(s.map((w) => w.n)).toEqual([1024, 4096, 8192, 16384, 32768]);
    expect(new Set(series.map((s) => s[0].heads))).toEqual(new Set(['gqa', 'h8']));
    const quick = expandGrid(DECODE_CACHE_QUICK_GRID).flat();
    expect(Math.max(...quick.map((w) => w.n))).toBeLessThanOrEqual(2048);
  });

  it('a decode-cache workload is one query against Lk keys, batch 1', () => {
    const s = workloadShape(makeWorkload('decode-cache', true, 128, 'gqa', 4096));
    expect(s).toEqual({
      batch: 1,
      queryHeads: 32,
      kvHeads: 8,
      queryLength: 1,
      keyLength: 4096,
      headDim: 128,
      valueDim: 128,
    });
    expect(workloadShape(makeWorkload('decode-cache', true, 64, 'h8', 1024)).kvHeads).toBe(8);
  });

  it('sliceTokens takes the same token range of every head', () => {
    // 2 heads, 3 tokens, D 2: values = head*100 + token*10 + d
    const x = Float32Array.from([0, 1, 10, 11, 20, 21, 100, 101, 110, 111, 120, 121]);
    expect(Array.from(sliceTokens(x, 2, 3, 2, 2, 3))).toEqual([20, 21, 120, 121]);
    expect(Array.from(sliceTokens(x, 2, 3, 2, 0, 2))).toEqual([0, 1, 10, 11, 100, 101, 110, 111]);
  });
});

describe('GroupQueryAttention model builder', () => {
  it('encodes one com.microsoft GroupQueryAttention node with past/present K/V and int32 lengths', () => {
    const m = buildGqaDecodeModel({ queryHeads: 4, kvHeads: 2, pastLength: 7, headDim: 8 });
    expect(m.inputs.map((x) => x.name)).toEqual([
      'q',
      'k',
      'v',
      'past_key',
      'past_value',
      'seqlens_k',
      'total_sequence_length',
    ]);
    expect(m.inputs.find((x) => x.name === 'past_key')?.dims).toEqual([1, 2, 7, 8]);
    // decode the bytes with a generic reader of the ONNX fields: the graph has the node and domain
    const root = protobuf.parse(
      `syntax = "proto3"; message A { string name = 1; int64 i = 3; }
       message N { repeated string input = 1; repeated string output = 2; string op_type = 4; repeated A attribute = 5; string domain = 7; }
       message G { repeated N node = 1; } message O { string domain = 1; int64 version = 2; }
       message M { G graph = 7; repeated O opset_import = 8; }`,
      { keepCase: true },
    ).root;
    const decoded = root
      .lookupType('M')
      .toObject(root.lookupType('M').decode(m.bytes), { longs: Number }) as {
      graph: {
        node: {
          op_type: string;
          domain: string;
          output: string[];
          attribute: { name: string; i: number }[];
        }[];
      };
      opset_import: { domain: string }[];
    };
    const node = decoded.graph.node[0];
    expect(node.op_type).toBe('GroupQueryAttention');
    expect(node.domain).toBe('com.microsoft');
    expect(node.output).toEqual(['y', 'present_key', 'present_value']);
    expect(Object.fromEntries(node.attribute.map((a) => [a.name, a.i]))).toEqual({
      num_heads: 4,
      kv_num_heads: 2,
    });
    expect(decoded.opset_import.map((o) => o.domain)).toContain('com.microsoft');
  });

  for (const [name, make] of [
    ['onnxruntime-node', () => ortNodeGqaPeer()],
    ['onnxruntime-web 1 thread', () => ortWebGqaNodePeer(1)],
  ] as const) {
    it(`${name} runs the model and matches the float64 reference (GQA and MHA), all nodes on its EP`, async () => {
      const peer = make();
      await peer.init();
      try {
        for (const heads of ['gqa', 'h8'] as const) {
          const w = makeWorkload('decode-cache', true, 32, heads, 65);
          const inputs = makeInputs(w);
          const prepared = await (peer.prepareDecode as NonNullable<Subject['prepareDecode']>)(w, inputs);
          try {
            expect(maxError(await prepared.step(), referenceFor(w, inputs))).toBeLessThan(2e-5);
            expect(prepared.placement?.nodes).toEqual({ CPUExecutionProvider: 1 });
            expect(prepared.placement?.fallback).toBeNull();
          } finally {
            await prepared.dispose();
          }
        }
      } finally {
        await peer.dispose();
      }
    }, 60_000);
  }
});

describe('placement', () => {
  it("reads onnxruntime's verbose 'Node placements' lines", () => {
    const log = [
      '2026-12-02 [V:onnxruntime:, session_state.cc:1377 VerifyEachNodeIsAssignedToAnEp] Node placements',
      '2026-12-02 [V:onnxruntime:, session_state.cc:1380 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [JsExecutionProvider]. Number of nodes: 2',
      '2026-12-02 [V:onnxruntime:, session_state.cc:1380 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [CPUExecutionProvider]. Number of nodes: 1',
    ].join('\n');
    const p = parseNodePlacements(log);
    expect(p).toEqual({ JsExecutionProvider: 2, CPUExecutionProvider: 1 });
    expect(fallbackProviders(p, 'JsExecutionProvider')).toEqual(['CPUExecutionProvider']);
    expect(
      fallbackProviders(
        parseNodePlacements('All nodes placed on [CPUExecutionProvider]. Number of nodes: 1'),
        'CPUExecutionProvider',
      ),
    ).toEqual([]);
    expect(parseNodePlacements('no such lines')).toBeNull();
  });

  it('a peer whose nodes are not on its EP gets a fallback row, and the probe runs once per head layout', async () => {
    let probes = 0;
    const ort = (await import('onnxruntime-node')) as unknown as OrtModule;
    const peer = ortGqaPeer({
      family: 'ort-fake',
      label: 'onnxruntime-node labelled as another EP',
      load: async () => ort,
      sessionOptions: { executionProviders: ['cpu'] },
      threads: 1,
      engine: 'test',
      expectedProvider: 'JsExecutionProvider',
      placement: async (model) => {
        probes++;
        expect(model.length).toBeGreaterThan(0);
        return { CPUExecutionProvider: 1 };
      },
    });
    const series = [[33, 65].map((n) => makeWorkload('decode-cache', true, 16, 'gqa', n))];
    const report = await runSubject(peer, 'node', series, RUN, hooks);
    expect(report.rows.map((r) => r.status)).toEqual(['ok', 'ok']);
    for (const r of report.rows) {
      expect(r.placement?.fallback).toBe('CPUExecutionProvider');
      expect(r.check?.pass).toBe(true);
    }
    expect(probes).toBe(1);
  }, 60_000);
});

describe('attnkit subjects in decode-cache', () => {
  it('the cpu cache and the stateless call match the reference at every size, steps rewound to the same Lk', async () => {
    for (const path of ['cache', 'stateless'] as const) {
      const subject = backendSubject(`cpu-${path}`, 'cpu', () => createCpuBackend(), path);
      const series = [[64, 200].map((n) => makeWorkload('decode-cache', true, 32, 'gqa', n))];
      const report = await runSubject(subject, 'node', series, RUN, hooks);
      expect(report.rows.map((r) => r.status)).toEqual(['ok', 'ok']);
      for (const r of report.rows) {
        expect(r.check?.pass).toBe(true);
        expect(r.timing?.reps).toBe(3);
      }
    }
  });

  it('a step appends one token: after rewind the cache holds Lk - 1 again and the next step gives the same output', async () => {
    const subject = backendSubject('cpu', 'cpu', () => createCpuBackend());
    await subject.init();
    const w = makeWorkload('decode-cache', true, 16, 'h8', 50);
    const inputs = makeInputs(w);
    const prepared = await (subject.prepareDecode as NonNullable<Subject['prepareDecode']>)(w, inputs);
    const ref = referenceFor(w, inputs);
    const first = await prepared.step();
    await prepared.rewind?.();
    const second = await prepared.step();
    expect(maxError(first, ref)).toBeLessThan(1e-5);
    expect(Array.from(second)).toEqual(Array.from(first));
    // without the rewind, the third step attends over Lk + 1 keys (the token twice): a different output
    const third = await prepared.step();
    expect(maxError(third, ref)).toBeGreaterThan(1e-4);
    await prepared.dispose();
    await subject.dispose();
  });

  it("a backend without 'kvCache' is not applicable; its stateless baseline still runs", async () => {
    const noCache = () => {
      const b = createCpuBackend();
      return new Proxy(b, {
        get(target, key, receiver) {
          if (key === 'capabilities') {
            const caps = target.capabilities;
            return { ...caps, features: caps.features.filter((f) => f !== 'kvCache') };
          }
          const value = Reflect.get(target, key, receiver);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
    };
    const w = [[makeWorkload('decode-cache', true, 16, 'h8', 32)]];
    const cache = await runSubject(backendSubject('x', 'x', noCache), 'node', w, RUN, hooks);
    expect(cache.rows[0].status).toBe('not-applicable');
    expect(cache.rows[0].reason).toMatch(/kvCache/);
    const stateless = await runSubject(
      backendSubject('x-stateless', 'x', noCache, 'stateless'),
      'node',
      w,
      RUN,
      hooks,
    );
    expect(stateless.rows[0].status).toBe('ok');
  });
});

describe('the decode-cache correctness gate', () => {
  function wrongSubject(scale: number, throwAt?: number): Subject {
    const base = backendSubject('wrong', 'wrong', () => createCpuBackend());
    return {
      ...base,
      id: 'wrong',
      get tolerance() {
        return base.tolerance;
      },
      init: () => base.init(),
      async prepareDecode(w, inputs) {
        if (throwAt === w.n) throw new Error('boom');
        const inner = await (base.prepareDecode as NonNullable<Subject['prepareDecode']>)(w, inputs);
        // right at the timed sizes (own check passes), off by `scale` at the gate's small cache
        const off = w.n === DECODE_GATE_SIZE ? scale : 1;
        return { ...inner, step: async () => (await inner.step()).map((x) => x * off) };
      },
    };
  }

  it('marks every row of the series WRONG when the gate step is off, though each size checks fine', async () => {
    // checkMaxCost 0: the sizes' own checks do not run, so only the gate can catch it
    const series = [[64, 256].map((n) => makeWorkload('decode-cache', true, 16, 'gqa', n))];
    const report = await runSubject(wrongSubject(1.01), 'node', series, { ...RUN, checkMaxCost: 0 }, hooks);
    expect(report.rows.map((r) => r.status)).toEqual(['ok', 'ok']);
    for (const r of report.rows) {
      expect(r.check?.pass).toBe(false);
      expect(r.check?.checkedAt).toBe(DECODE_GATE_SIZE);
    }
    const right = await runSubject(wrongSubject(1), 'node', series, { ...RUN, checkMaxCost: 0 }, hooks);
    for (const r of right.rows) expect(r.check?.pass).toBe(true);
  });

  it('a gate that throws fails the series (never a silent pass)', async () => {
    const series = [[64].map((n) => makeWorkload('decode-cache', true, 16, 'h8', n))];
    const report = await runSubject(wrongSubject(1, DECODE_GATE_SIZE), 'node', series, RUN, hooks);
    expect(report.rows[0].check?.pass).toBe(false);
    expect(report.rows[0].check?.worstTensor).toMatch(/gate threw: boom/);
  });
});
