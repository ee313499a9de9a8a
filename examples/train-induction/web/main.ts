import type { AttentionBackend } from '@attnkit/spec';
import { gridRaster, patternScores } from '../src/heatmap.js';
import { DEFAULT_CONFIG, type StepReport, TARGET_ACCURACY, TARGET_STEPS, train } from '../src/train.js';

declare global {
  interface Window {
    /** Set when a run ends (for a headless check of the page): the held-out accuracy and the step it hit the target. */
    __trainResult?: { accuracy: number; reachedAt: number | null; backend: string } | { error: string };
  }
}

const element = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const log = element<HTMLPreElement>('log');
const status = element<HTMLSpanElement>('status');
const print = (line: string) => {
  log.textContent += `${line}\n`;
  log.scrollTop = log.scrollHeight;
};

async function openBackend(name: string): Promise<AttentionBackend> {
  let backend: AttentionBackend;
  if (name === 'cpu') backend = (await import('@attnkit/cpu')).createCpuBackend();
  else if (name === 'wasm') backend = (await import('@attnkit/wasm')).createWasmBackend();
  else if (name === 'webgpu') backend = (await import('@attnkit/webgpu')).createWebGpuBackend();
  else backend = (await import('@attnkit/spec')).createReferenceBackend();
  await backend.init();
  if (!backend.capabilities.features.includes('backward')) {
    const engine = backend.capabilities.engine;
    await backend.dispose();
    throw new Error(
      `backend "${name}" (${engine}) has no backward pass yet: its capabilities do not list 'backward'`,
    );
  }
  return backend;
}

function drawLoss(history: StepReport[], steps: number) {
  const canvas = element<HTMLCanvasElement>('loss');
  const context = canvas.getContext('2d') as CanvasRenderingContext2D;
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  const top = Math.log(DEFAULT_CONFIG.task.vocab) * 1.1;
  const x = (step: number) => (step / steps) * (width - 10) + 5;
  const y = (loss: number) => height - 5 - (Math.min(loss, top) / top) * (height - 10);
  context.strokeStyle = '#bbb';
  context.setLineDash([4, 4]);
  context.beginPath();
  context.moveTo(0, y(Math.log(DEFAULT_CONFIG.task.vocab)));
  context.lineTo(width, y(Math.log(DEFAULT_CONFIG.task.vocab)));
  context.stroke();
  context.setLineDash([]);
  context.strokeStyle = '#08306b';
  context.beginPath();
  history.forEach((report, index) => {
    if (index === 0) context.moveTo(x(report.step), y(report.loss));
    else context.lineTo(x(report.step), y(report.loss));
  });
  context.stroke();
  context.fillStyle = '#555';
  context.fillText('chance: ln(vocab)', 8, y(Math.log(DEFAULT_CONFIG.task.vocab)) - 4);
}

function drawPatterns(patterns: Float32Array[][]) {
  const raster = gridRaster(patterns, DEFAULT_CONFIG.task.length);
  const canvas = element<HTMLCanvasElement>('patterns');
  canvas.width = raster.width;
  canvas.height = raster.height;
  const image = new ImageData(raster.width, raster.height);
  for (let i = 0; i < raster.width * raster.height; i++) {
    image.data[i * 4] = raster.rgb[i * 3];
    image.data[i * 4 + 1] = raster.rgb[i * 3 + 1];
    image.data[i * 4 + 2] = raster.rgb[i * 3 + 2];
    image.data[i * 4 + 3] = 255;
  }
  (canvas.getContext('2d') as CanvasRenderingContext2D).putImageData(image, 0, 0);
}

async function run() {
  const name = element<HTMLSelectElement>('backend').value;
  const steps = Math.max(
    1,
    Math.floor(Number(element<HTMLInputElement>('steps').value) || DEFAULT_CONFIG.steps),
  );
  const button = element<HTMLButtonElement>('run');
  button.disabled = true;
  log.textContent = '';
  window.__trainResult = undefined;
  let backend: AttentionBackend | null = null;
  try {
    backend = await openBackend(name);
    print(`backend: ${backend.name} (${backend.capabilities.engine})`);
    const history: StepReport[] = [];
    let lastDraw = 0;
    const result = await train(backend, { ...DEFAULT_CONFIG, steps }, (report) => {
      history.push(report);
      const held = report.eval ? `  held-out accuracy ${(100 * report.eval.accuracy).toFixed(1)}%` : '';
      print(
        `step ${report.step}  loss ${report.loss.toFixed(4)}  accuracy ${(100 * report.accuracy).toFixed(1)}%${held}`,
      );
      status.textContent = `step ${report.step} / ${steps}`;
      if (performance.now() - lastDraw > 200) {
        drawLoss(history, steps);
        lastDraw = performance.now();
      }
    });
    drawLoss(history, steps);
    drawPatterns(result.patterns);
    for (const [l, layer] of result.patterns.entries()) {
      for (const [h, pattern] of layer.entries()) {
        const s = patternScores(pattern, result.sample.tokens, result.sample.period);
        print(
          `layer ${l + 1} head ${h + 1}: previous token ${(100 * s.previousToken).toFixed(0)}%, induction ${(100 * s.induction).toFixed(0)}%`,
        );
      }
    }
    print(`sample (period ${result.sample.period}): ${result.sample.tokens.join(' ')}`);
    status.textContent =
      `held-out accuracy ${(100 * result.final.accuracy).toFixed(1)}% in ${(result.millis / 1000).toFixed(1)} s; ` +
      `target ${(100 * TARGET_ACCURACY).toFixed(0)}% by step ${TARGET_STEPS}: ` +
      (result.reachedAt === null ? 'not reached' : `reached at step ${result.reachedAt}`);
    window.__trainResult = { accuracy: result.final.accuracy, reachedAt: result.reachedAt, backend: name };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    status.textContent = message;
    window.__trainResult = { error: message };
  } finally {
    await backend?.dispose();
    button.disabled = false;
  }
}

element<HTMLButtonElement>('run').addEventListener('click', () => void run());
// ?backend=cpu&steps=100&autorun starts a run on load (how the headless check drives the page)
const query = new URLSearchParams(location.search);
if (query.has('backend')) element<HTMLSelectElement>('backend').value = query.get('backend') as string;
if (query.has('steps')) element<HTMLInputElement>('steps').value = query.get('steps') as string;
if (query.has('autorun')) void run();
