import { randomArray, randomAttentionInputs, signedPrng } from '@attnkit/conformance';
import { expectClose } from '@attnkit/conformance/vitest';
import {
  type AttentionInputs,
  type AttentionOptions,
  type AttentionShape,
  isAttnkitError,
  referenceAttention64,
} from '@attnkit/spec';
import { describe, expect, it } from 'vitest';
import { CPU_TOLERANCE, type CpuBackendOptions, createCpuBackend } from '../src/index.js';

/** Tile shapes that put tile edges everywhere: single keys, odd sizes, rows left over after quads. */
const TILINGS: CpuBackendOptions[] = [
  {},
  { queryBlock: 1, keyBlock: 1 },
  { queryBlock: 4, keyBlock: 3 },
  { queryBlock: 5, keyBlock: 7 },
  { queryBlock: 9, keyBlock: 16 },
];

async function check(inputs: AttentionInputs, options: AttentionOptions, label: string): Promise<void> {
  const all = { ...options, returnLse: true, returnWeights: true };
  const reference = referenceAttention64(inputs, all);
  for (const tiling of TILINGS) {
    const backend = createCpuBackend(tiling);
    const tag = `${label} ${JSON.stringify(tiling)}`;
    const full = await backend.attention(inputs, all);
    expectClose(full.output, reference.output, CPU_TOLERANCE, `${tag} output`);
    expectClose(full.lse, reference.lse, CPU_TOLERANCE, `${tag} lse`);
    expectClose(full.weights, reference.weights, CPU_TOLERANCE, `${tag} weights`);
    // Without the optional outputs the kernel takes its one-pass path: same output
    const plain = await backend.attention(inputs, options);
    expectClose(plain.output, reference.output, CPU_TOLERANCE, `${tag} output (one pass)`);
    expect(plain.lse).toBeUndefined();
    expect(plain.weights).toBeUndefined();
    await backend.dispose();
  }
}

const base: AttentionShape = { batch: 2, queryHeads: 2, queryLength: 13, headDim: 5 };

