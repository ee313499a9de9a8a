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
