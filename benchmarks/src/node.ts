/**
 * Node-only parts of @attnkit/benchmarks: onnxruntime-node and onnxruntime-web (wasm) peers set up for
 * Node, TF.js wasm pointed at its binaries on disk, machine information.
 * @packageDocumentation
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type { OnnxVariant } from './onnx.js';
import { type OrtModule, ortPeer } from './peers/ort.js';
import {
  type NodePlacement,
  type OrtGqaPeerOptions,
  ortGqaPeer,
  parseNodePlacements,
} from './peers/ort-gqa.js';
import { tfjsPeer } from './peers/tfjs.js';
import type { Subject } from './subject.js';

const require = createRequire(import.meta.url);

/**
 * The installed version of a package. `name/package.json` is the direct way, but a package with an
 * `exports` map that does not list it (onnxruntime-web) refuses it: then walk up from its resolved
 * entry point to the package.json that names it.
 */
export function packageVersion(name: string): string {
  try {
    return (require(`${name}/package.json`) as { version: string }).version;
  } catch {
    // fall through to the entry-point walk
  }
  try {
    let dir = path.dirname(require.resolve(name));
    for (;;) {
      const file = path.join(dir, 'package.json');
      if (existsSync(file)) {
        const json = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (json.name === name && json.version !== undefined) return json.version;
      }
      const parent = path.dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  } catch {
    // not installed: reported as such below
  }
  return 'not installed';
}

/** TF.js wasm with its `.wasm` files loaded from the installed package on disk. */
export function tfjsWasmNodePeer(): Subject {
  const dir = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
  return tfjsPeer('wasm', { wasmPaths: `${dir}${path.sep}` });
}

/** onnxruntime-node (native CPU execution provider), one intra-op thread: what its peers share. */
function ortNodeNative(): OrtGqaPeerOptions {
  const version = packageVersion('onnxruntime-node');
  return {
    family: 'ort-node',
    label: `onnxruntime-node ${version} native, 1 thread`,
    load: async () => (await import('onnxruntime-node')) as unknown as OrtModule,
    sessionOptions: { executionProviders: ['cpu'], intraOpNumThreads: 1, interOpNumThreads: 1 },
    threads: 1,
    engine: `onnxruntime-node ${version} CPU EP (native), 1 thread`,
    expectedProvider: 'CPUExecutionProvider',
    placement: ortPlacementProbe('node', 1),
  };
}

/** onnxruntime-node's attention op (`variant`): the native reference. */
export function ortNodePeer(variant: OnnxVariant): Subject {
  return ortPeer(variant, ortNodeNative());
}

/**
 * onnxruntime-web's wasm build under Node at `threads` threads: what its attention and GQA peers
 * share. `threads` must be set before the first session (the wasm module is instantiated once per
 * process), which is why each variant runs in its own process.
 */
function ortWebWasm(threads: number): OrtGqaPeerOptions {
  const version = packageVersion('onnxruntime-web');
  return {
    family: threads === 1 ? 'ort-web-1t' : 'ort-web-mt',
    label: `onnxruntime-web ${version} wasm, ${threads} thread${threads === 1 ? '' : 's'}`,
    load: async () => {
      const ort = (await import('onnxruntime-web')) as unknown as OrtModule;
      if (ort.env.wasm === undefined) throw new Error('onnxruntime-web: env.wasm missing');
      ort.env.wasm.numThreads = threads;
      return ort;
    },
    sessionOptions: { executionProviders: ['wasm'], intraOpNumThreads: threads },
    threads,
    engine: `onnxruntime-web ${version} wasm simd, ${threads} thread${threads === 1 ? '' : 's'}`,
    // the wasm EP reports itself as CPUExecutionProvider (ORT's CPU kernels compiled to wasm)
    expectedProvider: 'CPUExecutionProvider',
    placement: ortPlacementProbe('web', threads),
  };
}

export function ortWebNodePeer(variant: OnnxVariant, threads: number): Subject {
  return ortPeer(variant, ortWebWasm(threads));
}

/**
 * Where onnxruntime places a model's nodes, from its own verbose log: a separate Node process creates
 * the session with `logSeverityLevel: 0` (the log goes to that process's stderr: native for
 * onnxruntime-node, emscripten's for onnxruntime-web, neither reachable from inside this process) and
 * the "Node placements" lines are parsed. `null` if it fails (the row then says "placement unknown").
 */
export function ortPlacementProbe(
  runtime: 'node' | 'web',
  threads: number,
): (model: Uint8Array) => Promise<NodePlacement> {
  const entry = require.resolve(runtime === 'node' ? 'onnxruntime-node' : 'onnxruntime-web');
  return (model) =>
    new Promise((resolve) => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'attnkit-ort-placement-'));
      const file = path.join(dir, 'model.onnx');
      writeFileSync(file, model);
      const options =
        runtime === 'node'
          ? { executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1 }
          : { executionProviders: ['wasm'], intraOpNumThreads: threads };
      const script = [
        `const ort = require(${JSON.stringify(entry)});`,
        runtime === 'web' ? `ort.env.wasm.numThreads = ${threads};` : '',
        `const bytes = require('node:fs').readFileSync(${JSON.stringify(file)});`,
        `ort.InferenceSession.create(new Uint8Array(bytes), { ...${JSON.stringify(options)}, logSeverityLevel: 0, logVerbosityLevel: 0 })`,
        '  .then(() => process.exit(0), (e) => { console.error(String(e)); process.exit(1); });',
      ].join('\n');
      execFile(
        process.execPath,
        ['-e', script],
        { maxBuffer: 64 << 20, timeout: 120_000 },
        (_error, stdout, stderr) => {
          rmSync(dir, { recursive: true, force: true });
          resolve(parseNodePlacements(`${stdout}\n${stderr}`));
        },
      );
    });
}