describe('cpu attention against the float64 reference', () => {
  it('plain self-attention, odd sizes', async () => {
    await check(randomAttentionInputs(base, 1), {}, 'plain');
    await check(randomAttentionInputs({ batch: 1, queryHeads: 1, queryLength: 1, headDim: 1 }, 2), {}, '1x1');
    await check(randomAttentionInputs({ batch: 1, queryHeads: 3, queryLength: 7, headDim: 3 }, 3), {}, 'D=3');
  });

  it('causal, including cross-attention both ways (bottom-right positions)', async () => {
    await check(randomAttentionInputs(base, 4), { causal: true }, 'causal');
    await check(
      randomAttentionInputs({ ...base, queryLength: 5, keyLength: 19 }, 5),
      { causal: true },
      'Lq<Lk',
    );
    // Lq > Lk: the first rows sit at negative positions and see nothing
    await check(
      randomAttentionInputs({ ...base, queryLength: 11, keyLength: 6 }, 6),
      { causal: true },
      'Lq>Lk',
    );
    await check(randomAttentionInputs({ ...base, queryLength: 9, keyLength: 4 }, 7), {}, 'cross, no mask');
  });

  it('sliding window, causal and two-sided', async () => {
    for (const w of [1, 2, 5, 40]) {
      await check(
        randomAttentionInputs(base, 8 + w),
        { slidingWindow: w, causal: true },
        `window ${w} causal`,
      );
      await check(randomAttentionInputs(base, 9 + w), { slidingWindow: w }, `window ${w}`);
    }
    await check(
      randomAttentionInputs({ ...base, queryLength: 6, keyLength: 17 }, 10),
      { slidingWindow: 3 },
      'window cross',
    );
  });

  it('key mask, with a batch row masked entirely (zeros, lse -inf)', async () => {
    const inputs = randomAttentionInputs(base, 11);
    const keyMask = new Uint8Array(2 * 13);
    for (let j = 0; j < 13; j++) keyMask[j] = j % 3 === 1 ? 0 : 1;
    const result = await createCpuBackend().attention(inputs, { keyMask, returnLse: true });
    expect(Array.from(result.output.subarray(2 * 13 * 5)).every((x) => x === 0)).toBe(true);
    expect(Array.from(result.lse!.subarray(2 * 13)).every((x) => x === Number.NEGATIVE_INFINITY)).toBe(true);
    await check(inputs, { keyMask }, 'keyMask');
    await check(inputs, { keyMask, causal: true, slidingWindow: 4 }, 'keyMask causal window');
  });

  it('bias, full and broadcast along every dimension', async () => {
    const next = signedPrng(12);
    const inputs = randomAttentionInputs(base, 13);
    const shapes: [number, number, number, number][] = [
      [2, 2, 13, 13],
      [1, 1, 1, 13],
      [2, 1, 13, 1],
      [1, 2, 1, 1],
      [1, 1, 13, 13],
    ];
    for (const shape of shapes) {
      const data = randomArray(shape[0] * shape[1] * shape[2] * shape[3], next, 3);
      await check(inputs, { bias: { data, shape }, causal: true }, `bias ${shape}`);
    }
  });

  it('ALiBi, softcap, sinks and scale', async () => {
    const inputs = randomAttentionInputs(base, 14, 3);
    const alibiSlopes = new Float32Array([0.5, 0.125]);
    await check(inputs, { alibiSlopes, causal: true }, 'alibi');
    await check(inputs, { softcap: 1.5 }, 'softcap');
    await check(inputs, { sinks: new Float32Array([0.3, -2]) }, 'sinks');
    await check(
      inputs,
      { sinks: new Float32Array([40, Number.NEGATIVE_INFINITY]) },
      'dominant and -inf sinks',
    );
    await check(inputs, { scale: -0.7 }, 'scale');
    // A sink on a row with no visible key: output zeros, lse equals the sink
    const r = await createCpuBackend().attention(
      randomAttentionInputs({ ...base, queryLength: 4, keyLength: 2 }, 15),
      { causal: true, sinks: new Float32Array([0.25, 1]), returnLse: true },
    );
    expect(r.lse![0]).toBe(0.25);
    expect(Array.from(r.output.subarray(0, 5))).toEqual([0, 0, 0, 0, 0]);
  });

  it('grouped-query and multi-query heads, Dv != D', async () => {
    await check(
      randomAttentionInputs({ ...base, queryHeads: 6, kvHeads: 2 }, 16),
      { causal: true },
      'GQA 6/2',
    );
    await check(randomAttentionInputs({ ...base, queryHeads: 5, kvHeads: 1 }, 17), {}, 'MQA 5/1');
    await check(
      randomAttentionInputs({ ...base, queryHeads: 4, kvHeads: 2, valueDim: 3, keyLength: 21 }, 18),
      { slidingWindow: 6 },
      'GQA Dv=3 cross',
    );
    await check(randomAttentionInputs({ ...base, headDim: 7, valueDim: 11 }, 19), { causal: true }, 'Dv=11');
    // Large groups: few rows per head in a block, so rows of neighbouring heads share a quad
    await check(
      randomAttentionInputs(
        { batch: 1, queryHeads: 8, kvHeads: 1, queryLength: 9, keyLength: 12, headDim: 4 },
        24,
      ),
      { causal: true },
      'MQA 8/1',
    );
    await check(
      randomAttentionInputs({ batch: 2, queryHeads: 32, kvHeads: 2, queryLength: 6, headDim: 3 }, 25),
      { slidingWindow: 2, sinks: randomArray(32, signedPrng(26)) },
      'GQA 32/2',
    );
  });

  it('every option at once', async () => {
    const shape: AttentionShape = {
      batch: 2,
      queryHeads: 4,
      kvHeads: 2,
      queryLength: 10,
      keyLength: 23,
      headDim: 6,
      valueDim: 4,
    };
    const next = signedPrng(20);
    const keyMask = new Uint8Array(2 * 23).map((_, j) => (j % 5 === 3 ? 0 : 1));
    await check(
      randomAttentionInputs(shape, 21, 2),
      {
        causal: true,
        slidingWindow: 9,
        keyMask,
        bias: { data: randomArray(2 * 10 * 23, next), shape: [2, 1, 10, 23] },
        alibiSlopes: new Float32Array([0.5, 0.25, 0.125, 0.0625]),
        softcap: 5,
        sinks: new Float32Array([0, 1, -1, 2]),
        scale: 0.4,
      },
      'everything',
    );
  });

  it('large logits (1e4) and all-equal scores', async () => {
    await check(randomAttentionInputs(base, 22), { scale: 1e4, causal: true }, 'scale 1e4');
    const equal = randomAttentionInputs(base, 23);
    equal.k.fill(0.5);
    await check(equal, { causal: true }, 'all-equal');
  });

  it('seeded random shapes and options', async () => {
    for (let seed = 100; seed < 130; seed++) {
      const next = signedPrng(seed);
      const pick = (n: number) => Math.floor(((next() + 1) / 2) * n);
      const Hkv = 1 + pick(2);
      const shape: AttentionShape = {
        batch: 1 + pick(2),
        queryHeads: Hkv * (1 + pick(3)),
        kvHeads: Hkv,
        queryLength: 1 + pick(20),
        keyLength: 1 + pick(20),
        headDim: 1 + pick(9),
        valueDim: 1 + pick(9),
      };
      const options: AttentionOptions = {};
      if (pick(2)) options.causal = true;
      if (pick(3) === 0) options.slidingWindow = 1 + pick(8);
      if (pick(3) === 0) options.softcap = 0.5 + pick(4);
      if (pick(3) === 0) options.sinks = randomArray(shape.queryHeads, next, 2);
      if (pick(3) === 0) options.alibiSlopes = randomArray(shape.queryHeads, next, 0.5);
      if (pick(3) === 0) {
        options.keyMask = new Uint8Array(shape.batch * shape.keyLength!).map(() => (pick(4) === 0 ? 0 : 1));
      }
      await check(randomAttentionInputs(shape, seed, 2), options, `seed ${seed} ${JSON.stringify(shape)}`);
    }
  });
});

