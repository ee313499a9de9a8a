/**
 * What the backward kernels share: their uniform block (generated from one field list, like the
 * forward's), the size class that selects their variants, and the per-logit gradient code that the
 * dK/dV and dQ kernels both recompute.
 */
import { type Binding, binding, bindingDeclarations, PARAMS_BINDING } from '../bindings.js';
import {
  FLOAT_HELPERS,
  Flags,
  logitCode,
  MASK_AT,
  OPTION_BINDINGS,
  paramsBytes,
  paramsStruct,
  visibleCode,
} from './shared.js';

/**
 * Words of the backward's uniform block, in order (`scale` and `softcap` f32, the rest u32). The
 * names the forward's logit and mask code reads (`d`, `scale`, `softcap`, `flags`, `bs*`, `window`,
 * `lq`, `lk`, `nanBits`) mean what they mean there.
 */
export const BACKWARD_PARAM_FIELDS = [
  'batch',
  'hq',
  'hkv',
  'lq',
  'lk',
  /** B * Hq * Lq: ROWS holds lse, then delta from `rows`, then norm from `2 * rows`. */
  'rows',
  'qTiles',
  'kTiles',
  /** Workgroups (or invocations' groups) of this dispatch, and the x size it is folded at. */
  'total',
  'groupsX',
  'window',
  /** Offset of gradOutput in the q|gradOutput buffer, of v in the k|v buffer (elements). */
  'doOff',
  'vOff',
  'bsB',
  'bsH',
  'bsI',
  'bsJ',
  /** The bias's own shape (for the gradBias reduction). */
  'biasB',
  'biasH',
  'biasI',
  'biasJ',
  'scale',
  'softcap',
  'nanBits',
  'd',
  'dv',
  'flags',
] as const;

export type BackwardParamField = (typeof BACKWARD_PARAM_FIELDS)[number];

export const BACKWARD_PARAMS_BYTES = paramsBytes(BACKWARD_PARAM_FIELDS);

export const BACKWARD_PARAMS_STRUCT = paramsStruct(BACKWARD_PARAM_FIELDS);

/** Tiles of one tiled backward kernel: `rows` query rows and `keys` keys staged at a time. */
export interface BackwardTiles {
  rows: number;
  keys: number;
}

/**
 * What selects the backward's shader variants: sizes only (which options a call uses travels in
 * `flags`, as in the forward). Head sizes are capacities (buckets), the exact ones are uniforms.
 */
export interface BackwardVariant {
  headDim: number;
  valueDim: number;
  /** Invocations per workgroup (every backward kernel). */
  wg: number;
  /** dK/dV: `keys` keys per workgroup, `rows` query rows per step. */
  kv: BackwardTiles;
  /** dQ: `rows` query rows per workgroup, `keys` keys per step. */
  q: BackwardTiles;
}

/**
 * `1 - tanh(x)^2` as `4e / (1 + e)^2`, `e = exp(-2|x|)`: relative accuracy that of `exp`, where
 * `1 - t*t` loses every digit as |tanh| nears 1 (x of 5 already leaves 1 - t of ~9e-5).
 */
export const SECH2 = `
fn sech2(x: f32) -> f32 {
  let e = exp(-2.0 * abs(x));
  let d = 1.0 + e;
  return 4.0 * e / (d * d);
}
`;

/**
 * The bindings of the two tiled kernels: q then gradOutput in one buffer, k then v in another, the
 * per-row values (lse, delta, norm: `3 * rows`) in a third, two outputs, then the forward's option
 * buffers: eight storage buffers, the WebGPU default per stage. The dQ kernel writes the rows' norm.
 */
function tiledBindings<A extends string, B extends string>(out1: A, out2: B, rowsWritten: boolean) {
  return [
    PARAMS_BINDING,
    binding('QD', 'read'),
    binding('KV', 'read'),
    binding('ROWS', rowsWritten ? 'read_write' : 'read'),
    binding(out1, 'read_write'),
    binding(out2, 'read_write'),
    ...OPTION_BINDINGS,
  ] as const;
}

