import type { RunOptions, SubjectReport, Workload } from '@attnkit/benchmarks';

declare global {
  interface Window {
    /** The bench page's entry point (web/main.ts): runs subjects in the page. */
    runBench(request: { subjects: string[]; series: Workload[][]; options: RunOptions }): Promise<{
      reports: SubjectReport[];
      userAgent: string;
      adapter: string | null;
    }>;
    /** Set by the CLI (playwright exposeFunction) to follow progress. */
    __benchProgress?: (subject: string, workload: string) => void;
    __benchReady?: boolean;
  }
}
