/**
 * The machine's own ceilings, measured in the same run as the benchmark, so a CPU result can be read
 * as a fraction of what this machine can do rather than against a number from elsewhere: the wasm
 * SIMD128 multiply-add throughput of one thread, the multiply-add throughput of plain JavaScript (the
 * ceiling of a pure-TypeScript backend such as @attnkit/cpu), and the bandwidth of a large memory copy.
 * Browser-safe: WebAssembly, typed arrays and a clock only.
 */

/** The part of the WebAssembly JS API used here (the ES2022 lib has no WebAssembly types). */
declare const WebAssembly: {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
};

/** What `measureCeilings` found. */
export interface MachineCeilings {
  /** wasm SIMD128 `f32x4.mul` + `f32x4.add` throughput of one thread, GFLOP/s (a multiply-add is 2 FLOP). */
  simdGflops: number;
  /**
   * Plain JavaScript's multiply-add throughput on one thread, GFLOP/s: the register-blocked dot
   * products of {@link jsMultiplyAddKernel} over float32 data resident in L1, the best case of
   * @attnkit/cpu's inner loops. Absent in result files written before it was measured.
   */
  jsGflops?: number;
  /** A 64 MiB `Float32Array.set` copy, GB/s counting bytes read plus bytes written (as STREAM's Copy). */
  copyGBps: number;
  /** How each was measured, for the result file. */
  method: string;
}

/** Independent accumulator chains: enough to cover the mul -> add latency on two SIMD ports. */
export const SIMD_CHAINS = 12;
/** FLOP per loop iteration: every chain does one 4-lane multiply and one 4-lane add. */
export const SIMD_FLOP_PER_ITERATION = SIMD_CHAINS * 4 * 2;

function uleb(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

function f32Bytes(x: number): number[] {
  return [...new Uint8Array(new Float32Array([x]).buffer)];
}

/**
 * A hand-assembled module (no toolchain needed at run time) exporting `run(iterations: i32) -> f32`:
 * `SIMD_CHAINS` v128 accumulators, each updated `acc = acc * m + a` per iteration, summed at the end
 * (returned so the work cannot be optimised away). `m` and `a` are parameters of the builder so a test
 * can check the arithmetic; with |m| < 1 the values converge and never reach denormals or infinity.
 */
export function simdModuleBytes(m = 0.999, a = 0.001): Uint8Array {
  const SIMD = 0xfd;
  const F32X4_SPLAT = [SIMD, ...uleb(0x13)];
  const F32X4_ADD = [SIMD, ...uleb(228)];
  const F32X4_MUL = [SIMD, ...uleb(230)];
  const F32X4_EXTRACT_LANE = [SIMD, ...uleb(31)];
  const F32_CONST = 0x43;
  const LOCAL_GET = 0x20;
  const LOCAL_SET = 0x21;
  const LOCAL_TEE = 0x22;
  // local 0: the i32 parameter; locals 1..CHAINS: accumulators; then m and a
  const mLocal = SIMD_CHAINS + 1;
  const aLocal = SIMD_CHAINS + 2;
  const code: number[] = [];
  const splat = (x: number, local: number) =>
    code.push(F32_CONST, ...f32Bytes(x), ...F32X4_SPLAT, LOCAL_SET, ...uleb(local));
  // each chain starts elsewhere, so no two chains compute the same values
  for (let j = 0; j < SIMD_CHAINS; j++) splat(1 + j / 16, j + 1);
  splat(m, mLocal);
  splat(a, aLocal);
  code.push(0x02, 0x40, 0x03, 0x40); // block, loop
  for (let j = 0; j < SIMD_CHAINS; j++)
    code.push(
      LOCAL_GET,
      ...uleb(j + 1),
      LOCAL_GET,
      ...uleb(mLocal),
      ...F32X4_MUL,
      LOCAL_GET,
      ...uleb(aLocal),
      ...F32X4_ADD,
      LOCAL_SET,
      ...uleb(j + 1),
    );
  // iterations -= 1; continue while non-zero
  code.push(LOCAL_GET, 0, 0x41, 1, 0x6b, LOCAL_TEE, 0, 0x0d, 0); // i32.const 1, i32.sub, br_if 0
  code.push(0x0b, 0x0b); // end loop, end block
  code.push(LOCAL_GET, 1);
  for (let j = 1; j < SIMD_CHAINS; j++) code.push(LOCAL_GET, ...uleb(j + 1), ...F32X4_ADD);
  code.push(...F32X4_EXTRACT_LANE, 0, 0x0b);
  const locals = [1, ...uleb(SIMD_CHAINS + 2), 0x7b]; // one group of v128 locals
  const body = [...locals, ...code];
  return new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, [1, 0x60, 1, 0x7f, 1, 0x7d]), // type: (i32) -> f32
    ...section(3, [1, 0]), // one function of type 0
    ...section(7, [1, 3, ...[...'run'].map((c) => c.charCodeAt(0)), 0x00, 0]), // export "run"
    ...section(10, [1, ...uleb(body.length), ...body]),
  ]);
}

/** The compiled SIMD loop; throws where wasm SIMD is not supported. */
export function simdKernel(m?: number, a?: number): (iterations: number) => number {
  const bytes = simdModuleBytes(m, a);
  if (!WebAssembly.validate(bytes)) throw new Error('wasm SIMD128 is not supported here');
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes));
  return instance.exports.run as (iterations: number) => number;
}

