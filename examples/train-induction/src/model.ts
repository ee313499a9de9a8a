import {
  type AttentionBackend,
  type LayerActivations,
  type LayerInputs,
  type LayerWeights,
  multiHeadAttentionBackward,
  multiHeadAttentionForward,
} from '@attnkit/spec';
import type { Random } from './random.js';
import type { Batch } from './task.js';

/**
 * A small attention-only transformer: token and position embeddings, `layers` causal multi-head
 * attention layers with residual connections (`x <- x + attention(x)`, no MLP, no normalisation),
 * and an output projection to logits. Every product goes through the backend: the layers through
 * `multiHeadAttentionForward`/`multiHeadAttentionBackward`, the output projection through `matmul`.
 */
export interface ModelConfig {
  vocab: number;
  length: number;
  modelDim: number;
  layers: number;
  heads: number;
  headDim: number;
}

/** Every trained tensor by name (what Adam updates): `embed`, `position`, `layerN.wq`.., `unembed`, `unembedBias`. */
export type Parameters = Record<string, Float32Array>;

export type Backend = Pick<AttentionBackend, 'attention' | 'attentionBackward' | 'matmul'>;

const LAYER_KEYS = ['wq', 'wk', 'wv', 'wo', 'bq', 'bk', 'bv', 'bo'] as const;
const OPTIONS = { causal: true } as const;

export function initParameters(config: ModelConfig, random: Random): Parameters {
  const { vocab: V, length: L, modelDim: M, layers, heads: H, headDim: D } = config;
  const parameters: Parameters = {
    embed: random.normals(V * M, 1),
    position: random.normals(L * M, 1),
  };
  // 1/sqrt(fan-in) keeps every layer's output of the same size as its input at the start
  for (let l = 0; l < layers; l++) {
    parameters[`layer${l}.wq`] = random.normals(M * H * D, 1 / Math.sqrt(M));
    parameters[`layer${l}.wk`] = random.normals(M * H * D, 1 / Math.sqrt(M));
    parameters[`layer${l}.wv`] = random.normals(M * H * D, 1 / Math.sqrt(M));
    parameters[`layer${l}.wo`] = random.normals(H * D * M, 1 / Math.sqrt(H * D));
    parameters[`layer${l}.bq`] = new Float32Array(H * D);
    parameters[`layer${l}.bk`] = new Float32Array(H * D);
    parameters[`layer${l}.bv`] = new Float32Array(H * D);
    parameters[`layer${l}.bo`] = new Float32Array(M);
  }
  parameters.unembed = random.normals(M * V, 1 / Math.sqrt(M));
  parameters.unembedBias = new Float32Array(V);
  return parameters;
}

function layerWeights(parameters: Parameters, l: number): LayerWeights {
  const [wq, wk, wv, wo, bq, bk, bv, bo] = LAYER_KEYS.map((key) => parameters[`layer${l}.${key}`]);
  return { wq, wk, wv, wo, bq, bk, bv, bo };
}

function layerInputs(config: ModelConfig, parameters: Parameters, l: number, x: Float32Array, batch: number) {
  const { length: L, modelDim: M, heads: H, headDim: D } = config;
  const shape = { batch, queryLength: L, modelDim: M, queryHeads: H, headDim: D };
  return { x, weights: layerWeights(parameters, l), shape } satisfies LayerInputs;
}

/** `[rows, cols]` -> a fresh `[cols, rows]`: the backend's matmul takes its operands untransposed. */
function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

function embed(config: ModelConfig, parameters: Parameters, tokens: Int32Array): Float32Array {
  const { length: L, modelDim: M } = config;
  const x = new Float32Array(tokens.length * M);
  for (let row = 0; row < tokens.length; row++) {
    const t = tokens[row] * M;
    const p = (row % L) * M;
    for (let d = 0; d < M; d++) x[row * M + d] = parameters.embed[t + d] + parameters.position[p + d];
  }
  return x;
}

interface Forward {
  /** The residual stream before each layer and after the last: `layers + 1` arrays `[B*L, M]`. */
  streams: Float32Array[];
  saved: LayerActivations[];
  /** `[layers][B, H, L, L]` when asked for. */
  weights: Float32Array[];
  logits: Float32Array;
}

async function forward(
  backend: Backend,
  config: ModelConfig,
  parameters: Parameters,
  tokens: Int32Array,
  returnWeights: boolean,
): Promise<Forward> {
  const { length: L, modelDim: M, layers, vocab: V } = config;
  const batch = tokens.length / L;
  const streams = [embed(config, parameters, tokens)];
  const saved: LayerActivations[] = [];
  const weights: Float32Array[] = [];
  for (let l = 0; l < layers; l++) {
    const x = streams[l];
    const result = await multiHeadAttentionForward(backend, layerInputs(config, parameters, l, x, batch), {
      ...OPTIONS,
      returnWeights,
    });
    saved.push(result.saved);
    if (result.weights) weights.push(result.weights);
    const next = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) next[i] = x[i] + result.output[i];
    streams.push(next);
  }
  const logits = await backend.matmul({
    a: streams[layers],
    b: parameters.unembed,
    bias: parameters.unembedBias,
    shape: { m: batch * L, k: M, n: V },
  });
  return { streams, saved, weights, logits };
}

