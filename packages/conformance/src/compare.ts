import type { Tolerance } from '@attnkit/spec';

/**
 * The most a backend may declare. Above this a tolerance stops testing anything (atol 1e300 let a
 * backend returning a constant pass most cases), so the suite refuses it: every comparison fails.
 * atol 1e-3 is already a thousandth of a unit-scale output; rtol 1e-2 is 1%; fudge 16 is eight times
 * the largest fudge an attnkit backend declares (wasm, webgpu, webgl: 2; their measured worst needs 1.04),
 * room for a kernel with a few more roundings per step, not for a wrong one.
 */
export const TOLERANCE_CAP = { atol: 1e-3, rtol: 1e-2, fudge: 16 } as const;

/** What is wrong with a declared tolerance (missing, negative, non-finite, over the cap); empty when fine. */
export function toleranceProblems(tolerance: unknown): string[] {
  if (typeof tolerance !== 'object' || tolerance === null) return [`tolerance is ${String(tolerance)}`];
  const declared = tolerance as Record<string, unknown>;
  const problems: string[] = [];
  for (const key of ['atol', 'rtol', 'fudge'] as const) {
    const value = declared[key];
    if (key === 'fudge' && value === undefined) continue;
    if (!(typeof value === 'number' && Number.isFinite(value) && value >= 0)) {
      problems.push(`tolerance.${key} ${String(value)} is not a finite number >= 0`);
    } else if (value > TOLERANCE_CAP[key]) {
      problems.push(`tolerance.${key} ${value} is above the suite's cap ${TOLERANCE_CAP[key]}`);
    }
  }
  return problems;
}

/** Lazily computed naive float32 values of one tensor (see `naive.ts`); called at most once. */
export type NaiveValues = () => ArrayLike<number> | undefined;

/**
 * A yardstick given directly as one float32 error per row, computed lazily (at most once), with the
 * name messages give it. The backward's: the naive error or a derived bound, whichever is larger.
 */
export interface RowYardstick {
  rowErrors: () => ArrayLike<number>;
  name: string;
}

/** Running worst errors of one case over every tensor it compared. */
export class Comparison {
  worstAbs: number | null = null;
  worstRel: number | null = null;
  worstRatio: number | null = null;
  /** Number of elements that broke the tolerance or the non-finite pattern. */
  mismatches = 0;
  /** The first few mismatches, described. */
  readonly details: string[] = [];

  private readonly refused: string | null;

  constructor(readonly tolerance: Tolerance) {
    const problems = toleranceProblems(tolerance);
    this.refused = problems.length ? `declared tolerance refused: ${problems.join('; ')}` : null;
  }

  get ok(): boolean {
    return this.mismatches === 0;
  }

  /** Records a failure that is not about one element (a missing tensor, a wrong length). */
  fail(detail: string): void {
    this.mismatches++;
    if (this.details.length < 4) this.details.push(detail);
  }

