/**
 * The onnxruntime-web WebGPU attempt of `--mode gpu`, in its own process (a crash in ORT or Dawn
 * must not take the check's JSON with it): onnxruntime-web's WebGPU bundle on Dawn's `navigator.gpu`,
 * a causal `com.microsoft.MultiHeadAttention` prefill (N 1024, one head, D 64) with CPU fallback
 * disabled, its output checked against the float64 reference, then timed. Prints one `RESULT {json}`
 * line; ORT's verbose log (node placements) goes to stdout before it, for the parent to read.
 */
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { buildAttentionModel, type OrtModule } from '@attnkit/benchmarks';
import { signedUniform } from '@attnkit/conformance';
import { referenceAttention64 } from '@attnkit/spec';

import { ORT_SHAPE } from './gpu-ort.js';

const { heads: H, n: N, headDim: D } = ORT_SHAPE;

interface DawnModule {
  create(flags: string[]): GPU;
  globals: Record<string, unknown>;
}

/**
 * ORT's threaded wasm build writes its uniforms with `queue.writeBuffer(buffer, offset, view)` where
 * `view` lies in the wasm memory, a SharedArrayBuffer. Browsers accept such views; Dawn's Node
 * binding (webgpu 0.6.2) throws "Invalid argument" and the run fails at its first program. Copying
 * those views into an ordinary buffer first changes no byte the GPU sees (a few small uniform
 * writes per run, measured: 12 writes of 48-128 bytes).
 */
function copySharedViewsOnWriteBuffer(): void {
  const queue = (globalThis as unknown as { GPUQueue: { prototype: GPUQueue } }).GPUQueue.prototype;
  const write = queue.writeBuffer;
  queue.writeBuffer = function (this: GPUQueue, buffer, offset, data, dataOffset, size) {
    const own =
      ArrayBuffer.isView(data) && !(data instanceof DataView) && data.buffer instanceof SharedArrayBuffer
        ? copyView(data)
        : data;
    return write.call(this, buffer, offset, own, dataOffset, size);
  } as GPUQueue['writeBuffer'];
}

function copyView(view: ArrayBufferView): ArrayBufferView {
  // the same element type, so `dataOffset` and `size` (counted in elements) keep their meaning
  const Same = view.constructor as new (source: ArrayBufferView) => ArrayBufferView;
  return new Same(view);
}

async function attempt(): Promise<Record<string, unknown>> {
  const here = createRequire(import.meta.url);
  const fromWebgpu = createRequire(import.meta.resolve('@attnkit/webgpu'));
  const dawn = (await import(pathToFileURL(fromWebgpu.resolve('webgpu')).href)) as DawnModule;
  Object.assign(globalThis, dawn.globals);
  const gpu = dawn.create([]);
  copySharedViewsOnWriteBuffer();
  Object.defineProperty(globalThis, 'navigator', {
    value: { gpu, userAgent: `Node ${process.version}`, hardwareConcurrency: 1, language: 'en' },
    configurable: true,
    writable: true,
  });
  // the ./webgpu export has no node condition; its bundle is the browser build, loaded by path
  const bundle = here.resolve('onnxruntime-web').replace(/ort\.node\.min\.js$/, 'ort.webgpu.bundle.min.mjs');
  let stage = 'import';
  try {
    const ort = (await import(pathToFileURL(bundle).href)) as unknown as OrtModule & {
      env: { wasm: { numThreads: number } };
    };
    ort.env.wasm.numThreads = 1;
    const model = buildAttentionModel('mha', {
      queryHeads: H,
      kvHeads: H,
      queryLength: N,
      keyLength: N,
      headDim: D,
      causal: true,
    });
    stage = 'session';
    const session = await ort.InferenceSession.create(model.bytes, {
      executionProviders: ['webgpu'],
      logSeverityLevel: 0,
      extra: { session: { disable_cpu_ep_fallback: '1' } },
    } as never);
    const data = model.inputs.map((_input, i) => signedUniform(H * N * D, 31 + i));
    const feeds = Object.fromEntries(
      model.inputs.map((input, i) => [input.name, new ort.Tensor('float32', data[i], input.dims)]),
    );
    stage = 'run';
    const first = await session.run(feeds);
    const output = Object.values(first)[0].data as Float32Array;
    // ORT_SHAPE has one head (its type says so): [1, L, H*D] is then the spec's [1, H, L, D]
    const shape = { batch: 1, queryHeads: H, kvHeads: H, queryLength: N, headDim: D };
    const reference = referenceAttention64({ q: data[0], k: data[1], v: data[2], shape }, { causal: true });
    let maxError = 0;
    for (let i = 0; i < reference.output.length; i++)
      maxError = Math.max(maxError, Math.abs(output[i] - reference.output[i]));
    const times: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t = performance.now();
      await session.run(feeds);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    return { status: 'ran', stage, reason: null, n: N, headDim: D, maxError, medianMs: times[2] };
  } catch (error) {
    return { status: 'failed', stage, reason: error instanceof Error ? error.message : String(error) };
  }
}

attempt().then(
  (result) => {
    console.log(`RESULT ${JSON.stringify(result)}`);
    process.exit(0);
  },
  (error: unknown) => {
    console.log(`RESULT ${JSON.stringify({ status: 'failed', stage: 'setup', reason: String(error) })}`);
    process.exit(0);
  },
);
