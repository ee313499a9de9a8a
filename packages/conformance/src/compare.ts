import type { Tolerance } from '@attnkit/spec';

/** Running worst errors of one case over every tensor it compared. */
export class Comparison {
  worstAbs: number | null = null;
  worstRel: number | null = null;
  worstRatio: number | null = null;
  /** Number of elements that broke the tolerance or the non-finite pattern. */
  mismatches = 0;
  /** The first few mismatches, described. */
  readonly details: string[] = [];

  constructor(readonly tolerance: Tolerance) {}

  get ok(): boolean {
    return this.mismatches === 0;
  }

  /** Records a failure that is not about one element (a missing tensor, a wrong length). */
  fail(detail: string): void {
    this.mismatches++;
    if (this.details.length < 4) this.details.push(detail);
  }

  /**
   * Compares `got` with the float64 reference element by element: `|got - ref| <= atol + rtol*|ref|`
   * for finite `ref`; NaN must meet NaN and an infinity the same infinity, exactly.
   */
  tensor(name: string, got: unknown, ref: ArrayLike<number>): void {
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
      const ratio = abs / (atol + rtol * Math.abs(expected));
      if (this.worstAbs === null || abs > this.worstAbs) this.worstAbs = abs;
      if (expected !== 0) {
        const rel = abs / Math.abs(expected);
        if (this.worstRel === null || rel > this.worstRel) this.worstRel = rel;
      }
      if (this.worstRatio === null || ratio > this.worstRatio) this.worstRatio = ratio;
      if (ratio > 1) {
        this.fail(
          `${name}[${index}]: got ${actual}, expected ${expected} (|diff| ${abs.toExponential(3)} > atol ${atol} + rtol ${rtol} * |ref|)`,
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
