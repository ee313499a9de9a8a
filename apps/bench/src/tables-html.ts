import {
  anyCrossEnvironment,
  CROSS_ENVIRONMENT_MARK,
  CROSS_ENVIRONMENT_NOTE,
  cellText,
  formatMs,
  ratioCellText,
  ratioTable,
  rowAt,
  seriesSizes,
} from './analysis.js';
import { spreadText } from './pass-spread.js';
import type { BenchResults } from './results.js';
import { ceilingsLine, formatPercent, formatRate, rooflineRows } from './roofline.js';

/** Escapes text for HTML. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The ratio table of one series as HTML. */
export function ratioTableHtml(results: BenchResults, series: string): string {
  const { families, rows } = ratioTable(results, series);
  if (rows.length === 0 || families.length === 0)
    return '<p>No attnkit backend or peer result in this series.</p>';
  const head = `<tr><th>N</th><th>attnkit backend</th><th>ms</th>${families.map((f) => `<th>vs ${escapeHtml(f)}</th>`).join('')}</tr>`;
  const body = rows
    .map((r) => {
      const cells = families
        .map((f) => {
          const c = r.cells[f];
          if (c.ratio === null) return `<td class="na">${escapeHtml(c.note ?? '')}</td>`;
          const cls = c.ratio >= 1 ? 'win' : 'lose';
          const spread = spreadText(results, { series, n: r.n, backend: r.backend, family: f });
          const across =
            c.peerEnvironment === undefined
              ? ''
              : `${CROSS_ENVIRONMENT_MARK} peer in the ${c.peerEnvironment}, not in this backend's process`;
          const title = [c.peerVariant ?? '', spread === '' ? '' : `per pass: ${spread}`, across]
            .filter((t) => t !== '')
            .join('; ');
          return `<td class="${cls}" title="${escapeHtml(title)}">${escapeHtml(ratioCellText(c))}</td>`;
        })
        .join('');
      return `<tr><td>${r.n}</td><td>${escapeHtml(r.backend)}</td><td>${r.backendMs === null ? '' : formatMs(r.backendMs)}</td>${cells}</tr>`;
    })
    .join('\n');
  const note = anyCrossEnvironment(rows) ? `<p class="note">${escapeHtml(CROSS_ENVIRONMENT_NOTE)}</p>` : '';
  return `<table class="ratio"><thead>${head}</thead><tbody>${body}</tbody></table>${note}`;
}

/** The latency table of one series as HTML. */
export function latencyTableHtml(results: BenchResults, series: string): string {
  const sizes = seriesSizes(results, series);
  const subjects = results.subjects.filter((s) => s.status === 'ok');
  const head = `<tr><th>N</th>${subjects.map((s) => `<th>${escapeHtml(s.id)}</th>`).join('')}</tr>`;
  const body = sizes
    .map((n) => {
      const cells = subjects
        .map((s) => {
          const row = rowAt(s, series, n);
          const title =
            row?.reason ??
            (row?.timing
              ? `p10 ${formatMs(row.timing.p10)} / p90 ${formatMs(row.timing.p90)} ms, ${row.timing.reps} reps`
              : '');
          return `<td title="${escapeHtml(title)}">${escapeHtml(cellText(row))}</td>`;
        })
        .join('');
      return `<tr><td>${n}</td>${cells}</tr>`;
    })
    .join('\n');
  return `<table class="latency"><thead>${head}</thead><tbody>${body}</tbody></table>`;
}

/** Every subject with its status, engine, budget stops, errors and wrong results. */
export function subjectsHtml(results: BenchResults): string {
  const rows = results.subjects
    .map((s) => {
      // each line escaped on its own and joined with real line breaks (escaping the joined text
      // printed a literal "<br>")
      const stops = Object.entries(s.stopped)
        .map(([series, stop]) => escapeHtml(`${series}: stopped at N=${stop.n} (${stop.reason})`))
        .join('<br>');
      const errors = s.rows.filter((r) => r.status === 'error');
      const wrong = s.rows.filter((r) => r.check != null && !r.check.pass);
      const status = s.status === 'ok' ? 'ok' : `unavailable: ${s.reason ?? ''}`;
      const errorText = errors
        .slice(0, 4)
        .map((r) => escapeHtml(`${r.workload.id}: ${r.reason ?? ''}`))
        .join('<br>');
      return `<tr><td>${escapeHtml(s.id)}</td><td>${s.kind}</td><td>${escapeHtml(s.environment)}</td><td>${escapeHtml(status)}</td><td>${escapeHtml(s.info?.engine ?? '')}</td><td>${stops}</td><td>${errors.length}${errors.length ? `<br><small>${errorText}</small>` : ''}</td><td>${wrong.length}</td></tr>`;
    })
    .join('\n');
  return `<table><thead><tr><th>subject</th><th>kind</th><th>where</th><th>status</th><th>engine</th><th>budget stops</th><th>errors</th><th>wrong</th></tr></thead><tbody>${rows}</tbody></table>`;
}

/** Every CPU result of one series against the machine's ceilings, as HTML. */
export function rooflineTableHtml(results: BenchResults, series: string): string {
  const rows = rooflineRows(results, series);
  if (rows.length === 0) return `<p>${escapeHtml(ceilingsLine(results))}; no CPU result in this series.</p>`;
  const head =
    '<tr><th>subject</th><th>N</th><th>ms</th><th>threads</th><th>useful GFLOP/s</th><th>% of SIMD128 ceiling x threads</th><th>GB/s (least traffic)</th><th>% of copy bandwidth</th></tr>';
  const body = rows
    .map(
      (r) =>
        `<tr><td>${escapeHtml(r.subject)}</td><td>${r.n}</td><td>${formatMs(r.ms)}</td><td>${r.threads}</td><td>${formatRate(r.gflops)}</td><td>${formatPercent(r.simdPercent)}</td><td>${formatRate(r.gbps)}</td><td>${formatPercent(r.copyPercent)}</td></tr>`,
    )
    .join('\n');
  return `<p class="meta">${escapeHtml(ceilingsLine(results))}.</p><table class="roofline"><thead>${head}</thead><tbody>${body}</tbody></table>`;
}
