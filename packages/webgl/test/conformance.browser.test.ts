import { describeConformance } from '@attnkit/conformance/vitest';
import createWebglBackend from '../src/index.js';

describeConformance(createWebglBackend, { maxWork: 2e8, timeoutMs: 120_000 });
