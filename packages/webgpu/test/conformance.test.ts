import { describeConformance } from '@attnkit/conformance/vitest';
import { describe } from 'vitest';
import { createWebGpuBackend, KERNEL_TIERS } from '../src/index.js';

// The whole suite, in Node (Dawn + SwiftShader) and in headless Chromium (the vitest config runs
// this file in both projects), once per kernel tier this adapter can run: the tiers up to the best
// one a default backend picks (SwiftShader: baseline and subgroups). No maxWork cap is needed (every
// case runs at full size on SwiftShader); the memory cases make 100 calls instead of 1000 so that the
// runs stay within a few minutes. The longkeys/ decodes over 3M and 4M keys (about 30 s together on
// SwiftShader) run in Node only: the browser run is the same WGSL on the same SwiftShader.
const inBrowser = typeof (globalThis as { window?: unknown }).window !== 'undefined';
const probe = createWebGpuBackend();
await probe.init();
const tiers = KERNEL_TIERS.slice(0, KERNEL_TIERS.indexOf(probe.tier) + 1);
await probe.dispose();
for (const tier of tiers) {
  describe(`tier ${tier}`, () => {
    describeConformance(() => createWebGpuBackend({ tier }), {
      repeatCalls: 100,
      timeoutMs: 120_000,
      ...(inBrowser && { filter: /^(?!longkeys\/)/ }),
    });
  });
}
