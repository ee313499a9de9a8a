/**
 * One subject per process: onnxruntime-web fixes its thread count per process, a crash or an
 * out-of-memory in one library cannot take the run down, and RSS is the subject's own.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  type ResultRow,
  type RssProbeResult,
  type RunOptions,
  referenceFor,
  rssProbe,
  runSubject,
  type SubjectReport,
  type Workload,
  type WorkloadInputs,
} from '@attnkit/benchmarks';
import { currentRssBytes, peakRssBytes, resetPeakRss } from '@attnkit/benchmarks/node';
import { makeNodeSubject } from './subjects.js';

/** What the CLI sends a child: a run over series, or the backward's RSS probe at one size. */
export type ChildRequest =
  | {
      type: 'run';
      subject: string;
      series: Workload[][];
      options: RunOptions;
      /** Where float64 reference outputs are cached between children (same seed, same inputs). */
      referenceDir: string;
      cores: number;
    }
  | { type: 'probe'; subject: string; workload: Workload; seed: number; cores: number };

/** What a child sends back. */
export type ChildMessage =
  | { type: 'row'; row: ResultRow }
  | { type: 'done'; report: SubjectReport }
  | { type: 'probe'; result: RssProbeResult }
  | { type: 'fatal'; message: string };

async function cachedReference(
  dir: string,
  seed: number,
  w: Workload,
  inputs: WorkloadInputs,
): Promise<Float64Array> {
  const file = path.join(dir, `${w.id}-seed${seed}.f64`);
  if (existsSync(file)) {
    const bytes = readFileSync(file);
    return new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  }
  const ref = referenceFor(w, inputs);
  mkdirSync(dir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, new Uint8Array(ref.buffer, ref.byteOffset, ref.byteLength));
  renameSync(tmp, file); // atomic: a concurrent reader never sees half a file
  return ref;
}

function send(message: ChildMessage): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined) resolve();
    else process.send(message, undefined, undefined, () => resolve());
  });
}

/** The probe: a fresh process per subject, so the RSS is this subject's alone. */
async function probe(request: Extract<ChildRequest, { type: 'probe' }>): Promise<void> {
  let result: RssProbeResult;
  try {
    const subject = await makeNodeSubject(request.subject, request.cores);
    const gc = (globalThis as { gc?: () => void }).gc;
    result = await rssProbe(subject, request.workload, request.seed, {
      now: () => performance.now(),
      rss: currentRssBytes,
      resetPeakRss,
      peakRss: peakRssBytes,
      gc,
    });
  } catch (error) {
    await send({ type: 'fatal', message: error instanceof Error ? error.message : String(error) });
    process.exit(1);
  }
  await send({ type: 'probe', result });
  process.exit(0);
}

process.on('message', (raw: unknown) => {
  const request = raw as ChildRequest;
  if (request.type === 'probe') {
    void probe(request);
    return;
  }
  if (request.type !== 'run') return;
  (async () => {
    let subjectReport: SubjectReport;
    try {
      const subject = await makeNodeSubject(request.subject, request.cores);
      subjectReport = await runSubject(subject, 'node', request.series, request.options, {
        now: () => performance.now(),
        rss: () => process.memoryUsage.rss(),
        // backward rows: the kernel's high-water mark per size, not samples between calls
        resetPeakRss: () => {
          resetPeakRss();
        },
        peakRss: peakRssBytes,
        reference: (w, inputs) => cachedReference(request.referenceDir, request.options.seed, w, inputs),
        onRow: (row) => {
          void send({ type: 'row', row });
        },
      });
    } catch (error) {
      await send({ type: 'fatal', message: error instanceof Error ? error.message : String(error) });
      process.exit(1);
    }
    await send({ type: 'done', report: subjectReport });
    // native runtimes (Dawn, onnxruntime) may keep handles open: the child's job is done
    process.exit(0);
  })();
});
