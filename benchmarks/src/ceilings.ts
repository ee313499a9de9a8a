/**
 * The machine's own ceilings, measured in the same run as the benchmark, so a CPU result can be read
 * as a fraction of what this machine can do rather than against a number from elsewhere: the wasm
 * SIMD128 multiply-add throughput of one thread, and the bandwidth of a large memory copy.
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
  // 64 MiB each: far beyond the last-level cache, so this is memory, not cache, bandwidth
  const src = new Float32Array(16 * 2 ** 20).fill(1);
  const dst = new Float32Array(src.length);
  dst.set(src); // fault the pages in before timing
  const copyMs = bestMs(now, 5, () => dst.set(src));
  const copyGBps = (2 * src.byteLength) / copyMs / 1e6;
  return {
    simdGflops,
    copyGBps,
    method: `wasm simd128: ${SIMD_CHAINS} independent f32x4.mul+f32x4.add chains, ${iterations} iterations, best of 5, 1 thread; copy: Float32Array.set of 64 MiB, read+write bytes, best of 5`,
  };
}
