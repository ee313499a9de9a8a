import {
  backendSubject,
  type OrtWebGpuGqaOptions,
  type OrtWebGpuModule,
  ortPeer,
  ortWebGpuGqaPeer,
  type RunOptions,
  referenceFor,
  runSubject,
  type Subject,
  type SubjectReport,
  tfjsPeer,
  type Workload,
} from '@attnkit/benchmarks';
import type { BackendFactory } from '@attnkit/spec';
import { installConsoleTap, type OrtDevice, ortDevice, probePlacement } from './ort-webgpu.js';

// before any subject loads onnxruntime: its wasm module binds the console when it starts
installConsoleTap();

/** What the CLI (or the page's own button) asks the page to run. */
export interface BrowserRunRequest {
  subjects: string[];
  series: Workload[][];
  options: RunOptions;
}

/** What a browser run returns. */
export interface BrowserRunResult {
  reports: SubjectReport[];
  userAgent: string;
  adapter: string | null;
}

/** Subjects the page can run, by id. */
export const PAGE_SUBJECTS: readonly { id: string; label: string }[] = [
  { id: 'webgpu', label: '@attnkit/webgpu' },
  { id: 'webgl', label: '@attnkit/webgl (gpu.js)' },
  { id: 'cpu', label: '@attnkit/cpu (TypeScript, in the page)' },
  { id: 'tfjs-webgl', label: 'TF.js WebGL (composed softmax(q k^T) v)' },
  { id: 'ort-webgpu-mha', label: 'onnxruntime-web WebGPU, MultiHeadAttention op' },
  { id: 'ort-webgpu-gqa', label: 'onnxruntime-web WebGPU, GroupQueryAttention op' },
  { id: 'ort-webgpu-matmul', label: 'onnxruntime-web WebGPU, MatMul/Softmax graph' },
  {
    id: 'ort-webgpu-attention',
    label: 'onnxruntime-web WebGPU session, Attention op (placed on its wasm CPU EP: a fallback row)',
  },
];

type OrtWebGpu = OrtWebGpuModule & { env: { wasm: { numThreads?: number } } };

let ortModule: Promise<OrtWebGpu> | null = null;

/** onnxruntime-web's WebGPU build, once per page, after the console tap (its log is the placement check). */
function loadOrtWebGpu(): Promise<OrtWebGpu> {
  installConsoleTap();
  ortModule ??= (async () => {
    if (!('gpu' in navigator)) throw new Error('navigator.gpu is absent (no WebGPU in this browser)');
    const ort = (await import('onnxruntime-web/webgpu')) as unknown as OrtWebGpu;
    // the page is not cross-origin isolated: no SharedArrayBuffer, so one wasm thread for the CPU parts
    ort.env.wasm.numThreads = 1;
    return ort;
  })();
  return ortModule;
}

/**
 * The options every onnxruntime WebGPU peer shares: the page's device for onnxruntime, the
 * placement probe, and an engine string that says which device features it runs with (set by
 * `load`, so the peer must get this object itself, not a copy).
 */
function ortWebGpuOptions(): OrtWebGpuGqaOptions {
  let ort: OrtWebGpu | null = null;
  let gpu: OrtDevice | null = null;
  const sessionOptions = () => {
    if (gpu === null) throw new Error('onnxruntime WebGPU: session options before load');
    return { executionProviders: [{ name: 'webgpu', device: gpu.device }] };
  };
  const options: OrtWebGpuGqaOptions = {
    family: 'ort-webgpu',
    label: 'onnxruntime-web 1.30 WebGPU',
    load: async () => {
      ort = await loadOrtWebGpu();
      gpu = await ortDevice();
      options.engine = `onnxruntime-web 1.30 WebGPU EP on ${gpu.adapter}${
        gpu.withoutSubgroups
          ? " (device without 'subgroups': with it ORT 1.30's MHA/GQA kernels are wrong on SwiftShader)"
          : ''
      }`;
      return ort;
    },
    sessionOptions,
    threads: 1,
    engine: 'onnxruntime-web 1.30 WebGPU EP',
    expectedProvider: 'WebGpuExecutionProvider',
    placement: async (model) => {
      if (ort === null) throw new Error('onnxruntime WebGPU: placement probe before load');
      return probePlacement(ort, model, sessionOptions());
    },
    device: () => {
      if (gpu === null) throw new Error('onnxruntime WebGPU: device before load');
      return gpu.device;
    },
  };
  return options;
}

function makeSubject(id: string): Subject {
  const lazy = (label: string, load: () => Promise<{ default: unknown }>): Subject =>
    backendSubject(id, label, async () => {
      const factory = (await load()).default;
      if (typeof factory !== 'function') throw new Error(`${label} has no default factory export`);
      return (factory as BackendFactory)();
    });
  switch (id) {
    case 'webgpu':
      return lazy('@attnkit/webgpu (browser)', () => import('@attnkit/webgpu'));
    case 'webgl':
      return lazy('@attnkit/webgl (browser)', () => import('@attnkit/webgl'));
    case 'cpu':
      return lazy('@attnkit/cpu (browser)', () => import('@attnkit/cpu'));
    case 'tfjs-webgl':
      return tfjsPeer('webgl');
    case 'ort-webgpu-gqa':
      return ortWebGpuGqaPeer(ortWebGpuOptions());
    case 'ort-webgpu-mha':
    case 'ort-webgpu-attention':
    case 'ort-webgpu-matmul': {
      const variant = id.slice('ort-webgpu-'.length) as 'mha' | 'attention' | 'matmul';
      // WebGPU's MultiHeadAttention refuses `unidirectional`: causal goes in as an attention bias
      const options = ortWebGpuOptions();
      options.mhaCausal = 'bias';
      return ortPeer(variant, options);
    }
    default:
      throw new Error(`unknown browser subject "${id}"`);
  }
}

/** The WebGPU adapter as the browser describes it, or why there is none. */
export async function describeAdapter(): Promise<string | null> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (gpu === undefined) return null;
  const adapter = await gpu.requestAdapter();
  if (adapter === null) return null;
  const info = adapter.info;
  return (
    [info.vendor, info.architecture, info.device, info.description].filter((s) => s).join(' ') ||
    'unnamed adapter'
  );
}

/** Runs subjects one after another in this page, with the same runner as the Node CLI. */
export async function runInPage(
  request: BrowserRunRequest,
  onRow: (subject: string, workload: string) => void,
): Promise<BrowserRunResult> {
  const references = new Map<string, Float64Array>();
  const reports: SubjectReport[] = [];
  const environment = `browser (${navigator.userAgent.match(/(Chrome|Firefox|Safari)\/[\d.]+/)?.[0] ?? 'unknown'})`;
  for (const id of request.subjects) {
    let subject: Subject;
    try {
      subject = makeSubject(id);
    } catch (error) {
      reports.push({
        id,
        kind: 'peer',
        family: id,
        label: id,
        environment,
        status: 'unavailable',
        reason: error instanceof Error ? error.message : String(error),
        rows: [],
        stopped: {},
        elapsedMs: 0,
      });
      continue;
    }
    const report = await runSubject(subject, environment, request.series, request.options, {
      now: () => performance.now(),
      reference: async (w, inputs) => {
        let ref = references.get(w.id);
        if (ref === undefined) {
          ref = referenceFor(w, inputs);
          references.set(w.id, ref);
        }
        return ref;
      },
      onRow: (row) => onRow(id, row.workload.id),
    });
    reports.push(report);
  }
  return { reports, userAgent: navigator.userAgent, adapter: await describeAdapter().catch(() => null) };
}
