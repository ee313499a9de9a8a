import { runConformance } from '@attnkit/conformance';
import createMyBackend from '@attnkit/cpu'; // your zero-argument BackendFactory

const report = await runConformance(createMyBackend, { seed: 42, filter: 'options/' });
console.log(report.totals); // { cases, passed, failed, omitted, reduced }
console.log(report.cases[0]); // { id, group, title, status, expectation, note, reduced, worstAbsError, worstRelError, errorRatio, timeMs, message }
