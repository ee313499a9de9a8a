import { describeConformance } from '@attnkit/conformance/vitest';
import { createCpuBackend } from '../src/index.js';

// The shared suite: every rule of the spec's semantics alone and combined, bad input, determinism, memory growth,
// concurrency, seeded property cases, all at the tolerance the backend declares
describeConformance(() => createCpuBackend());
