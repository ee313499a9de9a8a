// The one place that says how this project starts headless Chromium for tests: Debian's package
// (never a Playwright browser download), with the flags that work on machines without a display,
// a GPU or outside network (see CONTRIBUTING.md, "Machines"). `CHROMIUM_PATH` points at another build.
// apps/bench (compiled TypeScript) keeps its own copy of the flags in src/browser.ts.

/** Path of the Chromium binary. */
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Flags every headless run here needs; add the backend-specific ones after these. */
export const chromiumFlags = [
  '--no-sandbox',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
];
