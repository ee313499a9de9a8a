import { describe, expect, it } from 'vitest';
import { columnWidthsFor, FULL_COLUMN_WIDTHS } from '../src/format.js';

const total = (widths: readonly number[]) =>
  widths.reduce((sum, width) => sum + width, 0) + widths.length + 1;

describe('the CLI table fits the terminal', () => {
  it('keeps the full widths without a terminal (a log or a pipe): 158 characters', () => {
    expect(columnWidthsFor(undefined)).toEqual(FULL_COLUMN_WIDTHS);
    expect(total(FULL_COLUMN_WIDTHS)).toBe(158);
  });

  it('fits a 120-column terminal exactly by shrinking the note column (60 -> 22)', () => {
    expect(columnWidthsFor(120)).toEqual([44, 16, 11, 11, 9, 22]);
    expect(total(columnWidthsFor(120))).toBe(120);
  });

  it('at 100 columns shrinks the note to its floor (16), then the case column (44 -> 30)', () => {
    // 158 - 100 = 58 too wide: 44 from the note, 14 from the case column
    expect(columnWidthsFor(100)).toEqual([30, 16, 11, 11, 9, 16]);
    expect(total(columnWidthsFor(100))).toBe(100);
  });

  it('never goes below the floors, and a wide terminal keeps the full widths', () => {
    expect(columnWidthsFor(20)).toEqual([24, 16, 11, 11, 9, 16]);
    expect(columnWidthsFor(300)).toEqual(FULL_COLUMN_WIDTHS);
  });
});