describe('non-finite inputs behave as in the reference', () => {
  it('NaN in one query row poisons that row only', async () => {
    const inputs = randomAttentionInputs(base, 30);
    inputs.q[3 * 5 + 2] = Number.NaN;
    await check(inputs, {}, 'NaN q');
    await check(inputs, { causal: true }, 'NaN q causal');
  });

  it('infinite and NaN values in masked keys never leak', async () => {
    const inputs = randomAttentionInputs({ ...base, batch: 1, queryHeads: 1 }, 31);
    // Keys 10..12 are in the future of rows 0..9 under causal masking
    inputs.v[12 * 5] = Number.POSITIVE_INFINITY;
    inputs.v[11 * 5 + 1] = Number.NaN;
    inputs.k[10 * 5] = Number.NaN;
    const keyMask = new Uint8Array(13).fill(1);
    keyMask[4] = 0;
    inputs.v[4 * 5 + 3] = Number.NEGATIVE_INFINITY;
    await check(inputs, { causal: true, keyMask }, 'masked garbage');
  });

  it('infinite values and bias entries where they are visible', async () => {
    const inputs = randomAttentionInputs({ ...base, batch: 1, queryHeads: 1 }, 32);
    inputs.v[2 * 5] = Number.POSITIVE_INFINITY;
    const bias = new Float32Array(13 * 13);
    bias[5 * 13 + 1] = Number.POSITIVE_INFINITY; // row 5: max +inf, the reference gives NaN everywhere
    for (let j = 0; j < 13; j++) bias[7 * 13 + j] = Number.NEGATIVE_INFINITY; // row 7: nothing visible
    bias[9 * 13 + 4] = Number.NaN;
    await check(inputs, { causal: true, bias: { data: bias, shape: [1, 1, 13, 13] } }, 'visible non-finite');
  });

  it('a value that ends with weight exactly 0 contributes nothing, even when it is infinite', async () => {
    // Key 0 is the running max in the first tile; key 3's logit is 1e4 higher, so key 0's final
    // weight is exp(-1e4) = 0 and its infinite value must not turn the output into Infinity or NaN
    const shape: AttentionShape = { batch: 1, queryHeads: 1, queryLength: 1, keyLength: 4, headDim: 1 };
    const inputs: AttentionInputs = {
      q: new Float32Array([1]),
      k: new Float32Array([0, -1, -1, 1e4]),
      v: new Float32Array([Number.POSITIVE_INFINITY, 1, 2, 3]),
      shape,
    };
    const reference = referenceAttention64(inputs, { scale: 1 });
    expect(reference.output[0]).toBe(3);
    await check(inputs, { scale: 1 }, 'exact zero weight');
  });
});

