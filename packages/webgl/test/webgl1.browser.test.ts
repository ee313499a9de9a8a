import { describeConformance } from '@attnkit/conformance/vitest';
import { expect, test } from 'vitest';
import { createWebglBackend } from '../src/index.js';

// The WebGL1 path (gpu.js WebGLKernel, the portable kernels without texelFetch, as on headless-gl):
// the same suite on a WebGL1 context of the same browser.
test('context "webgl" runs on WebGLKernel', async () => {
  const backend = createWebglBackend({ context: 'webgl' });
  await backend.init();
  console.log(`engine (WebGL1): ${backend.capabilities.engine}`);
  expect(backend.capabilities.engine).toMatch(/^gpu\.js WebGLKernel on /);
  await backend.dispose();
});

// longkeys/ (decode over 3M and 4M keys) is left out as in conformance.browser.test.ts: minutes each
// on SwiftShader's WebGL1 path. The webgl README says how to run them by hand.
describeConformance(() => createWebglBackend({ context: 'webgl' }), {
  timeoutMs: 120_000,
  filter: /^(?!longkeys\/)/,
});
