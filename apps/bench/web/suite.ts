import {
  backendSubject,
  type OrtModule,
  ortPeer,
  type RunOptions,
  referenceFor,
  runSubject,
  type Subject,
  type SubjectReport,
  type Workload,
} from '@attnkit/benchmarks';
import type { BackendFactory } from '@attnkit/spec';

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
  { id: 'ort-webgpu-attention', label: 'onnxruntime-web WebGPU, Attention op' },
  { id: 'ort-webgpu-matmul', label: 'onnxruntime-web WebGPU, MatMul/Softmax graph' },
];

async function loadOrtWebGpu(): Promise<OrtModule> {
  const ort = (await import('onnxruntime-web/webgpu')) as unknown as OrtModule & {
    env: { wasm: { numThreads?: number } };
  };
  // the page is not cross-origin isolated: no SharedArrayBuffer, so one wasm thread for the CPU parts
  ort.env.wasm.numThreads = 1;
  return ort;
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
    case 'ort-webgpu-attention':
    case 'ort-webgpu-matmul': {
      const variant = id === 'ort-webgpu-attention' ? 'attention' : 'matmul';
      return ortPeer(variant, {
        family: 'ort-webgpu',
        label: 'onnxruntime-web 1.30 WebGPU',
        load: async () => {
          if (!('gpu' in navigator)) throw new Error('navigator.gpu is absent (no WebGPU in this browser)');
          return loadOrtWebGpu();
        },
        sessionOptions: { executionProviders: ['webgpu'] },
        threads: 1,
        engine: 'onnxruntime-web 1.30 WebGPU execution provider',
      });
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
