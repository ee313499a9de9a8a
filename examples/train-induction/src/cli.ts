#!/usr/bin/env node
// pnpm example:train [--backend cpu|wasm|webgpu|reference] [--steps N] [--seed N] [--threads N] [--out DIR]
// Trains the induction model, prints the loss per step, writes each head's attention pattern as PNG.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BACKENDS, isBackendName, openBackend } from './backends.js';
import { gridRaster, patternRaster, patternScores } from './heatmap.js';
import { encodePng } from './png.js';
import { DEFAULT_CONFIG, TARGET_ACCURACY, TARGET_STEPS, train } from './train.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'cpu' },
    steps: { type: 'string', default: String(DEFAULT_CONFIG.steps) },
    seed: { type: 'string', default: String(DEFAULT_CONFIG.seed) },
    threads: { type: 'string', default: '1' },
    out: { type: 'string', default: resolve(here, '..', 'out') },
    quiet: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
  allowPositionals: false,
});

if (values.help) {
  console.log(
    `usage: pnpm example:train [--backend ${BACKENDS.join('|')}] [--steps N] [--seed N] [--threads N] [--out DIR] [--quiet]`,
  );
  process.exit(0);
}
const name = values.backend;
if (!isBackendName(name)) {
  console.error(`unknown backend "${name}": choose one of ${BACKENDS.join(', ')}`);
  process.exit(2);
}
const integer = (flag: string, text: string) => {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) {
    console.error(`--${flag} must be a positive integer, got ${text}`);
    process.exit(2);
  }
  return value;
};
const config = {
  ...DEFAULT_CONFIG,
  steps: integer('steps', values.steps),
  seed: integer('seed', values.seed),
};

let backend: Awaited<ReturnType<typeof openBackend>>;
try {
  backend = await openBackend(name, integer('threads', values.threads));
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
}

const { task, model } = config;
console.log(
  `induction: vocab ${task.vocab}, length ${task.length}, period ${task.minPeriod}..${task.maxPeriod}; ` +
    `${model.layers} layers x ${model.heads} heads (modelDim ${model.modelDim}, headDim ${model.headDim}); ` +
    `batch ${config.batch}, Adam lr ${config.learningRate}, seed ${config.seed}`,
);
console.log(
  `backend: ${backend.name} (${backend.capabilities.engine}); chance loss ln(${task.vocab}) = ${Math.log(task.vocab).toFixed(3)}`,
);
const result = await train(backend, config, (report) => {
  if (values.quiet && report.eval === undefined) return;
  const held = report.eval
    ? `   held-out loss ${report.eval.loss.toFixed(4)}  accuracy ${(100 * report.eval.accuracy).toFixed(1)}%`
    : '';
  console.log(
    `step ${String(report.step).padStart(4)}  loss ${report.loss.toFixed(4)}  accuracy ${(100 * report.accuracy).toFixed(1)}%${held}`,
  );
});
await backend.dispose();

mkdirSync(values.out, { recursive: true });
const L = task.length;
for (const [l, layer] of result.patterns.entries()) {
  for (const [h, pattern] of layer.entries()) {
    const { width, height, rgb } = patternRaster(pattern, L);
    writeFileSync(join(values.out, `layer${l + 1}-head${h + 1}.png`), encodePng(width, height, rgb));
    const { previousToken, induction } = patternScores(pattern, result.sample.tokens, result.sample.period);
    console.log(
      `layer ${l + 1} head ${h + 1}: ${(100 * previousToken).toFixed(0)}% of its attention on the previous token, ` +
        `${(100 * induction).toFixed(0)}% on the token after the last occurrence of the current one`,
    );
  }
}
const grid = gridRaster(result.patterns, L);
writeFileSync(join(values.out, 'attention.png'), encodePng(grid.width, grid.height, grid.rgb));
writeFileSync(
  join(values.out, 'result.json'),
  `${JSON.stringify({ backend: name, config, final: result.final, reachedAt: result.reachedAt, sample: result.sample, millis: Math.round(result.millis), history: result.history }, null, 1)}\n`,
);
console.log(
  `sample sequence (period ${result.sample.period}): ${result.sample.tokens.join(' ')}\n` +
    `wrote ${values.out}/attention.png (rows: layers, columns: heads) and one PNG per head`,
);
const reached = result.reachedAt !== null && result.reachedAt <= TARGET_STEPS;
console.log(
  `held-out accuracy ${(100 * result.final.accuracy).toFixed(1)}% after ${config.steps} steps in ${(result.millis / 1000).toFixed(1)} s; ` +
    `target ${(100 * TARGET_ACCURACY).toFixed(0)}% by step ${TARGET_STEPS}: ` +
    (result.reachedAt === null ? 'not reached' : `reached at step ${result.reachedAt}`),
);
if (config.steps >= TARGET_STEPS && !reached) process.exitCode = 1;
