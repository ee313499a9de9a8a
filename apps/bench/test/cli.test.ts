import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { BenchResults } from '../src/results.js';

const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');

describe('command line (built dist/cli.js)', () => {
  it('--help documents every filter', () => {
    const help = execFileSync(process.execPath, [cli, '--', '--help'], { encoding: 'utf8' });
    for (const flag of [
      '--backends',
      '--sizes',
      '--heads',
      '--dims',
      '--causal',
      '--mode',
      '--budget',
      '--output',
      '--quick',
    ])
      expect(help).toContain(flag);
  });

  it('rejects an unknown backend naming it', () => {
    expect(() =>
      execFileSync(process.execPath, [cli, '--backends', 'nope', '--no-browser'], {
        encoding: 'utf8',
        stdio: 'pipe',
      }),
    ).toThrow(/unknown backend "nope"/);
  });

  it('a filtered run prints the tables and writes JSON, HTML and SVG', () => {
    const out = mkdtempSync(path.join(os.tmpdir(), 'attnkit-bench-test-'));
    const stdout = execFileSync(
      process.execPath,
      [
        cli,
        '--backends',
        'cpu,naive-js',
        '--sizes',
        '64,128',
        '--heads',
        'h1',
        '--dims',
        '16',
        '--causal',
        'true',
        '--mode',
        'prefill',
        '--no-browser',
        '-o',
        out,
        '--name',
        't',
      ],
      { encoding: 'utf8' },
    );
    expect(stdout).toContain('prefill-causal-d16-h1: median ms');
    expect(stdout).toContain('vs naive-js');
    const results = JSON.parse(readFileSync(path.join(out, 't.json'), 'utf8')) as BenchResults;
    expect(results.subjects.map((s) => s.id)).toEqual(['cpu', 'naive-js']);
    expect(results.machine.cores).toBeGreaterThan(0);
    for (const s of results.subjects) {
      expect(s.status).toBe('ok');
      expect(s.rows).toHaveLength(2);
      for (const r of s.rows) {
        expect(r.status).toBe('ok');
        expect(r.check?.pass).toBe(true);
        expect(r.memory?.rssPeakBytes).toBeGreaterThan(0);
      }
    }
    expect(existsSync(path.join(out, 't.html'))).toBe(true);
    expect(readFileSync(path.join(out, 't-latency.svg'), 'utf8')).toContain('<svg');
  });

  it('a subject that cannot run is reported unavailable with the reason, not dropped', () => {
    const out = mkdtempSync(path.join(os.tmpdir(), 'attnkit-bench-test-'));
    const stdout = execFileSync(
      process.execPath,
      [
        cli,
        '--backends',
        'webgl',
        '--sizes',
        '64',
        '--heads',
        'h1',
        '--dims',
        '16',
        '--mode',
        'decode',
        '-o',
        out,
        '--name',
        'u',
        '--no-html',
      ],
      { encoding: 'utf8', env: { ...process.env, CHROMIUM_PATH: '/nonexistent/chromium' } },
    );
    expect(stdout).toContain('unavailable: webgl: no Chromium at /nonexistent/chromium');
    const results = JSON.parse(readFileSync(path.join(out, 'u.json'), 'utf8')) as BenchResults;
    expect(results.subjects).toHaveLength(1);
    expect(results.subjects[0]).toMatchObject({ id: 'webgl', status: 'unavailable' });
  });
});
