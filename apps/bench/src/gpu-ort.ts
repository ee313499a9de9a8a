/** Runs gpu-ort-child.ts under a deadline and reads its result and ORT's node placements. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseNodePlacements, placementCheck } from '@attnkit/benchmarks';

export interface OrtAttempt {
  status: 'ran' | 'failed' | 'timed-out';
  /** Where it stopped: import, session, run (or setup). */
  stage: string | null;
  reason: string | null;
  /** ORT's "Node placements" summary line, e.g. "All nodes placed on [WebGpuExecutionProvider]". */
  placement: string | null;
  n?: number;
  headDim?: number;
  /** Max |ORT - float64 reference| of the first run. */
  maxError?: number;
  medianMs?: number;
  /** A software adapter with ORT's subgroup kernels gives wrong results (issue 14): such a run is not a peer. */
  trusted: boolean;
}

/** The attempt's problem: one head, causal, as gpu-ort-child.ts builds it. */
export const ORT_SHAPE = { heads: 1, n: 1024, headDim: 64 } as const;

const here = path.dirname(fileURLToPath(import.meta.url));

export function runOrtAttempt(deadlineMs: number, software: boolean): Promise<OrtAttempt> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(here, 'gpu-ort-child.js')], {
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let placement: string | null = null;
    let result: Record<string, unknown> | null = null;
    let tail = '';
    // ORT's log (its node placements) goes to stderr, the RESULT line to stdout: read both by line
    const lineReader = (onLine: (line: string) => void) => {
      let pending = '';
      return {
        chunk(chunk: Buffer) {
          pending += chunk.toString();
          const lines = pending.split('\n');
          pending = lines.pop() ?? '';
          for (const line of lines) onLine(line);
        },
        flush() {
          if (pending !== '') onLine(pending);
          pending = '';
        },
      };
    };
    // ORT's placement lines, for the report and for the shared parser that decides `trusted`
    const placementLines: string[] = [];
    const notePlacement = (line: string) => {
      const placed = /(All nodes placed on \[[^\]]*\]|Node\(s\) placed on \[[^\]]*\][^\n]*)/.exec(line);
      if (placed === null) return;
      placementLines.push(line);
      placement = placement === null ? placed[1] : `${placement}; ${placed[1]}`;
    };
    const stdout = lineReader((line) => {
      notePlacement(line);
      if (line.startsWith('RESULT ')) result = JSON.parse(line.slice(7)) as Record<string, unknown>;
    });
    const stderr = lineReader(notePlacement);
    child.stdout.on('data', stdout.chunk);
    child.stderr.on('data', (chunk: Buffer) => {
      stderr.chunk(chunk);
      tail = (tail + chunk.toString()).slice(-1000);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, deadlineMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      stdout.flush();
      stderr.flush();
      const found = result as Record<string, unknown> | null;
      if (found === null) {
        resolve({
          status: timedOut ? 'timed-out' : 'failed',
          stage: null,
          reason: timedOut
            ? `killed after ${deadlineMs / 1000} s`
            : `process exited (${signal ?? code}) without a result: ${tail.trim().split('\n').slice(-2).join(' | ')}`,
          placement,
          trusted: false,
        });
        return;
      }
      const ran = found.status === 'ran';
      const placed = placementCheck(
        parseNodePlacements(placementLines.join('\n')),
        'WebGpuExecutionProvider',
      );
      resolve({
        ...(found as unknown as OrtAttempt),
        placement,
        // a peer row only when it ran correctly on a hardware adapter with every node on WebGPU
        trusted:
          ran &&
          !software &&
          typeof found.maxError === 'number' &&
          found.maxError < 1e-3 &&
          placed.nodes !== null &&
          placed.fallback === null,
      });
    });
  });
}