  /**
   * Compares `got` with the float64 reference element by element:
   * `|got - ref| <= atol + rtol*|ref| + fudge*err32` for finite `ref`, where `err32` is the largest
   * `|naive - ref|` in the element's row of `rowLength` values and `naive` the naive float32
   * composition (computed only when some element exceeds `atol + rtol*|ref|`, so a passing case
   * costs nothing more; a naive value that is not finite allows nothing extra). NaN must meet NaN
   * and an infinity the same infinity, exactly. A refused tolerance fails every tensor. `allowance`,
   * one value per row, is an error the spec declares on top (f16 storage: `f16StorageErrorBound`).
   * `allowanceName` says what the allowance is, in messages. A {@link RowYardstick} in place of
   * the naive values gives `err32` per row directly.
   */
  tensor(
    name: string,
    got: unknown,
    ref: ArrayLike<number>,
    naiveValues?: NaiveValues | RowYardstick,
    rowLength = 1,
    allowance?: ArrayLike<number>,
    allowanceName = 'declared allowance',
  ): void {
    if (this.refused !== null) {
      this.fail(`${name}: ${this.refused}`);
      return;
    }
    if (!(got instanceof Float32Array) && Object.prototype.toString.call(got) !== '[object Float32Array]') {
      this.fail(`${name}: expected a Float32Array of length ${ref.length}, got ${describe(got)}`);
      return;
    }
    const values = got as Float32Array;
    if (values.length !== ref.length) {
      this.fail(`${name}: expected length ${ref.length}, got ${values.length}`);
      return;
    }
    const { atol, rtol } = this.tolerance;
    const fudge = this.tolerance.fudge ?? 0;
    let rowErrors: ArrayLike<number> | null = null;
    const yardstickName = typeof naiveValues === 'object' ? naiveValues.name : 'naive-float32 error';
    for (let index = 0; index < ref.length; index++) {
      const expected = ref[index];
      const actual = values[index];
      if (!Number.isFinite(expected)) {
        if (Object.is(actual, expected) || (Number.isNaN(expected) && Number.isNaN(actual))) continue;
        this.fail(
          `${name}[${index}]: got ${actual}, expected ${expected} (non-finite values must match exactly)`,
        );
        continue;
      }
      if (!Number.isFinite(actual)) {
        this.fail(`${name}[${index}]: got ${actual}, expected ${expected}`);
        continue;
      }
      const abs = Math.abs(actual - expected);
      const row = Math.floor(index / rowLength);
      const extra = allowance === undefined ? 0 : allowance[row];
      if (!(Number.isFinite(extra) && extra >= 0)) {
        this.fail(`${name}[${index}]: the declared extra allowance ${extra} is not a finite number >= 0`);
        continue;
      }
      let bound = atol + rtol * Math.abs(expected) + extra;
      let naiveError = 0;
      if (abs > bound && fudge > 0 && naiveValues !== undefined) {
        rowErrors ??=
          typeof naiveValues === 'object'
            ? naiveValues.rowErrors()
            : naiveRowErrors(naiveValues(), ref, rowLength);
        naiveError = rowErrors[row];
        bound += fudge * naiveError;
      }
      const ratio = abs / bound;
      if (this.worstAbs === null || abs > this.worstAbs) this.worstAbs = abs;
      if (expected !== 0) {
        const rel = abs / Math.abs(expected);
        if (this.worstRel === null || rel > this.worstRel) this.worstRel = rel;
      }
      if (this.worstRatio === null || ratio > this.worstRatio) this.worstRatio = ratio;
      if (ratio > 1) {
        this.fail(
          `${name}[${index}]: got ${actual}, expected ${expected} (|diff| ${abs.toExponential(3)} > atol ${atol} + rtol ${rtol} * |ref| + fudge ${fudge} * ${yardstickName} ${naiveError.toExponential(3)}${allowance === undefined ? '' : ` + ${allowanceName} ${extra.toExponential(3)}`})`,
        );
      }
    }
  }

  /** Bitwise equality, for determinism. */
  identical(name: string, first: Float32Array | undefined, second: Float32Array | undefined): void {
    if (first === undefined || second === undefined) {
      if (first !== second) this.fail(`${name}: present in one call and missing in the other`);
      return;
    }
    if (first.length !== second.length) {
      this.fail(`${name}: length ${first.length} then ${second.length}`);
      return;
    }
    const a = new Uint32Array(first.buffer, first.byteOffset, first.length);
    const b = new Uint32Array(second.buffer, second.byteOffset, second.length);
    for (let index = 0; index < a.length; index++) {
      if (a[index] !== b[index]) {
        this.fail(`${name}[${index}]: ${first[index]} then ${second[index]} (bits differ)`);
        return;
      }
    }
  }

  summary(): string | null {
    if (this.ok) return null;
    const more =
      this.mismatches > this.details.length ? ` (+${this.mismatches - this.details.length} more)` : '';
    return this.details.join('; ') + more;
  }
}

/**
 * The naive float32 error of each row (`rowLength` consecutive elements: an output row of Dv values,
 * a weights row of Lk, one lse): the largest `|naive - ref|` in it, skipping non-finite values (an
 * overflowing naive composition allows nothing). Per row rather than per element because the naive
 * composition and a backend round differently, so their per-element errors are independent draws
 * from the same size: measured on the `rounding/` cases, the naive error of a single element is
 * sometimes 1000 times smaller than its row's (cancellation by chance) while a correct backend's is
 * not. Every element of a row comes out of one softmax, so the row's worst is the honest yardstick;
 * rows stay separate so that an exact row borrows nothing from a badly conditioned one.
 */
export function naiveRowErrors(
  naive: ArrayLike<number> | undefined,
  ref: ArrayLike<number>,
  rowLength: number,
) {
  const rows = Math.ceil(ref.length / rowLength);
  const errors = new Float64Array(rows);
  if (naive === undefined || naive.length !== ref.length) return errors;
  for (let index = 0; index < ref.length; index++) {
    const error = Math.abs(naive[index] - ref[index]);
    const row = Math.floor(index / rowLength);
    if (Number.isFinite(error) && error > errors[row]) errors[row] = error;
  }
  return errors;
}

/** Short description of an unexpected value, for messages. */
export function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (ArrayBuffer.isView(value)) {
    const length = (value as unknown as { length?: number }).length;
    return `${value.constructor.name}(length ${length})`;
  }
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (typeof value === 'object') return Object.prototype.toString.call(value);
  return String(value);
}
