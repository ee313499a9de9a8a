/**
 * What the backward kernels share: their uniform block (generated from one field list, like the
 * forward's), the size class that selects their variants, and the per-logit gradient code that the
 * dK/dV and dQ kernels both recompute.
 */
import { type Binding, binding, bindingDeclarations, PARAMS_BINDING } from '../bindings.js';
import {
  FLOAT_HELPERS,
  Flags,
  type LogitTerms,
  load4Code,
  logitFromDotCode,
  MASK_AT,
  OPTION_BINDINGS,
  paramsBytes,
  paramsStruct,
  range,
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
${load4Code('QD')}${load4Code('KV')}
const BQ = ${tiles.rows}u;
const BK = ${tiles.keys}u;
const WG = ${v.wg}u;
const NACC = ${accumulators}u;
`;
}

/**
 * Stages `count` rows of `width4` vec4s (a row's floats rounded up to whole vec4s, zeros after its
 * last) into the workgroup tile `tile`: row `index` = `first + e / width4` reads `load` (an
 * expression of `index` and `e`) while `index < limit`, else zeros.
 */
function stageCode(
  tile: string,
  count: string,
  width4: string,
  index: string,
  first: string,
  limit: string,
  load: string,
): string {
  return `
  for (var e = lid; e < ${count} * ${width4}; e += WG) {
    let ${index} = ${first} + e / ${width4};
    var x = vec4<f32>(0.0);
    if (${index} < ${limit}) { x = ${load}; }
    ${tile}[e] = x;
  }`;
}

/** Stages the q and gradOutput rows of the query tile from `i0` (head rows from `rowBase`) into `qs`, `dos`. */
export const STAGE_QUERY_ROWS =
  stageCode('qs', 'BQ', 'D4', 'i', 'i0', 'P.lq', 'load4QD((rowBase + i) * D, e % D4, D)') +
  stageCode('dos', 'BQ', 'DV4', 'i', 'i0', 'P.lq', 'load4QD(P.doOff + (rowBase + i) * DV, e % DV4, DV)');

/** Stages the k rows (and with `values` the v rows) of the key tile from `j0` (from `kBase`) into `ks`, `vs`. */
export function stageKeyRowsCode(values: boolean): string {
  const keys = stageCode('ks', 'BK', 'D4', 'j', 'j0', 'P.lk', 'load4KV((kBase + j) * D, e % D4, D)');
  return values
    ? keys +
        stageCode('vs', 'BK', 'DV4', 'j', 'j0', 'P.lk', 'load4KV(P.vOff + (kBase + j) * DV, e % DV4, DV)')
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
 * Cells (rows x keys) of a staged tile pair each invocation computes together: its rows' q (and
 * gradOutput) vec4s and its keys' k (and v) vec4s are loaded once for all of them, so a 2 x 2 block
 * reads a quarter of the loads a cell per invocation does. Blocks grow (keys first, to 2 x 2) only
 * while every invocation still gets a block. On SwiftShader this measured no faster than a cell per
 * invocation (0.71 against 0.72 s at N 1024, H 1; a 2 x 4 block neither); it is kept for GPUs, where
 * workgroup-memory loads per multiply-add bound the dot products.
 */
export function cellBlock(tiles: BackwardTiles, wg: number): { rows: number; keys: number } {
  let rows = 1;
  let keys = 1;
  const fits = (r: number, k: number) =>
    tiles.rows % r === 0 && tiles.keys % k === 0 && (tiles.rows * tiles.keys) / (r * k) >= wg;
  if (fits(1, 2)) keys = 2;
  if (fits(2, keys)) rows = 2;
  return { rows, keys };
}

/**
 * Every cell of a staged tile pair, a block of `block.rows x block.keys` cells per invocation (see
 * {@link cellBlock}): row `r` of the block's rows `r0 + a * BQ / rows`, key `c` of `c0 + k * BK / keys`.
 * With `grad` false each cell leaves `p = exp(S_ij - lse_i)` as the lse the forward returned gives
 * it; with `grad` true `p = P_ij` (that times the row's `rowNorm`, see kernels/dq.ts), `ds = dS_ij`
 * (the gradient of the logit, what gradBias sums) and `dr` (the gradient of the scaled dot product:
 * `ds` through softcap's `1 - tanh^2`). All are 0 for an invisible key, a row with no visible key
 * (`lse = -inf`) and a logit of `-inf`. `store` runs once per cell with those and `e = r * BK + c`,
 * `i`, `j` in scope. Needs `b`, `h`, `i0`, `j0`, `off`, `D4`, `DV4` in scope and the staged `qs`,
 * `ks`, `rowLse` (and with `grad`, `dos`, `vs`, `rowDelta`, `rowNorm`). `terms` as the tiled
 * forward's: `'dot'` compiles no softcap, bias or ALiBi code (for calls without them).
 */
export function gradCellsCode(
  grad: boolean,
  tiles: BackwardTiles,
  block: { rows: number; keys: number },
  store: string,
  terms: LogitTerms,
): string {
  const rowStep = tiles.rows / block.rows;
  const keyStep = tiles.keys / block.keys;
  const rows = range(block.rows);
  const keys = range(block.keys);
  const cells = rows.flatMap((a) => keys.map((k) => [a, k] as const));
  const dots = (q: string, kk: string, width: string, acc: string) => `
      for (var d4 = 0u; d4 < ${width}; d4++) {
        ${rows.map((a) => `let q${a} = ${q}[(r0 + ${a * rowStep}u) * ${width} + d4];`).join('\n        ')}
        ${keys.map((k) => `let k${k} = ${kk}[(c0 + ${k * keyStep}u) * ${width} + d4];`).join('\n        ')}
        ${cells.map(([a, k]) => `${acc}${a}${k} += dot(q${a}, k${k});`).join('\n        ')}
      }`;
  const gradient = (a: number, k: number) => `
            ds = p * (dp${a}${k} - rowDelta[r]);
            dr = ds;${
              terms === 'all'
                ? `
            if ((P.flags & ${Flags.softcap}u) != 0u) { dr = ds * sech2(capX); }`
                : ''
            }`;
  const cell = ([a, k]: readonly [number, number]) => `
      {
        let r = r0 + ${a * rowStep}u;
        let c = c0 + ${k * keyStep}u;
        let e = r * BK + c;
        let i = i0 + r;
        let j = j0 + c;
        let pos = off + i32(i);
        ${visibleCode()}
        var p = 0.0;
        var ds = 0.0;
        var dr = 0.0;
        let lse = rowLse[r];
        if (vis && !isNegInf(lse)) {
          ${logitFromDotCode(`dot${a}${k}`, terms)}
          if (!isNegInf(s)) {
            // As the forward normalised it: (s - lse) is exact for every key that carries weight.
            p = exp((s - lse) + lo)${grad ? ' * rowNorm[r]' : ''};${grad ? gradient(a, k) : ''}
          }
        }
        ${store}
      }`;
  return `
    for (var w = lid; w < ${rowStep * keyStep}u; w += WG) {
      let r0 = w / ${keyStep}u;
      let c0 = w % ${keyStep}u;
      ${cells.map(([a, k]) => `var dot${a}${k} = 0.0;`).join('\n      ')}${dots('qs', 'ks', 'D4', 'dot')}${
        grad
          ? `
      ${cells.map(([a, k]) => `var dp${a}${k} = 0.0;`).join('\n      ')}${dots('dos', 'vs', 'DV4', 'dp')}`
          : ''
      }
${cells.map(cell).join('')}
    }`;
}

/**
 * `hi + lo += t` for vec4 running sums, as `twoSum` does per float: the rounding error of each add
 * goes to `lo`, so a sum over thousands of steps keeps float32's relative accuracy.
 */
export function compensatedAddCode(hi: string, lo: string, t: string): string {
  return `{
        let sum = ${hi} + ${t};
        let bb = sum - ${hi};
        ${lo} += (${hi} - (sum - bb)) + (${t} - bb);
        ${hi} = sum;
      }`;
}

/**
 * Which vec4s of a `[rows, width4]` product each invocation owns and accumulates (`count` of them,
 * `row(n)`, `col(n)` WGSL expressions of `lid`). Where the workgroup is a whole number of rows wide
 * (`wg` a multiple of the capacity `width4C`, which divides `rows * width4C` into `wg`), an invocation owns
 * one column of several rows, so one loop over the inner dimension reads that column's vec4 once
 * for all of them (`merged`); its columns at or past the exact `width4` compute and are not stored.
 * Otherwise vec4 `lid + n * wg` in row-major order, each with its own loop.
 */
export interface OwnedVec4s {
  count: number;
  merged: boolean;
  row(n: number): string;
  col(n: number): string;
  /** Whether the vec4 is part of the product (stored). */
  valid(n: number): string;
}

export function ownedVec4s(rows: number, width4C: number, width4: string, wg: number): OwnedVec4s {
  if (wg % width4C === 0 && (rows * width4C) % wg === 0) {
    const stride = wg / width4C;
    return {
      count: (rows * width4C) / wg,
      merged: true,
      row: (n) => `(lid / ${width4C}u + ${n * stride}u)`,
      col: () => `(lid % ${width4C}u)`,
      valid: () => `(lid % ${width4C}u) < ${width4}`,
    };
  }
  return {
    count: Math.ceil((rows * width4C) / wg),
    merged: false,
    row: (n) => `((lid + ${n}u * WG) / ${width4})`,
    col: (n) => `((lid + ${n}u * WG) % ${width4})`,
    valid: (n) => `lid + ${n}u * WG < ${rows}u * ${width4}`,
  };
}

/**
 * `accHi/accLo[first + n] += sum over inner < count of a(row_n, inner) * b(inner, col_n)` for each
 * vec4 the invocation owns. With `skipZero` a zero `a` adds nothing (a select, not a product), so an
 * inf or NaN in a `b` row whose weight is zero cannot leak (0 * inf = NaN).
 */
export function ownedProductCode(
  owned: OwnedVec4s,
  first: number,
  inner: string,
  a: (row: string, k: string) => string,
  b: (k: string, col: string) => string,
  skipZero: boolean,
): string {
  const n = range(owned.count);
  const term = (x: string, y: string) =>
    skipZero ? `select(vec4<f32>(0.0), ${x} * ${y}, ${x} != 0.0)` : `${x} * ${y}`;
  const add = (m: number, t: string) => compensatedAddCode(`accHi[${first + m}]`, `accLo[${first + m}]`, t);
  if (owned.merged) {
    return `    {
      ${n.map((m) => `var t${m} = vec4<f32>(0.0);`).join('\n      ')}
      for (var k = 0u; k < ${inner}; k++) {
        let bv = ${b('k', owned.col(0))};
        ${n.map((m) => `{ let x = ${a(owned.row(m), 'k')}; t${m} += ${term('x', 'bv')}; }`).join('\n        ')}
      }
      ${n.map((m) => add(m, `t${m}`)).join('\n      ')}
    }`;
  }
  return n
    .map(
      (m) => `    if (${owned.valid(m)}) {
      var t = vec4<f32>(0.0);
      for (var k = 0u; k < ${inner}; k++) {
        let x = ${a(owned.row(m), 'k')};
        t += ${term('x', b('k', owned.col(m)))};
      }
      ${add(m, 't')}
    }`,
    )
    .join('\n');
}

/** Staged rows' widths in vec4s (the exact head sizes rounded up), for the tiled kernels' main. */
export const ROW_VEC4S = `  let D4 = (D + 3u) / 4u;
  let DV4 = (DV + 3u) / 4u;`;

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
