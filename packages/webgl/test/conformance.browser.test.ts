import { describeConformance } from '@attnkit/conformance/vitest';
import createWebglBackend from '../src/index.js';

describeConformance(createWebglBackend, { timeoutMs: 120_000 });
