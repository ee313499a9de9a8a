import path from 'node:path';
import { defineConfig } from 'vite';

/**
 * The bench page. Built into dist/web (inside turbo's cached `dist/**`), served by the CLI on
 * 127.0.0.1 for headless Chromium, or by any static server for visitors. onnxruntime-web's wasm
 * runtime is referenced with `new URL(..., import.meta.url)`, so Vite emits it as an asset.
 */
export default defineConfig({
  root: path.resolve(__dirname, 'web'),
  base: './',
  // gpu.js's kernel classes are identified by constructor name (the webgl backend refuses anything but
  // WebGL2Kernel/WebGLKernel rather than fall back silently): keep names through minification
  esbuild: { keepNames: true },
  build: {
    outDir: path.resolve(__dirname, 'dist', 'web'),
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 4000,
  },
});
