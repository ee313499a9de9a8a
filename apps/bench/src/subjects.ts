import { backendSubject, naivePeer, type Subject, tfjsPeer } from '@attnkit/benchmarks';
import type { BackendFactory } from '@attnkit/spec';

/** A subject the bench knows, and where it runs. */
export interface SubjectEntry {
  id: string;
  kind: 'attnkit' | 'peer';
  /** `node`: a child process of the CLI; `browser`: the bench page in headless Chromium. */
  environment: 'node' | 'browser';
  label: string;
  /**
   * Peers with a backward pass (naive JS, TF.js `tf.grads`). attnkit backends leave it out: theirs
   * is read from the capabilities at run time, so a backend joins the backward mode the day it
   * lists `backward`, and one that does not is reported "not applicable".
   */
  backward?: boolean;
  /**
   * Subjects that exist only for `--mode decode-cache`: the stateless baselines of the attnkit
   * backends (`cpu-stateless`: `attention` over the whole K/V each step) and onnxruntime's
   * GroupQueryAttention peers. Left out of every other mode.
   */
  decodeOnly?: boolean;
}

/** attnkit backends under Node. */
export const NODE_BACKENDS: readonly SubjectEntry[] = [
  { id: 'cpu', kind: 'attnkit', environment: 'node', label: '@attnkit/cpu (TypeScript)' },
  { id: 'wasm', kind: 'attnkit', environment: 'node', label: '@attnkit/wasm, 1 thread' },
  { id: 'wasm-mt', kind: 'attnkit', environment: 'node', label: '@attnkit/wasm, all cores' },
  { id: 'webgpu-dawn', kind: 'attnkit', environment: 'node', label: '@attnkit/webgpu on Dawn (Node)' },
];

/** The stateless baseline of each Node backend in a decode-cache run: the same backend's `attention` per step. */
export const NODE_STATELESS: readonly SubjectEntry[] = NODE_BACKENDS.map((e) => ({
  id: `${e.id}-stateless`,
  kind: 'attnkit',
  environment: 'node',
  label: `${e.label}, stateless attention per step`,
  decodeOnly: true,
}));

/** onnxruntime's decode op (com.microsoft.GroupQueryAttention with past/present K/V) per runtime. */
export const NODE_GQA_PEERS: readonly SubjectEntry[] = (
  ['ort-web-1t', 'ort-web-mt', 'ort-node'] as const
).map(
  (family): SubjectEntry => ({
    id: `${family}-gqa`,
    kind: 'peer',
    environment: 'node',
    label: `${family} GroupQueryAttention`,
    decodeOnly: true,
  }),
);

/** Peers under Node. */
export const NODE_PEERS: readonly SubjectEntry[] = [
  { id: 'naive-js', kind: 'peer', environment: 'node', label: 'naive JS', backward: true },
  { id: 'tfjs-cpu', kind: 'peer', environment: 'node', label: 'TF.js cpu', backward: true },
  { id: 'tfjs-wasm', kind: 'peer', environment: 'node', label: 'TF.js wasm', backward: true },
  ...(['ort-web-1t', 'ort-web-mt', 'ort-node'] as const).flatMap((family) =>
    (['attention', 'mha', 'matmul'] as const).map(
      (variant): SubjectEntry => ({
        id: `${family}-${variant}`,
        kind: 'peer',
        environment: 'node',
        label: `${family} ${variant}`,
      }),
    ),
  ),
];

/** Subjects the bench page runs in the browser. */
export const BROWSER_SUBJECTS: readonly SubjectEntry[] = [
  { id: 'webgpu', kind: 'attnkit', environment: 'browser', label: '@attnkit/webgpu (browser)' },
  { id: 'webgl', kind: 'attnkit', environment: 'browser', label: '@attnkit/webgl (browser, gpu.js)' },
  { id: 'tfjs-webgl', kind: 'peer', environment: 'browser', label: 'TF.js WebGL (browser)' },
  {
    id: 'ort-webgpu-mha',
    kind: 'peer',
    environment: 'browser',
    label: 'onnxruntime-web WebGPU, MultiHeadAttention op',
  },
  {
    id: 'ort-webgpu-gqa',
    kind: 'peer',
    environment: 'browser',
    label: 'onnxruntime-web WebGPU, GroupQueryAttention op (prefill; decode-cache with the cache on the GPU)',
  },
  {
    id: 'ort-webgpu-attention',
    kind: 'peer',
    environment: 'browser',
    label: 'onnxruntime-web WebGPU session, Attention op (placed on its wasm CPU EP: fallback)',
  },
  {
    id: 'ort-webgpu-matmul',
    kind: 'peer',
    environment: 'browser',
    label: 'onnxruntime-web WebGPU, MatMul graph',
  },
];

/**
 * The subjects a backward run starts: every attnkit backend (its capabilities decide) and the peers
 * with a backward pass. A peer without one (onnxruntime has no training API here) runs only when
 * named by id, and then reports its rows "not applicable".
 */
