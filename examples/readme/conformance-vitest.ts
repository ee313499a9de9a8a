// test/conformance.test.ts
import { describeConformance } from '@attnkit/conformance/vitest';
import createMyBackend from '@attnkit/cpu'; // your package's zero-argument BackendFactory, e.g. '../src/index.js'

describeConformance(createMyBackend, { filter: 'options/' }); // one test per case; no filter: every case
// a slow backend (software GPU): cap the work per case; bigger cases are reduced or omitted, with why
// describeConformance(createMyBackend, { maxWork: 2e7, timeoutMs: 120_000 });
