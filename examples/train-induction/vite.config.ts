import path from 'node:path';
import { defineConfig } from 'vite';

/** The training page: `pnpm --filter @attnkit/examples train:web` serves it, `train:web:build` builds dist/web. */
export default defineConfig({
  root: path.resolve(import.meta.dirname, 'web'),
  base: './',
  build: {
    outDir: path.resolve(import.meta.dirname, 'dist', 'web'),
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 4000,
  },
});
