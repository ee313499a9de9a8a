// The adapter registering the whole suite on the reference backend: one vitest test per case.
import { createReferenceBackend } from '@attnkit/spec';
import { describeConformance } from '../src/vitest.js';

describeConformance(createReferenceBackend, {
  filter: /^(options|masked|invalid|lifecycle|limits|random)\//,
});