/** The dQ kernel's bindings (kernels/dq.ts): gradQ, and GB, gradBias itself or the dS cells. */
export const DQ_BINDINGS = tiledBindings('GQ', 'GB', true);

/** The dK/dV kernel's bindings (kernels/dkdv.ts). */
export const DKDV_BINDINGS = tiledBindings('GK', 'GV', false);

/** The delta kernel's bindings (kernels/delta.ts): q|gradOutput, the forward's output, lse|delta|norm. */
export const DELTA_BINDINGS = [
  PARAMS_BINDING,
  binding('QD', 'read'),
  binding('O', 'read'),
  binding('ROWS', 'read_write'),
] as const;

/** The bias gradient's reduction (kernels/bias-grad.ts): the dQ kernel's dS cells into gradBias. */
export const BIAS_GRAD_BINDINGS = [
  PARAMS_BINDING,
  binding('SCRATCH', 'read'),
  binding('GB', 'read_write'),
] as const;

/** The sinks' gradient (kernels/sinks-grad.ts): the rows' lse and delta, the sinks, gradSinks. */
export const SINKS_GRAD_BINDINGS = [
  PARAMS_BINDING,
  binding('ROWS', 'read'),
  binding('HEAD', 'read'),
  binding('GS', 'read_write'),
] as const;

/**
 * The head of a tiled backward kernel: uniform block, its bindings ({@link DQ_BINDINGS} or
 * {@link DKDV_BINDINGS}, the forward's option bindings last), float helpers, and the tile constants
 * (`NACC`: accumulators per invocation).
 */
export function tiledPreamble(
  v: BackwardVariant,
  tiles: BackwardTiles,
  bindings: readonly Binding[],
  accumulators: number,
): string {
  return `${BACKWARD_PARAMS_STRUCT}
${bindingDeclarations(bindings)}
${MASK_AT}
${FLOAT_HELPERS}
${SECH2}
const BQ = ${tiles.rows}u;
const BK = ${tiles.keys}u;
const WG = ${v.wg}u;
const NACC = ${accumulators}u;
`;
}

/**
 * Stages `count` rows of `width` floats into the workgroup tile `tile`: row `index` = `first + e /
 * width` reads `load` (an expression of `index` and `e`) while `index < limit`, else 0.
 */
function stageCode(
  tile: string,
  count: string,
  width: string,
  index: string,
  first: string,
  limit: string,
  load: string,
): string {
  return `
  for (var e = lid; e < ${count} * ${width}; e += WG) {
    let ${index} = ${first} + e / ${width};
    var x = 0.0;
    if (${index} < ${limit}) { x = ${load}; }
    ${tile}[e] = x;
  }`;
}

/** Stages the q and gradOutput rows of the query tile from `i0` (head rows from `rowBase`) into `qs`, `dos`. */
export const STAGE_QUERY_ROWS =
  stageCode('qs', 'BQ', 'D', 'i', 'i0', 'P.lq', 'QD[(rowBase + i) * D + e % D]') +
  stageCode('dos', 'BQ', 'DV', 'i', 'i0', 'P.lq', 'QD[P.doOff + (rowBase + i) * DV + e % DV]');

/** Stages the k rows (and with `values` the v rows) of the key tile from `j0` (from `kBase`) into `ks`, `vs`. */
export function stageKeyRowsCode(values: boolean): string {
  const keys = stageCode('ks', 'BK', 'D', 'j', 'j0', 'P.lk', 'KV[(kBase + j) * D + e % D]');
  return values
    ? keys + stageCode('vs', 'BK', 'DV', 'j', 'j0', 'P.lk', 'KV[P.vOff + (kBase + j) * DV + e % DV]')
    : keys;
}

