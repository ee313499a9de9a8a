import { checkBackward, randomArray, randomAttentionInputs, signedPrng } from '@attnkit/conformance';
import { expectClose } from '@attnkit/conformance/vitest';
import {
  type AttentionBackend,
  type AttentionGradients,
  type AttentionInputs,
  type AttentionOptions,
  type AttentionShape,
  createBackend,
  referenceAttentionBackward64,
} from '@attnkit/spec';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebglImplementation } from '../src/backend.js';
import { createWebglBackend, openGl } from '../src/index.js';

const backend = createWebglBackend();
/** The portable kernels (what WebGL1 and headless-gl run) on the same WebGL2 context. */
const portable = createWebglBackend({ vectorized: false });

beforeAll(async () => {
  await backend.init();
  await portable.init();
  console.log(`engine: ${backend.capabilities.engine}`);
});
afterAll(async () => {
  await backend.dispose();
  await portable.dispose();
});

const NAMES = ['gradQ', 'gradK', 'gradV', 'gradBias', 'gradSinks'] as const;

/** The backend's forward (with lse), then its backward, against the float64 reference gradient. */
async function checkOn(
  shape: AttentionShape,
  options: AttentionOptions = {},
  seed = 1,
  on: AttentionBackend = backend,
  edit?: (inputs: AttentionInputs) => void,
): Promise<AttentionGradients> {
  const inputs = randomAttentionInputs(shape, seed);
  edit?.(inputs);
  const next = signedPrng(seed + 1000);
  const Dv = shape.valueDim ?? shape.headDim;
  const gradOutput = randomArray(shape.batch * shape.queryHeads * shape.queryLength * Dv, next);
  const forward = await on.attention(inputs, { ...options, returnLse: true });
  const backwardInputs = { ...inputs, output: forward.output, lse: forward.lse, gradOutput };
  const got = await on.attentionBackward(backwardInputs, options);
  const want = referenceAttentionBackward64(backwardInputs, options);
  const tol = on.capabilities.tolerance;
  // The contract adds fudge * (naive float32 error); these cases pass on atol + rtol alone.
  let ratio = 0;
  for (const name of NAMES) {
    if (want[name] === undefined) {
      expect(got[name], `${name} absent`).toBeUndefined();
      continue;
    }
    expectClose(got[name], want[name], tol, name);
    const a = got[name] as Float32Array;
    const e = want[name] as Float64Array;
    for (let n = 0; n < e.length; n++) {
      expect(Number.isNaN(a[n]), `${name}[${n}] is NaN`).toBe(false);
      ratio = Math.max(ratio, Math.abs(a[n] - e[n]) / (tol.atol + tol.rtol * Math.abs(e[n])));
    }
  }
  console.log(`worst |err| / (atol + rtol |ref|) = ${ratio.toFixed(4)}`);
  return got;
}

const BASE: AttentionShape = { batch: 2, queryHeads: 2, queryLength: 6, headDim: 4 };
const bias4 = (data: Float32Array, shape: [number, number, number, number]) => ({ data, shape });