export interface StepResult {
  /** Mean cross-entropy over the predictable positions (nats). */
  loss: number;
  /** Fraction of predictable positions whose argmax logit is the target. */
  accuracy: number;
}

/** Cross-entropy of each predictable row, its argmax hit, and (when `gradient`) dLoss/dlogits. */
function crossEntropy(
  logits: Float32Array,
  batch: Batch,
  vocab: number,
  gradient: Float32Array | null,
): StepResult {
  let loss = 0;
  let hits = 0;
  for (let row = 0; row < batch.targets.length; row++) {
    const target = batch.targets[row];
    if (target < 0) continue;
    let max = Number.NEGATIVE_INFINITY;
    let best = 0;
    for (let c = 0; c < vocab; c++) {
      const value = logits[row * vocab + c];
      if (value > max) {
        max = value;
        best = c;
      }
    }
    let sum = 0;
    for (let c = 0; c < vocab; c++) sum += Math.exp(logits[row * vocab + c] - max);
    const logSum = max + Math.log(sum);
    loss += logSum - logits[row * vocab + target];
    if (best === target) hits++;
    if (gradient !== null) {
      // d(mean CE)/dlogit = (softmax - onehot) / count
      for (let c = 0; c < vocab; c++) {
        const p = Math.exp(logits[row * vocab + c] - logSum);
        gradient[row * vocab + c] = (p - (c === target ? 1 : 0)) / batch.count;
      }
    }
  }
  return { loss: loss / batch.count, accuracy: hits / batch.count };
}

/** Loss and accuracy of a batch, without gradients. */
export async function evaluate(
  backend: Backend,
  config: ModelConfig,
  parameters: Parameters,
  batch: Batch,
): Promise<StepResult> {
  const { logits } = await forward(backend, config, parameters, batch.tokens, false);
  return crossEntropy(logits, batch, config.vocab, null);
}

/** One forward and backward pass: the loss, the accuracy and the gradient of every parameter. */
export async function lossAndGradients(
  backend: Backend,
  config: ModelConfig,
  parameters: Parameters,
  batch: Batch,
): Promise<StepResult & { gradients: Parameters }> {
  const { length: L, modelDim: M, layers, vocab: V } = config;
  const rows = batch.tokens.length;
  const fwd = await forward(backend, config, parameters, batch.tokens, false);
  const dLogits = new Float32Array(rows * V);
  const result = crossEntropy(fwd.logits, batch, V, dLogits);
  const gradients: Parameters = {};

  // Output projection: logits = x W + b.
  const top = fwd.streams[layers];
  const [dUnembed, dTop] = await Promise.all([
    backend.matmul({ a: transpose(top, rows, M), b: dLogits, shape: { m: M, k: rows, n: V } }),
    backend.matmul({ a: dLogits, b: transpose(parameters.unembed, M, V), shape: { m: rows, k: V, n: M } }),
  ]);
  gradients.unembed = dUnembed;
  const dBias = new Float64Array(V);
  for (let row = 0; row < rows; row++) for (let c = 0; c < V; c++) dBias[c] += dLogits[row * V + c];
  gradients.unembedBias = Float32Array.from(dBias);

  // Residual layers, last first: x_{l+1} = x_l + layer(x_l), so dx_l = dx_{l+1} + layer'(x_l)^T dx_{l+1}.
  let dStream = dTop;
  for (let l = layers - 1; l >= 0; l--) {
    const inputs = layerInputs(config, parameters, l, fwd.streams[l], rows / L);
    const grads = await multiHeadAttentionBackward(backend, inputs, dStream, OPTIONS, fwd.saved[l]);
    for (const key of LAYER_KEYS) {
      const g = grads.gradWeights[key];
      if (g === undefined) throw new Error(`no gradient for layer${l}.${key}`);
      gradients[`layer${l}.${key}`] = g;
    }
    const next = new Float32Array(dStream.length);
    for (let i = 0; i < next.length; i++) next[i] = dStream[i] + grads.gradX[i];
    dStream = next;
  }

  // Embeddings: each row of the stream is embed[token] + position[i].
  const dEmbed = new Float64Array(V * M);
  const dPosition = new Float64Array(L * M);
  for (let row = 0; row < rows; row++) {
    const t = batch.tokens[row] * M;
    const p = (row % L) * M;
    for (let d = 0; d < M; d++) {
      dEmbed[t + d] += dStream[row * M + d];
      dPosition[p + d] += dStream[row * M + d];
    }
  }
  gradients.embed = Float32Array.from(dEmbed);
  gradients.position = Float32Array.from(dPosition);
  return { ...result, gradients };
}

/** Each head's attention pattern on one sequence: `[layer][head]`, each `[L, L]` (row = query). */
export async function attentionPatterns(
  backend: Backend,
  config: ModelConfig,
  parameters: Parameters,
  tokens: readonly number[],
): Promise<Float32Array[][]> {
  const { length: L, heads: H } = config;
  const { weights } = await forward(backend, config, parameters, Int32Array.from(tokens), true);
  return weights.map((w) => Array.from({ length: H }, (_, h) => w.slice(h * L * L, (h + 1) * L * L)));
}