/** Query rows and keys of {@link jsMultiplyAddKernel}'s register block. */
export const JS_BLOCK_ROWS = 4;
export const JS_BLOCK_KEYS = 4;
/** Head dimension and keys of its working set: 4 x 128 + 64 x 128 float32, 34 KiB, so it stays in L1/L2. */
export const JS_DIM = 128;
export const JS_KEYS = 64;
/** FLOP of one pass over the keys: every (row, key) pair does `JS_DIM` multiply-adds. */
export const JS_FLOP_PER_PASS = JS_BLOCK_ROWS * JS_KEYS * JS_DIM * 2;

/**
 * The multiply-add loop a pure-JavaScript attention kernel cannot beat: 4 query rows against 4 keys at
 * a time, 16 independent float64 accumulators (as many as x86-64's 16 vector registers allow beside
 * the loads), float32 inputs, summed at the end and returned so the work cannot be optimised away.
 * `passes` runs over the whole working set. The data are given so a test can check the arithmetic.
 */
export function jsMultiplyAddKernel(
  q: Float32Array = seeded(JS_BLOCK_ROWS * JS_DIM, 1),
  k: Float32Array = seeded(JS_KEYS * JS_DIM, 2),
): (passes: number) => number {
  if (q.length !== JS_BLOCK_ROWS * JS_DIM || k.length !== JS_KEYS * JS_DIM) {
    throw new RangeError(
      `jsMultiplyAddKernel: expected q of ${JS_BLOCK_ROWS * JS_DIM} and k of ${JS_KEYS * JS_DIM} elements, got ${q.length} and ${k.length}`,
    );
  }
  const D = JS_DIM;
  return (passes: number): number => {
    let total = 0;
    for (let pass = 0; pass < passes; pass++) {
      for (let j = 0; j < JS_KEYS; j += JS_BLOCK_KEYS) {
        let s00 = 0,
          s01 = 0,
          s02 = 0,
          s03 = 0,
          s10 = 0,
          s11 = 0,
          s12 = 0,
          s13 = 0;
        let s20 = 0,
          s21 = 0,
          s22 = 0,
          s23 = 0,
          s30 = 0,
          s31 = 0,
          s32 = 0,
          s33 = 0;
        const a = j * D;
        const b = a + D;
        const c = b + D;
        const e = c + D;
        for (let d = 0; d < D; d++) {
          const k0 = k[a + d];
          const k1 = k[b + d];
          const k2 = k[c + d];
          const k3 = k[e + d];
          const x0 = q[d];
          const x1 = q[D + d];
          const x2 = q[2 * D + d];
          const x3 = q[3 * D + d];
          s00 += x0 * k0;
          s01 += x0 * k1;
          s02 += x0 * k2;
          s03 += x0 * k3;
          s10 += x1 * k0;
          s11 += x1 * k1;
          s12 += x1 * k2;
          s13 += x1 * k3;
          s20 += x2 * k0;
          s21 += x2 * k1;
          s22 += x2 * k2;
          s23 += x2 * k3;
          s30 += x3 * k0;
          s31 += x3 * k1;
          s32 += x3 * k2;
          s33 += x3 * k3;
        }
        total +=
          s00 + s01 + s02 + s03 + s10 + s11 + s12 + s13 + s20 + s21 + s22 + s23 + s30 + s31 + s32 + s33;
      }
    }
    return total;
  };
}

/** Values in [-1, 1) from a small LCG: the ceiling's data only need to be finite and not denormal. */
function seeded(length: number, seed: number): Float32Array {
  const out = new Float32Array(length);
  let state = seed >>> 0;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = (state / 2 ** 32) * 2 - 1;
  }
  return out;
}

/** Best of `trials` timings of `work` (the best is the least disturbed by other load on the machine). */
function bestMs(now: () => number, trials: number, work: () => void): number {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < trials; i++) {
    const t0 = now();
    work();
    best = Math.min(best, now() - t0);
  }
  return best;
}

/** Measures both ceilings: about half a second on these machines. */
export function measureCeilings(now: () => number = () => performance.now()): MachineCeilings {
  const run = simdKernel();
  run(10000); // tier-up before timing
  const iterations = 2_000_000;
  const simdMs = bestMs(now, 5, () => run(iterations));
  const simdGflops = (iterations * SIMD_FLOP_PER_ITERATION) / simdMs / 1e6;
  const js = jsMultiplyAddKernel();
  js(2000); // tier-up before timing
  const passes = 4000;
  const jsMs = bestMs(now, 5, () => js(passes));
  const jsGflops = (passes * JS_FLOP_PER_PASS) / jsMs / 1e6;
  // 64 MiB each: far beyond the last-level cache, so this is memory, not cache, bandwidth
  const src = new Float32Array(16 * 2 ** 20).fill(1);
  const dst = new Float32Array(src.length);
  dst.set(src); // fault the pages in before timing
  const copyMs = bestMs(now, 5, () => dst.set(src));
  const copyGBps = (2 * src.byteLength) / copyMs / 1e6;
  return {
    simdGflops,
    jsGflops,
    copyGBps,
    method: `wasm simd128: ${SIMD_CHAINS} independent f32x4.mul+f32x4.add chains, ${iterations} iterations, best of 5, 1 thread; plain JS: ${JS_BLOCK_ROWS}x${JS_BLOCK_KEYS} register-blocked dots over float32 in L1 (D = ${JS_DIM}, ${JS_KEYS} keys), ${passes} passes, best of 5, 1 thread; copy: Float32Array.set of 64 MiB, read+write bytes, best of 5`,
  };
}