for (const [label, on] of [
  ['vectorized (WebGL2 texelFetch)', backend],
  ['portable', portable],
] as const) {
  describe(`webgl backward against referenceAttentionBackward64: ${label}`, () => {
    const check = (
      shape: AttentionShape,
      options: AttentionOptions = {},
      seed = 1,
      edit?: (inputs: AttentionInputs) => void,
    ) => checkOn(shape, options, seed, on, edit);
    test('declares backward and runs on a GL kernel class', () => {
      expect(backend.capabilities.features).toContain('backward');
      expect(backend.capabilities.engine).toMatch(/WebGL2Kernel|WebGLKernel|HeadlessGLKernel/);
    });
    test('plain', async () => {
      await check(BASE);
    });
    test('explicit and negative scale', async () => {
      await check(BASE, { scale: 0.37 });
      await check(BASE, { scale: -0.8 }, 2);
    });
    test('causal, sliding window, both', async () => {
      await check(BASE, { causal: true });
      await check(BASE, { slidingWindow: 3 }, 3);
      await check(BASE, { slidingWindow: 2, causal: true }, 4);
    });
    test('key mask', async () => {
      const next = signedPrng(5);
      await check(BASE, { keyMask: new Uint8Array(12).map(() => (next() > -0.5 ? 1 : 0)) }, 5);
    });
    test('bias in every broadcast shape', async () => {
      const next = signedPrng(6);
      const { batch: B, queryHeads: H, queryLength: L } = BASE;
      const shapes: [number, number, number, number][] = [
        [B, H, L, L],
        [1, H, L, L],
        [B, 1, 1, L],
        [1, 1, L, 1],
        [B, H, L, 1],
        [1, 1, 1, 1],
      ];
      for (const shape of shapes) {
        const size = shape.reduce((a, b) => a * b, 1);
        const got = await check(BASE, { bias: bias4(randomArray(size, next), shape) }, 6);
        expect(got.gradBias?.length).toBe(size);
      }
    });
    test('bias without a key dimension, with sinks (sum dS = P_sink * D per row)', async () => {
      const next = signedPrng(7);
      await check(
        BASE,
        { bias: bias4(randomArray(1, next), [1, 1, 1, 1]), sinks: new Float32Array([1, -0.5]) },
        7,
      );
      await check(
        BASE,
        {
          bias: bias4(randomArray(12, next), [2, 1, 6, 1]),
          sinks: new Float32Array([0.3, 0.9]),
          causal: true,
        },
        8,
      );
    });
    test('ALiBi, alone and causal', async () => {
      await check(BASE, { alibiSlopes: new Float32Array([0.5, 0.125]) }, 9);
      await check(BASE, { alibiSlopes: new Float32Array([0.25, 1]), causal: true }, 10);
    });
    test('softcap, tight and loose', async () => {
      await check(BASE, { softcap: 0.5, scale: 4 }, 11);
      await check(BASE, { softcap: 30 }, 12);
    });
    test('sinks, small and dominant', async () => {
      const got = await check(BASE, { sinks: new Float32Array([0.5, -1]) }, 13);
      expect(got.gradSinks?.length).toBe(2);
      await check(BASE, { sinks: new Float32Array([3, 3]) }, 14);
    });
    test('GQA and MQA (gradK, gradV summed over the group)', async () => {
      await check({ batch: 2, queryHeads: 4, kvHeads: 2, queryLength: 5, headDim: 4 }, {}, 15);
      await check({ batch: 1, queryHeads: 6, kvHeads: 1, queryLength: 5, headDim: 4 }, { causal: true }, 16);
    });
    test('cross-attention both ways, causal decode', async () => {
      await check({ batch: 2, queryHeads: 2, queryLength: 3, keyLength: 11, headDim: 4 }, {}, 17);
      await check(
        { batch: 1, queryHeads: 2, queryLength: 1, keyLength: 40, headDim: 8 },
        { causal: true },
        18,
      );
      await check(
        { batch: 1, queryHeads: 2, queryLength: 9, keyLength: 4, headDim: 4 },
        { slidingWindow: 2 },
        19,
      );
    });
    test('Dv != D, odd sizes', async () => {
      await check({ batch: 1, queryHeads: 2, queryLength: 5, headDim: 3, valueDim: 7 }, {}, 20);
      await check(
        { batch: 1, queryHeads: 3, queryLength: 7, keyLength: 13, headDim: 5, valueDim: 3 },
        {},
        21,
      );
    });
    test('every option at once, GQA, cross, Dv != D', async () => {
      const next = signedPrng(22);
      const shape = {
        batch: 2,
        queryHeads: 4,
        kvHeads: 2,
        queryLength: 5,
        keyLength: 9,
        headDim: 6,
        valueDim: 3,
      };
      await check(
        shape,
        {
          scale: 0.6,
          causal: true,
          slidingWindow: 6,
          keyMask: new Uint8Array(18).map(() => (next() > -0.6 ? 1 : 0)),
          bias: bias4(randomArray(4 * 5 * 9, next), [1, 4, 5, 9]),
          alibiSlopes: new Float32Array([0.05, 0.1, 0.2, 0.4]),
          softcap: 2,
          sinks: new Float32Array([0.2, -0.3, 0.8, 0]),
        },
        22,
      );
    });
    test('logits in the hundreds and a bias near 1e4: within the declared contract (fudge included)', async () => {
      // P is recomputed from the row's own max and denominator, not from the float32 lse: with
      // exp(logit - lse) these fail (bias 1e4: 1.4x the bound at scale 4, 9.8x at scale 30).
      const shape = { batch: 1, queryHeads: 2, queryLength: 16, headDim: 16 };
      for (const scale of [4, 30, 120]) {
        for (const bias of [null, { data: new Float32Array([1e4]), shape: [1, 1, 1, 1] as const }]) {
          const options = { scale, ...(bias && { bias }) };
          const outcome = await checkBackward(
            on,
            on.capabilities,
            on.capabilities.tolerance,
            randomAttentionInputs(shape, 36),
            randomArray(2 * 16 * 16, signedPrng(37)),
            options,
          );
          console.log(`scale ${scale}, bias ${bias ? '1e4' : 'none'}: ratio ${outcome.errorRatio}`);
          expect(outcome.ok, outcome.message ?? '').toBe(true);
        }
      }
    });
    test('longer rows: L 130 causal, GQA with a window, D 128', async () => {
      await check({ batch: 1, queryHeads: 2, queryLength: 130, headDim: 32 }, { causal: true }, 23);
      await check(
        { batch: 1, queryHeads: 4, kvHeads: 2, queryLength: 97, headDim: 16 },
        { causal: true, slidingWindow: 20 },
        24,
      );
      await check({ batch: 1, queryHeads: 1, queryLength: 33, headDim: 128 }, {}, 25);
    });
  });
}

