import type { MatmulShape, ResolvedOptions, ResolvedShape } from '@attnkit/spec';
import { unsupported } from './errors.js';
import type { AttentionVariant } from './kernels.js';
import type { DeviceState } from './state.js';
import type { TensorLayout } from './types.js';

export interface Strides {
  b: number;
  h: number;
  l: number;
}

export type AttentionOptionsPart = ResolvedOptions;

/** Everything the encoder needs for one attention, whatever its source. */
export interface AttentionPlan {
  shape: ResolvedShape;
  options: AttentionOptionsPart;
  layout: TensorLayout;
  variant: AttentionVariant;
}

export function stridesFor(layout: TensorLayout, heads: number, length: number, dim: number): Strides {
  return layout === 'bhld'
    ? { b: heads * length * dim, h: length * dim, l: dim }
    : { b: length * heads * dim, h: dim, l: heads * dim };
}

export function checkElements(s: DeviceState, context: string, argument: string, elements: number): void {
  const limit = s.limits.tensorElements;
  if (elements > limit) throw unsupported(argument, `at most ${limit} elements`, elements, context);
}

/** Checks the operand and output sizes of a matmul against the binding limit. */
export function checkMatmul(s: DeviceState, context: string, shape: MatmulShape): void {
  checkElements(s, context, 'a', shape.m * shape.k);
  checkElements(s, context, 'b', shape.k * shape.n);
  checkElements(s, context, 'output', shape.m * shape.n);
}

/** Folds a workgroup count into two dimensions when it passes the per-dimension limit. */
export function dispatchSize(s: DeviceState, groups: number, context: string): [number, number] {
  const max = s.limits.workgroupsPerDim;
  const x = Math.min(groups, max);
  const y = Math.ceil(groups / x);
  if (y > max) throw unsupported('workgroups', `at most ${max * max}`, groups, context);
  return [x, y];
}

export function matmulTile(s: DeviceState): number {
  return s.limits.invocations >= 256 ? 16 : 8;
}

/** The largest tiles (and capacity-bucketed head sizes) that fit the device's workgroup storage. */
export function attentionVariant(
  s: DeviceState,
  workgroupSize: number | undefined,
  shape: ResolvedShape,
): AttentionVariant {
  const floats = s.limits.workgroupFloats;
  // Capacity buckets (powers of two from 8): a new head size rarely means a new shader.
  const bucket = (n: number) => Math.max(8, 2 ** Math.ceil(Math.log2(n)));
  const fits = (D: number, Dv: number, bq: number, bk: number) =>
    bq * D + bk * D + bk * Dv + 2 * bq * bk + bq * Dv + 4 * bq <= floats;
  const wg = Math.max(1, Math.min(workgroupSize ?? 64, s.limits.invocations));
  const tiles: [number, number][] = [
    [16, 32],
    [16, 16],
    [8, 16],
    [8, 8],
    [4, 8],
    [4, 4],
    [2, 4],
    [1, 4],
    [1, 2],
    [1, 1],
  ];
  // Decoding (few query rows) would waste most of a 16-row tile.
  const rowCap = Math.max(1, 2 ** Math.ceil(Math.log2(Math.min(shape.queryLength, 16))));
  for (const [bqWanted, bk] of tiles) {
    const bq = Math.min(bqWanted, rowCap);
    let D = bucket(shape.headDim);
    let Dv = bucket(shape.valueDim);
    if (!fits(D, Dv, bq, bk)) {
      D = shape.headDim;
      Dv = shape.valueDim;
    }
    if (fits(D, Dv, bq, bk)) {
      return {
        headDim: D,
        valueDim: Dv,
        bq,
        bk,
        wg,
      };
    }
  }
  throw unsupported(
    'shape.headDim + shape.valueDim',
    `small enough for ${floats * 4} bytes of workgroup storage (at most ${Math.floor((floats - 6) / 2)})`,
    shape.headDim + shape.valueDim,
  );
}

/** Checks the sizes of what the attention writes and picks its variant. */
export function planAttention(
  s: DeviceState,
  workgroupSize: number | undefined,
  shape: ResolvedShape,
  options: AttentionOptionsPart,
  layout: TensorLayout,
  context: string,
): AttentionPlan {
  const { batch: B, queryHeads: Hq, queryLength: Lq, keyLength: Lk } = shape;
  if (options.bias !== null) checkElements(s, context, 'options.bias.data', options.bias.data.length);
  if (options.returnWeights) checkElements(s, context, 'weights', B * Hq * Lq * Lk);
  checkElements(s, context, 'lse', 3 * B * Hq * Lq);
  const variant = attentionVariant(s, workgroupSize, shape);
  return { shape, options, layout, variant } satisfies AttentionPlan;
}