describe('backend contract', () => {
  it('is deterministic: same inputs, same bits', async () => {
    const backend = createCpuBackend();
    const inputs = randomAttentionInputs(
      { batch: 1, queryHeads: 4, kvHeads: 2, queryLength: 70, headDim: 16 },
      40,
    );
    const a = await backend.attention(inputs, { causal: true, returnLse: true });
    const b = await backend.attention(inputs, { causal: true, returnLse: true });
    expect(Buffer.from(a.output.buffer).equals(Buffer.from(b.output.buffer))).toBe(true);
    expect(Buffer.from(a.lse!.buffer).equals(Buffer.from(b.lse!.buffer))).toBe(true);
  });

  it('holds scratch memory that does not grow with repeated calls and is freed by dispose', async () => {
    const backend = createCpuBackend();
    expect(backend.memory()).toEqual({ hostBytes: 0, deviceBytes: 0 });
    const inputs = randomAttentionInputs({ batch: 1, queryHeads: 2, queryLength: 200, headDim: 32 }, 41);
    await backend.attention(inputs, { causal: true });
    const held = backend.memory().hostBytes;
    expect(held).toBeGreaterThan(0);
    // Far below an Lq x Lk float64 buffer (200 * 200 * 8 = 320 KB)
    expect(held).toBeLessThan(64 * 1024);
    for (let n = 0; n < 5; n++) await backend.attention(inputs, { causal: true });
    expect(backend.memory().hostBytes).toBe(held);
    await backend.dispose();
    expect(backend.memory()).toEqual({ hostBytes: 0, deviceBytes: 0 });
    await expect(backend.attention(inputs)).rejects.toMatchObject({ code: 'disposed' });
  });

  it('concurrent calls give the same results as sequential ones', async () => {
    const backend = createCpuBackend();
    const a = randomAttentionInputs({ batch: 1, queryHeads: 2, queryLength: 30, headDim: 8 }, 42);
    const b = randomAttentionInputs(
      { batch: 2, queryHeads: 3, queryLength: 17, keyLength: 40, headDim: 4 },
      43,
    );
    const [ra, rb] = await Promise.all([backend.attention(a, { causal: true }), backend.attention(b)]);
    expectClose(ra.output, referenceAttention64(a, { causal: true }).output, CPU_TOLERANCE, 'a');
    expectClose(rb.output, referenceAttention64(b).output, CPU_TOLERANCE, 'b');
  });

  it('advertises every feature and its tolerance', () => {
    const { capabilities } = createCpuBackend();
    // the thirteen features of attention (f16Storage among them), the KV cache and the backward pass
    expect(capabilities.features).toHaveLength(15);
    expect(capabilities.features).toContain('f16Storage');
    expect(capabilities.features).toContain('kvCache');
    expect(capabilities.features).toContain('backward');
    expect(capabilities.deterministic).toBe(true);
    expect(capabilities.tolerance).toEqual(CPU_TOLERANCE);
    expect(capabilities.threads).toBe(1);
  });

  it('rejects bad input with AttnkitError naming the argument', async () => {
    const backend = createCpuBackend();
    const inputs = randomAttentionInputs(base, 44);
    const error = await backend.attention({ ...inputs, q: inputs.q.subarray(1) }).catch((e: unknown) => e);
    expect(isAttnkitError(error)).toBe(true);
    expect(error).toMatchObject({ code: 'invalid-argument', argument: 'q.length' });
    await expect(backend.attention(inputs, { slidingWindow: 0 })).rejects.toMatchObject({
      code: 'invalid-argument',
      argument: 'options.slidingWindow',
    });
  });

  it('rejects bad tile options when created', () => {
    for (const bad of [0, 1.5, -3, 5000, Number.NaN]) {
      let error: unknown;
      try {
        createCpuBackend({ keyBlock: bad });
      } catch (e) {
        error = e;
      }
      expect(isAttnkitError(error)).toBe(true);
      expect(error).toMatchObject({ code: 'invalid-argument', argument: 'options.keyBlock' });
      expect((error as Error).message).toContain(String(bad));
    }
    expect(() => createCpuBackend({ queryBlock: 0 })).toThrow(/options\.queryBlock/);
  });
});