/** onnxruntime-node's GroupQueryAttention decode step, 1 intra-op thread, placement checked. */
export function ortNodeGqaPeer(): Subject {
  return ortGqaPeer(ortNodeNative());
}

/**
 * onnxruntime-web's wasm backend running GroupQueryAttention under Node, `ort.env.wasm.numThreads`
 * set explicitly before the first session. The wasm EP reports itself as `CPUExecutionProvider`
 * (ORT's CPU kernels compiled to wasm).
 */
export function ortWebGqaNodePeer(threads: number): Subject {
  return ortGqaPeer(ortWebWasm(threads));
}

/**
 * The kernel's RSS high-water mark of this process (`VmHWM` in `/proc/self/status`), in bytes: the
 * true peak, including moments no sampling between calls would see (inside a synchronous kernel).
 * `null` where there is no procfs (not Linux).
 */
export function peakRssBytes(): number | null {
  return procStatusBytes('VmHWM');
}

/** The resident set now (`VmRSS`), bytes; `null` without procfs. */
export function currentRssBytes(): number | null {
  return procStatusBytes('VmRSS');
}

/**
 * Resets the high-water mark to the current RSS (writing `5` to `/proc/self/clear_refs`, Linux 4.0+),
 * so the next {@link peakRssBytes} is the peak since now. Returns false where that is not possible.
 */
export function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

function procStatusBytes(field: string): number | null {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
    return match === null ? null : Number(match[1]) * 1024;
  } catch {
    return null;
  }
}

/** What ran the bench: every result file carries it. */
export interface NodeMachineInfo {
  cpu: string;
  cores: number;
  memoryBytes: number;
  platform: string;
  arch: string;
  node: string;
  hostname: string;
}

/** CPU model, logical cores, memory, OS and Node version of this machine. */
export function nodeMachineInfo(): NodeMachineInfo {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: os.availableParallelism?.() ?? cpus.length,
    memoryBytes: os.totalmem(),
    platform: `${os.type()} ${os.release()}`,
    arch: os.arch(),
    node: process.version,
    hostname: os.hostname(),
  };
}

/** Versions of the peers' packages, for the result file. */
export function peerVersions(): Record<string, string> {
  return Object.fromEntries(
    [
      '@tensorflow/tfjs-core',
      '@tensorflow/tfjs-backend-cpu',
      '@tensorflow/tfjs-backend-wasm',
      'onnxruntime-web',
      'onnxruntime-node',
    ].map((name) => [name, packageVersion(name)]),
  );
}
