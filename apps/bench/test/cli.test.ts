import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  COMMITTED_OUTPUT,
  checkAppendFile,
  DEFAULT_OUTPUT,
  outputPlan,
  REPO_ROOT,
  resolveUserPath,
  userCwd,
} from '../src/paths.js';
import type { BenchResults } from '../src/results.js';

const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');
const wrapper = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'scripts',
  'bench.mjs',
);

/** Flags of the smallest real run. */
const TINY = [
  '--backends',
  'cpu',
  '--sizes',
  '32',
  '--heads',
  'h1',
  '--dims',
  '16',
  '--causal',
  'true',
  '--mode',
  'decode',
  '--no-browser',
  '--no-html',
];

describe('where the bench reads and writes', () => {
  it('user paths resolve against INIT_CWD (where pnpm was typed), else the cwd', () => {
    expect(userCwd({ INIT_CWD: '/home/me/attnkit' }, '/repo/apps/bench')).toBe('/home/me/attnkit');
    expect(userCwd({}, '/repo/apps/bench')).toBe('/repo/apps/bench');
    expect(resolveUserPath('benchmarks/results/x.json', '/r')).toBe('/r/benchmarks/results/x.json');
    expect(resolveUserPath('/abs/x.json', '/r')).toBe('/abs/x.json');
  });

  it('a run writes to the ignored bench-results/ by default; the committed results only on request', () => {
    expect(DEFAULT_OUTPUT).toBe(path.join(REPO_ROOT, 'bench-results'));
    expect(outputPlan({})).toEqual({ dir: DEFAULT_OUTPUT, name: 'bench-full' });
    expect(outputPlan({ quick: true })).toEqual({ dir: DEFAULT_OUTPUT, name: 'bench-quick' });
    expect(outputPlan({ output: './dir' }, '/home/me')).toEqual({ dir: '/home/me/dir', name: 'bench-full' });
    expect(outputPlan({ updateCommitted: true })).toEqual({ dir: COMMITTED_OUTPUT, name: 'bench-full' });
    expect(() => outputPlan({ updateCommitted: true, quick: true })).toThrow(/without --quick/);
    expect(() => outputPlan({ updateCommitted: true, output: 'x' })).toThrow(/--output/);
    // bench-results/ is ignored by git, so a user's run leaves the tree clean
    const ignored = execFileSync('git', ['check-ignore', 'bench-results/bench-full.json'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });
    expect(ignored.trim()).toBe('bench-results/bench-full.json');
  });

  it('--append is checked before the run: missing, not JSON, not a bench result', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'attnkit-bench-append-'));
    expect(() => checkAppendFile('nope.json', dir)).toThrow(`no such file ${path.join(dir, 'nope.json')}`);
    writeFileSync(path.join(dir, 'bad.json'), '{');
    expect(() => checkAppendFile('bad.json', dir)).toThrow(/is not JSON/);
    writeFileSync(path.join(dir, 'other.json'), '{"a":1}');
    expect(() => checkAppendFile('other.json', dir)).toThrow(/not a bench result/);
    expect(checkAppendFile('benchmarks/results/bench-full.json', REPO_ROOT)).toBe(
      path.join(COMMITTED_OUTPUT, 'bench-full.json'),
    );
  });

  it('the CLI fails fast on a missing --append file, before any subject runs', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'attnkit-bench-append-'));
    let stderr = '';
    let stdout = '';
    try {
      execFileSync(process.execPath, [cli, ...TINY, '--append', 'missing.json', '-o', dir], {
        encoding: 'utf8',
        stdio: 'pipe',
        env: { ...process.env, INIT_CWD: dir },
      });
    } catch (error) {
      ({ stderr, stdout } = error as { stderr: string; stdout: string });
    }
    expect(stderr).toContain(`--append: no such file ${path.join(dir, 'missing.json')}`);
    // the banner is printed when the run starts: it never did
    expect(stdout).not.toContain('attnkit bench');
  });

  it('--output and --append are relative to INIT_CWD, the directory pnpm was run from', () => {
    const user = mkdtempSync(path.join(os.tmpdir(), 'attnkit-bench-user-'));
    execFileSync(process.execPath, [cli, ...TINY, '-o', 'first', '--name', 'a'], {
      encoding: 'utf8',
      cwd: path.join(REPO_ROOT, 'apps', 'bench'),
      env: { ...process.env, INIT_CWD: user },
    });
    expect(existsSync(path.join(user, 'first', 'a.json'))).toBe(true);
    mkdirSync(path.join(user, 'second'));
    execFileSync(
      process.execPath,
      [
        cli,
        ...TINY.map((a) => (a === 'cpu' ? 'naive-js' : a)),
        '--append',
        'first/a.json',
        '-o',
        'second',
        '--name',
        'b',
      ],
      {
        encoding: 'utf8',
        cwd: path.join(REPO_ROOT, 'apps', 'bench'),
        env: { ...process.env, INIT_CWD: user },
      },
    );
    const merged = JSON.parse(readFileSync(path.join(user, 'second', 'b.json'), 'utf8')) as BenchResults;
    expect(merged.subjects.map((s) => s.id)).toEqual(['cpu', 'naive-js']);
    expect(existsSync(path.join(REPO_ROOT, 'apps', 'bench', 'first'))).toBe(false);
  });

  it('pnpm bench --help (scripts/bench.mjs) prints the help without building', () => {
    const result = spawnSync(process.execPath, [wrapper, '--help'], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('--update-committed');
    expect(result.stderr).not.toContain('building');
  });
});

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

  it('prints the tables of every series the grid ran, not only the first', () => {
    const out = mkdtempSync(path.join(os.tmpdir(), 'attnkit-bench-test-'));
    const stdout = execFileSync(
      process.execPath,
      [
        cli,
        ...['--backends', 'cpu,naive-js', '--sizes', '64', '--heads', 'h1,h8', '--dims', '16'],
        ...['--causal', 'true', '--mode', 'prefill', '--no-browser', '--no-html', '-o', out, '--name', 's'],
      ],
      { encoding: 'utf8' },
    );
    const h1 = stdout.indexOf('prefill-causal-d16-h1: median ms');
    const h8 = stdout.indexOf('prefill-causal-d16-h8: median ms');
    expect(h1).toBeGreaterThanOrEqual(0);
    expect(h8).toBeGreaterThan(h1);
    expect(stdout).toContain('prefill-causal-d16-h8: ratio');
  });

  it('--passes 2 runs every subject twice, keeps the first order in the report and says so', () => {
    const out = mkdtempSync(path.join(os.tmpdir(), 'attnkit-bench-test-'));
    const args = ['--backends', 'cpu,naive-js', '--sizes', '64', '--heads', 'h1', '--dims', '16'];
    const stdout = execFileSync(
      process.execPath,
      [
        cli,
        ...args,
        '--causal',
        'true',
        '--mode',
        'prefill',
        '--no-browser',
        '--passes',
        '2',
        '-o',
        out,
        '--name',
        'p',
      ],
      { encoding: 'utf8' },
    );
    expect(stdout).toContain('2 passes, the subject order reversed every other pass');
    // the second pass runs the subjects in reverse (the non-TTY progress lines say which ran when)
    expect(stdout.indexOf('pass 2: naive-js')).toBeLessThan(stdout.indexOf('pass 2: cpu'));
    expect(stdout.indexOf('pass 1: cpu')).toBeLessThan(stdout.indexOf('pass 1: naive-js'));
    const results = JSON.parse(readFileSync(path.join(out, 'p.json'), 'utf8')) as BenchResults;
    expect(results.passes).toBe(2);
    expect(results.subjects.map((s) => s.id)).toEqual(['cpu', 'naive-js']);
    for (const s of results.subjects) expect(s.rows.map((r) => r.status)).toEqual(['ok']);
    // the ratio pass by pass: cpu against naive-js, one ratio from each pass
    expect(stdout).toContain('ratio per pass: median (range, passes with attnkit at least as fast)');
    const spread = results.ratioSpread?.filter((s) => s.backend === 'cpu' && s.family === 'naive-js');
    expect(spread?.map((s) => [s.series, s.n, s.perPass.length])).toEqual([['prefill-causal-d16-h1', 64, 2]]);
    for (const r of spread?.[0].perPass ?? []) expect(r).toBeGreaterThan(0);
    expect(() =>
      execFileSync(process.execPath, [cli, ...args, '--no-browser', '--passes', '9'], {
        encoding: 'utf8',
        stdio: 'pipe',
      }),
    ).toThrow(/expected 1 to 8 passes/);
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
