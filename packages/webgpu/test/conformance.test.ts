import { describeConformance } from '@attnkit/conformance/vitest';
import createWebGpu from '../src/index.js';

// The whole suite, in Node (Dawn + SwiftShader) and in headless Chromium: the vitest config runs this
// file in both projects. No maxWork cap is needed (every case runs at full size on SwiftShader); the
// memory cases make 100 calls instead of 1000 so that both runs stay within a few minutes. The
// longkeys/ decodes over 3M and 4M keys (about 30 s together on SwiftShader) run in Node only: the
// browser run is the same WGSL on the same SwiftShader.
const inBrowser = typeof (globalThis as { window?: unknown }).window !== 'undefined';
describeConformance(createWebGpu, {
  repeatCalls: 100,
  timeoutMs: 120_000,
  ...(inBrowser && { filter: /^(?!longkeys\/)/ }),
});