const check = checkOn;

describe('masked rows, determinism, blocks and resources', () => {
  test('fully masked rows give zero gradients, never NaN', async () => {
    const keyMask = new Uint8Array(12).fill(1);
    keyMask.fill(0, 0, 6); // batch 0 sees nothing
    const got = await check(BASE, { keyMask, bias: bias4(new Float32Array(1).fill(0.5), [1, 1, 1, 1]) }, 26);
    // batch 0's rows of gradQ and its keys' gradK, gradV are exactly zero
    expect(got.gradQ.subarray(0, 2 * 6 * 4).every((x) => x === 0)).toBe(true);
    expect(got.gradK.subarray(0, 2 * 6 * 4).every((x) => x === 0)).toBe(true);
    expect(got.gradV.subarray(0, 2 * 6 * 4).every((x) => x === 0)).toBe(true);
    // causal Lq 6 > Lk 3: the first three queries see nothing; with sinks they see only the sink
    const shape = { batch: 1, queryHeads: 2, queryLength: 6, keyLength: 3, headDim: 4 };
    for (const options of [{ causal: true }, { causal: true, sinks: new Float32Array([0.5, 1]) }]) {
      const masked = await check(shape, options, 27);
      for (const h of [0, 1]) {
        expect(masked.gradQ.subarray(h * 24, h * 24 + 12).every((x) => x === 0)).toBe(true);
      }
    }
  });

  test('same input, same bits', async () => {
    const next = signedPrng(28);
    const shape = { batch: 1, queryHeads: 4, kvHeads: 2, queryLength: 70, headDim: 16 };
    const options = {
      causal: true,
      bias: bias4(randomArray(4 * 70, next), [1, 4, 1, 70]),
      sinks: new Float32Array([0.1, 0.2, 0.3, 0.4]),
    };
    const first = await check(shape, options, 28);
    const second = await check(shape, options, 28);
    for (const name of NAMES) expect(second[name], name).toEqual(first[name]);
  });

  test('small blocks (many row blocks) give the same gradients as one block', async () => {
    const impl = new WebglImplementation({ blockElements: 40 });
    const local = createBackend(impl);
    const next = signedPrng(29);
    const shape = {
      batch: 2,
      queryHeads: 3,
      kvHeads: 1,
      queryLength: 9,
      keyLength: 11,
      headDim: 5,
      valueDim: 6,
    };
    const options = {
      causal: true,
      bias: bias4(randomArray(2 * 11, next), [2, 1, 1, 11]),
      sinks: new Float32Array([0.1, -0.2, 0.7]),
    };
    const small = await check(shape, options, 29, local);
    const whole = await check(shape, options, 29);
    for (const name of NAMES) expect(small[name], name).toEqual(whole[name]);
    await local.dispose();
  });

  test('outputs wider and taller than MAX_TEXTURE_SIZE run in blocks (a runtime that reports 64)', async () => {
    const open = async () => ({ ...(await openGl()), maxTextureSize: 64 });
    for (const [vectorized, D, Dv] of [
      [true, 240, 40],
      [false, 36, 36],
    ] as const) {
      // gradK | gradV rows have D + Dv columns (70 texels, 72 floats: over 64), gradBias has
      // Lk = 100 columns, and there are 100 kv rows (valueDim stays under the forward's limit, 63).
      const local = createBackend(new WebglImplementation({ open, vectorized }));
      const shape = {
        batch: 1,
        queryHeads: 2,
        kvHeads: 1,
        queryLength: 12,
        keyLength: 100,
        headDim: D,
        valueDim: Dv,
      };
      const next = signedPrng(30);
      const options = {
        causal: true,
        bias: bias4(randomArray(100, next), [1, 1, 1, 100]),
        sinks: new Float32Array(2),
      };
      // Both from the same forward (a 64 texture limit also changes the forward's key tiles).
      const inputs = randomAttentionInputs(shape, 30);
      const gradOutput = randomArray(2 * 12 * Dv, signedPrng(31));
      const reference = vectorized ? backend : portable;
      const forward = await reference.attention(inputs, { ...options, returnLse: true });
      const backwardInputs = { ...inputs, output: forward.output, lse: forward.lse, gradOutput };
      const whole = await reference.attentionBackward(backwardInputs, options);
      const blocked = await local.attentionBackward(backwardInputs, options);
      const want = referenceAttentionBackward64(backwardInputs, options);
      for (const name of NAMES) {
        expectClose(blocked[name], want[name], local.capabilities.tolerance, name);
        expect(blocked[name], name).toEqual(whole[name]);
      }
      await local.dispose();
    }
  });

  test('repeated backward calls keep device memory and textures flat', async () => {
    const impl = new WebglImplementation();
    const local = createBackend(impl);
    const shape = { batch: 1, queryHeads: 2, queryLength: 16, headDim: 8 };
    const inputs = randomAttentionInputs(shape, 32);
    const gradOutput = randomArray(2 * 16 * 8, signedPrng(33));
    const options = {
      causal: true,
      bias: bias4(randomArray(16, signedPrng(34)), [1, 1, 1, 16]),
      sinks: new Float32Array(2),
    };
    const run = async () => {
      const forward = await local.attention(inputs, { ...options, returnLse: true });
      return local.attentionBackward(
        { ...inputs, output: forward.output, lse: forward.lse, gradOutput },
        options,
      );
    };
    await run();
    const bytes = impl.gl!.deviceBytes();
    const textures = impl.gl!.liveTextures();
    for (let n = 0; n < 100; n++) await run();
    console.log(`after 101 calls: ${impl.gl!.liveTextures()} textures, ${impl.gl!.deviceBytes()} bytes`);
    expect(impl.gl!.liveTextures()).toBe(textures);
    expect(impl.gl!.deviceBytes()).toBe(bytes);
    expect(local.memory().hostBytes).toBe(0);
    await local.dispose();
    expect(local.memory().deviceBytes).toBe(0);
  });

  test('the WebGL1 context (WebGLKernel) runs the same kernels', async () => {
    const local = createWebglBackend({ context: 'webgl' });
    await local.init();
    expect(local.capabilities.engine).toMatch(/^gpu\.js WebGLKernel on /);
    const next = signedPrng(35);
    await check(
      { batch: 2, queryHeads: 4, kvHeads: 2, queryLength: 5, keyLength: 9, headDim: 6, valueDim: 3 },
      {
        causal: true,
        keyMask: new Uint8Array(18).map(() => (next() > -0.6 ? 1 : 0)),
        bias: bias4(randomArray(4 * 5 * 9, next), [1, 4, 5, 9]),
        alibiSlopes: new Float32Array([0.05, 0.1, 0.2, 0.4]),
        softcap: 2,
        sinks: new Float32Array([0.2, -0.3, 0.8, 0]),
      },
      35,
      local,
    );
    await local.dispose();
  });
});
