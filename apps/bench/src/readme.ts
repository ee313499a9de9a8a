/**
 * Rewrites the results section of benchmarks/README.md from a result JSON:
 * `node apps/bench/dist/readme.js [benchmarks/results/bench-full.json] [benchmarks/README.md]`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HEADLINE_SERIES } from '@attnkit/benchmarks';
import { seriesIds } from './analysis.js';
import { spreadTableMarkdown } from './pass-spread.js';
import type { BenchResults } from './results.js';
import { latencyTableMarkdown, ratioTableMarkdown } from './table.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const jsonPath = process.argv[2] ?? path.join(root, 'benchmarks/results/bench-full.json');
const readmePath = process.argv[3] ?? path.join(root, 'benchmarks/README.md');
const results = JSON.parse(readFileSync(jsonPath, 'utf8')) as BenchResults;

/** The series shown in the README besides the headline: GQA decoding, and GQA prefill at D = 128. */
const EXTRA = ['decode-causal-d128-gqa', 'prefill-causal-d128-gqa'];

const m = results.machine;
const parts: string[] = [
  `Run of ${results.startedAt.slice(0, 16).replace('T', ' ')} UTC on ${m.cpu}, ${m.cores} logical cores (shared with other work: noisy), ` +
    `${(m.memoryBytes / 2 ** 30).toFixed(0)} GiB, Node ${m.node ?? 'n/a'}; browser: ${m.browser ?? 'not run'}; ` +
    `WebGPU adapter: ${m.gpuAdapter ?? 'none'} (a software rasteriser here: GPU numbers are for correctness, not speed). ` +
    `Full data: [results/bench-full.json](results/bench-full.json), report: \`results/bench-full.html\` (written by the run; not committed: 2 MB).`,
];
const available = seriesIds(results);
for (const series of [HEADLINE_SERIES, ...EXTRA].filter((s) => available.includes(s))) {
  parts.push(
    `### ${series}: ratio (peer ms / attnkit ms; above 1 = attnkit faster)`,
    ratioTableMarkdown(results, series),
  );
  const spread = spreadTableMarkdown(results, series);
  if (spread !== null) parts.push(spread);
  parts.push(
    `### ${series}: median ms ("budget": stopped by the time budget)`,
    latencyTableMarkdown(results, series),
  );
}
const unavailable = results.subjects.filter((s) => s.status !== 'ok');
if (unavailable.length > 0)
  parts.push('Unavailable here:', unavailable.map((s) => `- \`${s.id}\`: ${s.reason ?? ''}`).join('\n'));
const stops = results.subjects
  .filter((s) => s.stopped[HEADLINE_SERIES] !== undefined)
  .map((s) => `- \`${s.id}\`: N = ${s.stopped[HEADLINE_SERIES].n}: ${s.stopped[HEADLINE_SERIES].reason}`);
if (stops.length > 0) parts.push(`Where each subject stopped in ${HEADLINE_SERIES}:`, stops.join('\n'));

const readme = readFileSync(readmePath, 'utf8');
const start = '<!-- results:start -->';
const end = '<!-- results:end -->';
const i = readme.indexOf(start);
const j = readme.indexOf(end);
if (i < 0 || j < i) throw new Error(`${readmePath} has no ${start} ... ${end} section`);
writeFileSync(readmePath, `${readme.slice(0, i + start.length)}\n${parts.join('\n\n')}\n${readme.slice(j)}`);
console.log(`updated ${readmePath} from ${jsonPath}`);