/**
 * Stages the query tile's per-row lse and delta (and with `norm` the norm the dQ kernel wrote) into
 * `rowLse`, `rowDelta`, `rowNorm`; rows past Lq get lse = -inf, so they carry no weight.
 */
export function stageRowStatsCode(norm: boolean): string {
  return `
  for (var r = lid; r < BQ; r += WG) {
    let i = i0 + r;
    var l = negInfValue();
    var dl = 0.0;${norm ? '\n    var nl = 0.0;' : ''}
    if (i < P.lq) {
      l = ROWS[rowBase + i];
      dl = ROWS[P.rows + rowBase + i];${norm ? '\n      nl = ROWS[2u * P.rows + rowBase + i];' : ''}
    }
    rowLse[r] = l;
    rowDelta[r] = dl;${norm ? '\n    rowNorm[r] = nl;' : ''}
  }`;
}

/**
 * One cell `e` (row `r`, key `c`) of a staged tile pair. With `grad` false it leaves `p = exp(S_ij - lse_i)` as
 * the lse the forward returned gives it; with `grad` true `p = P_ij` (that times the row's `rowNorm`,
 * see kernels/dq.ts), `ds = dS_ij` (the gradient of the logit, what gradBias sums) and `dr` (the
 * gradient of the scaled dot product: `ds` through softcap's `1 - tanh^2`). All are 0 for an
 * invisible key, a row with no visible key (`lse = -inf`) and a logit of `-inf`. Needs `e`, `b`, `h`,
 * `i0`, `j0`, `off`, `D`, `DV` in scope and the staged `qs`, `ks`, `rowLse` (and with
 * `grad`, `dos`, `vs`, `rowDelta`, `rowNorm`).
 */
export function gradCellCode(grad: boolean): string {
  const gradient = `
          var dp = 0.0;
          for (var d = 0u; d < DV; d++) { dp += dos[r * DV + d] * vs[c * DV + d]; }
          ds = p * (dp - rowDelta[r]);
          dr = ds;
          if ((P.flags & ${Flags.softcap}u) != 0u) { dr = ds * sech2(capX); }`;
  return `
      let r = e / BK;
      let c = e % BK;
      let i = i0 + r;
      let j = j0 + c;
      let pos = off + i32(i);
      ${visibleCode()}
      var p = 0.0;
      var ds = 0.0;
      var dr = 0.0;
      let lse = rowLse[r];
      if (vis && !isNegInf(lse)) {
        ${logitCode(
          (d) => `qs[r * D + ${d}]`,
          (d) => `ks[c * D + ${d}]`,
        )}
        if (!isNegInf(s)) {
          // As the forward normalised it: (s - lse) is exact for every key that carries weight.
          p = exp((s - lse) + lo)${grad ? ' * rowNorm[r]' : ''};${grad ? gradient : ''}
        }
      }
`;
}

/**
 * A fixed-order sum across a workgroup's invocations: declarations (`WG`, the partial sums) for the
 * module scope, and the closing statements, after each invocation has left its TwoSum pair in `hi`,
 * `lo`: invocation 0 adds the partials in index order into `target`, so the bits never depend on
 * scheduling. Shared by the gradBias and gradSinks reductions.
 */
export function orderedSumDeclarations(wg: number): string {
  return `const WG = ${wg}u;
var<workgroup> partHi: array<f32, ${wg}>;
var<workgroup> partLo: array<f32, ${wg}>;`;
}

export function orderedSumCode(target: string): string {
  return `  partHi[lid] = hi;
  partLo[lid] = lo;
  workgroupBarrier();
  if (lid == 0u) {
    var total = 0.0;
    var err = 0.0;
    for (var m = 0u; m < WG; m++) {
      let sum = twoSum(total, partHi[m]);
      total = sum.x;
      err += sum.y + partLo[m];
    }
    ${target} = total + err;
  }`;
}
