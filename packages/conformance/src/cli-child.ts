/**
 * The CLI's backend process: it imports the backend module and runs cases one at a time for the
 * parent (`cli.ts`), which is the watchdog. A backend that blocks this thread (a synchronous spin, a
 * kernel that never returns) cannot be stopped from inside it, since no timer can fire here; the
 * parent kills this process and starts another for the remaining cases.
 */
import type { BackendFactory } from '@attnkit/spec';
import { describe } from './compare.js';
import { ConformanceSession, listCases } from './runner.js';
import type { CaseResult, ConformanceOptions, ConformanceReport } from './types.js';

/** Parent to child: the only message, sent once. */
export interface RunRequest {
  type: 'run';
  url: string;
  exportName: string;
  specifier: string;
  /** With the seed fixed by the parent, so every child draws the same random cases. */
  options: ConformanceOptions;
  /** The cases still to run, in order. */
  ids: string[];
}

/** Child to parent, in this order: ready, loaded (or load-error), started, then begin/case pairs, finished. */
export type ChildMessage =
  | { type: 'ready' }
  | { type: 'load-error'; message: string }
  | { type: 'loaded' }
  | { type: 'started'; report: ConformanceReport }
  | { type: 'begin'; id: string }
  | { type: 'case'; result: CaseResult; notes: string[] }
  | { type: 'finished'; report: ConformanceReport };

/** Exit code of a backend process whose CLI went away (nobody reads it; for `ps` and core dumps). */
const EXIT_ORPHANED = 71;

function send(message: ChildMessage): void {
  process.send?.(message);
}

async function run(request: RunRequest): Promise<void> {
  // from here on the import is the backend's time, not Node's start-up
  send({ type: 'ready' });
  let factory: BackendFactory;
  try {
    const module = (await import(request.url)) as Record<string, unknown>;
    const candidate = module[request.exportName];
    if (typeof candidate !== 'function') {
      const names = Object.keys(module).join(', ');
      throw new Error(
        `export "${request.exportName}" of ${request.specifier} is ${typeof candidate}, not a BackendFactory (exports: ${names})`,
      );
    }
    factory = candidate as BackendFactory;
  } catch (error) {
    send({ type: 'load-error', message: error instanceof Error ? error.message : String(error) });
    return;
  }
  send({ type: 'loaded' });
  const session = new ConformanceSession(factory, request.options);
  await session.start();
  send({ type: 'started', report: session.report() });
  const byId = new Map(listCases(request.options).map((testCase) => [testCase.id, testCase]));
  for (const id of request.ids) {
    const testCase = byId.get(id);
    if (testCase === undefined) throw new Error(`internal: no case ${id}`);
    await session.prepare();
    send({ type: 'begin', id });
    const result = await session.runCase(testCase);
    send({ type: 'case', result, notes: session.report().notes });
  }
  send({ type: 'finished', report: await session.finish() });
}

// Orphaned (the CLI was killed): stop, rather than go on running cases nobody will read.
process.once('disconnect', () => process.exit(EXIT_ORPHANED));

process.once('message', (request: RunRequest) => {
  // Unreferenced, the IPC channel does not keep this process alive: when a backend leaves nothing
  // to wait for (an import whose top-level await never settles) the process exits, and the parent
  // says what it was doing instead of waiting out its watchdog.
  process.channel?.unref();
  run(request).catch((error: unknown) => {
    process.stderr.write(`attnkit-conformance (backend process): ${describe(error)}\n`);
    process.exitCode = 70;
  });
});
