import { describeConformance } from '@attnkit/conformance/vitest';
import { describe } from 'vitest';
import createDefaultWasmBackend, { createWasmBackend } from '../src/index.js';

// The whole suite, single-threaded (the module's default export, as the CLI loads it) ...
describe('single thread', () => {
  describeConformance(createDefaultWasmBackend);
});

// ... and on two threads sharing one memory. Small tiles and no minimum work, so that every case
// with more than one query tile or head really is split between the calling thread and a worker.
describe('two threads', () => {
  describeConformance(() => createWasmBackend({ threads: 2, queryBlock: 8, parallelMinWork: 0 }));
});
