import type { CaseResult, ConformanceReport } from './types.js';

/** The closing line of every report: `N passed, M failed`. */
export function summaryLine(report: ConformanceReport): string {
  return `${report.totals.passed} passed, ${report.totals.failed} failed`;
}

function number(value: number | null): string {
  return value === null ? '-' : value === 0 ? '0' : value.toExponential(2);
}

/** One row of the text table: case, result, worst abs error, worst rel error, ms, note or message. */
export function caseRow(result: CaseResult): string[] {
  const passed =
    result.expectation === 'reject-unsupported'
      ? 'pass (rejects)'
      : result.reduced
        ? 'pass (reduced)'
        : 'pass';
  const status = result.status === 'passed' ? passed : result.status === 'failed' ? 'FAIL' : 'omitted';
  const rejected = result.expectation === 'reject-unsupported' ? result.message : null;
  const detail = result.status === 'failed' ? (result.message ?? '') : (result.note ?? rejected ?? '');
  return [
    result.id,
    status,
    number(result.worstAbsError),
    number(result.worstRelError),
    result.timeMs.toFixed(1),
    detail,
  ];
}

/**
 * Plain-text header and footer around the table (the CLI draws the table itself): backend, engine,
 * tolerance, seed, reduced and omitted counts, and the closing `N passed, M failed` line.
 */
export function formatReport(report: ConformanceReport): { header: string[]; footer: string[] } {
  const tolerance = report.tolerance
    ? `atol ${report.tolerance.atol}, rtol ${report.tolerance.rtol}, fudge ${report.tolerance.fudge ?? 0}`
    : 'unknown';
  const header = [
    `backend: ${report.backend.name} (${report.backend.engine})`,
    `tolerance: ${tolerance}; seed: ${report.seed}${report.options.maxWork === null ? '' : `; maxWork: ${report.options.maxWork}`}`,
  ];
  if (report.backend.error) header.push(`backend error: ${report.backend.error}`);
  const footer: string[] = [];
  for (const note of report.notes) footer.push(`note: ${note}`);
  const { reduced, omitted } = report.totals;
  if (report.totals.failed > 0)
    footer.push(
      `failed cases are seeded; rerun with --seed ${report.seed} (or ATTNKIT_CONFORMANCE_SEED=${report.seed})`,
    );
  const rejections = report.cases.filter(
    (result) => result.expectation === 'reject-unsupported' && !result.id.startsWith('limits/'),
  ).length;
  if (rejections > 0) {
    footer.push(
      `${rejections} cases need a feature or size the backend does not declare: each checked that it rejects "unsupported"`,
    );
  }
  if (reduced > 0 || omitted > 0)
    footer.push(`${reduced} reduced, ${omitted} omitted (reasons in the table)`);
  footer.push(summaryLine(report));
  return { header, footer };
}

/** Widths of the table's columns at full size: case, result, worst abs, worst rel, ms, note. */
export const FULL_COLUMN_WIDTHS: readonly number[] = [44, 16, 11, 11, 9, 60];

/**
 * Column widths that fit a terminal of `columns` characters (the table draws one border character
 * before each column and one after the last). The note column shrinks first (to 16), then the case
 * column (to 24); text that no longer fits wraps. `undefined` (not a terminal: a log, a pipe) keeps
 * the full widths, as does the JSON report, which never truncates anything.
 */
export function columnWidthsFor(columns: number | undefined): number[] {
  const widths = [...FULL_COLUMN_WIDTHS];
  if (columns === undefined || !Number.isFinite(columns) || columns <= 0) return widths;
  const borders = widths.length + 1;
  let excess = widths.reduce((sum, width) => sum + width, 0) + borders - columns;
  for (const [column, floor] of [
    [5, 16],
    [0, 24],
  ] as const) {
    if (excess <= 0) break;
    const take = Math.min(excess, widths[column] - floor);
    widths[column] -= take;
    excess -= take;
  }
  return widths;
}