export function backwardEntries(
  entries: readonly SubjectEntry[],
  named: readonly string[] = [],
): SubjectEntry[] {
  return entries.filter((e) => e.kind === 'attnkit' || e.backward === true || named.includes(e.id));
}

/**
 * The subjects a decode-cache run starts: every attnkit backend (its capabilities decide whether
 * it has a cache; one without is "not applicable"), the stateless baselines and the GQA peers.
 * Others (naive JS, TF.js, the prefill ONNX variants, the browser page) only when named by id.
 */
export function decodeCacheEntries(
  entries: readonly SubjectEntry[],
  named: readonly string[] = [],
): SubjectEntry[] {
  return entries.filter(
    (e) =>
      named.includes(e.id) || (e.environment === 'node' && (e.kind === 'attnkit' || e.decodeOnly === true)),
  );
}

/** Every subject id. */
export const ALL_SUBJECTS: readonly SubjectEntry[] = [
  ...NODE_BACKENDS,
  ...NODE_STATELESS,
  ...NODE_PEERS,
  ...NODE_GQA_PEERS,
  ...BROWSER_SUBJECTS,
];

type FactoryModule = { default?: unknown; [name: string]: unknown };

async function importBackend(specifier: string): Promise<FactoryModule> {
  try {
    // a variable specifier: a backend that is not built yet is a runtime "unavailable", not a build error
    const name: string = specifier;
    return (await import(name)) as FactoryModule;
  } catch (error) {
    const text = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new Error(`${specifier} could not be loaded (not built?): ${text}`);
  }
}

function factoryFrom(module: FactoryModule, exportName: string, specifier: string): BackendFactory {
  const factory = module[exportName];
  if (typeof factory !== 'function') throw new Error(`${specifier} has no ${exportName} factory export`);
  return factory as BackendFactory;
}

/** The wasm package's named factory with options (its default export is the single-thread one). */
type ThreadedFactory = (options: { threads: number }) => ReturnType<BackendFactory>;

/** Makes a Node subject by id. Throws (becoming "unavailable: reason") when it cannot exist here. */
export async function makeNodeSubject(subjectId: string, cores: number): Promise<Subject> {
  // `cpu-stateless` is `cpu` run through `attention` instead of its cache
  const stateless = subjectId.endsWith('-stateless') && ALL_SUBJECTS.some((e) => e.id === subjectId);
  const id = stateless ? subjectId.slice(0, -'-stateless'.length) : subjectId;
  const lazy = (label: string, load: () => Promise<BackendFactory>): Subject => {
    let factory: BackendFactory | null = null;
    const inner = backendSubject(
      subjectId,
      stateless ? `${label}, stateless` : label,
      async () => {
        factory ??= await load();
        return factory();
      },
      stateless ? 'stateless' : 'cache',
    );
    return inner;
  };
  switch (id) {
    case 'cpu':
      return lazy('@attnkit/cpu', async () =>
        factoryFrom(await importBackend('@attnkit/cpu'), 'default', '@attnkit/cpu'),
      );
    case 'wasm':
      return lazy('@attnkit/wasm, 1 thread', async () => {
        const m = await importBackend('@attnkit/wasm');
        if (typeof m.createWasmBackend === 'function') {
          const create = m.createWasmBackend as ThreadedFactory;
          return () => create({ threads: 1 });
        }
        return factoryFrom(m, 'default', '@attnkit/wasm');
      });
    case 'wasm-mt':
      return lazy(`@attnkit/wasm, ${cores} threads`, async () => {
        const m = await importBackend('@attnkit/wasm');
        if (typeof m.createWasmBackend !== 'function')
          throw new Error('@attnkit/wasm has no createWasmBackend export');
        const create = m.createWasmBackend as ThreadedFactory;
        return () => create({ threads: cores });
      });
    case 'webgpu-dawn':
      return lazy('@attnkit/webgpu on Dawn', async () =>
        factoryFrom(await importBackend('@attnkit/webgpu'), 'default', '@attnkit/webgpu'),
      );
    case 'naive-js':
      return naivePeer();
    case 'tfjs-cpu':
      return tfjsPeer('cpu');
    default: {
      const node = await import('@attnkit/benchmarks/node');
      if (id === 'tfjs-wasm') return node.tfjsWasmNodePeer();
      if (id === 'ort-node-gqa') return node.ortNodeGqaPeer();
      if (id === 'ort-web-1t-gqa') return node.ortWebGqaNodePeer(1);
      if (id === 'ort-web-mt-gqa') return node.ortWebGqaNodePeer(cores);
      const match = /^(ort-web-1t|ort-web-mt|ort-node)-(attention|mha|matmul)$/.exec(id);
      if (match === null) throw new Error(`unknown subject "${id}"`);
      const variant = match[2] as 'attention' | 'mha' | 'matmul';
      if (match[1] === 'ort-node') return node.ortNodePeer(variant);
      return node.ortWebNodePeer(variant, match[1] === 'ort-web-1t' ? 1 : cores);
    }
  }
}
