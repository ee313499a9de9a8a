import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const repoRoot = resolve(packageDir, '../..');
const cli = join(packageDir, 'dist/cli.js');

function run(args: string[], cwd: string) {
  const result = spawnSync(process.execPath, [cli, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, ATTNKIT_CONFORMANCE_SEED: '' },
    // a CLI that hangs must fail its test, not the whole run
    timeout: 60_000,
  });
  const lines = result.stdout.trimEnd().split('\n');
  return { code: result.status, stdout: result.stdout, stderr: result.stderr, last: lines[lines.length - 1] };
}

describe('attnkit-conformance CLI (built)', () => {
  it('is built', () => {
    expect(existsSync(cli), 'run `pnpm build` first').toBe(true);
  });

  it('passes the reference package from the repo root and ends with "N passed, 0 failed"', () => {
    const { code, last, stdout } = run(['@attnkit/spec'], repoRoot);
    expect(last).toMatch(/^\d+ passed, 0 failed$/);
    expect(Number(last.split(' ')[0])).toBeGreaterThanOrEqual(150);
    expect(code).toBe(0);
    expect(stdout).toMatch(/backend: reference/);
    expect(stdout).toMatch(/options\/causal\s+│ pass/);
  });

  it('fails a broken backend module with exit code 1 and writes the JSON report', () => {
    const json = join(mkdtempSync(join(tmpdir(), 'attnkit-cli-')), 'report.json');
    const { code, last } = run(
      ['./test/fixtures/broken-scale.mjs', '--filter', 'options/', '--json', json, '--seed', '5'],
      packageDir,
    );
    expect(code).toBe(1);
    const match = /^(\d+) passed, (\d+) failed$/.exec(last);
    expect(match).not.toBeNull();
    expect(Number(match?.[2])).toBeGreaterThan(0);
    const report = JSON.parse(readFileSync(json, 'utf8'));
    expect(report.backend.name).toBe('broken-scale');
    expect(report.seed).toBe(5);
    expect(report.totals.failed).toBe(Number(match?.[2]));
  });

  it('uses --export and explains an export that is not a factory (exit 2)', () => {
    const bad = run(['./test/fixtures/broken-scale.mjs', '--export', 'notAFactory'], packageDir);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/export "notAFactory" .* is number, not a BackendFactory/);
    const good = run(['@attnkit/spec', '--export', 'createReferenceBackend', '--filter', 'heads/'], repoRoot);
    expect(good.code).toBe(0);
    expect(good.last).toBe('8 passed, 0 failed');
  });

  it('takes a package directory and lists cases with --list', () => {
    const dir = run(['packages/spec', '--filter', 'cross/'], repoRoot);
    expect(dir.code).toBe(0);
    expect(dir.last).toBe('6 passed, 0 failed');
    const list = run(['--list', '--filter', 'heads/'], repoRoot);
    expect(list.code).toBe(0);
    expect(list.stdout.trim().split('\n')).toHaveLength(8);
  });

  it('exits 2 on a usage error', () => {
    expect(run([], repoRoot).code).toBe(2);
    expect(run(['@attnkit/spec', '--seed', 'x'], repoRoot).code).toBe(2);
  });

  it('exits 2 for a module that cannot be found', () => {
    const missing = run(['@attnkit/no-such-backend'], repoRoot);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot load @attnkit\/no-such-backend/);
    expect(missing.stderr).toMatch(/cannot find package "@attnkit\/no-such-backend" from /);
    // Node's own message lists this CLI's internal file as the "require stack"
    expect(missing.stderr).not.toMatch(/Require stack|noop\.js|dist\/cli/);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('a backend that cannot start: the reason once, no table, exit 3', () => {
    const json = join(mkdtempSync(join(tmpdir(), 'attnkit-cli-')), 'report.json');
    const { code, last, stdout } = run(
      ['./test/fixtures/init-fails.mjs', '--filter', 'options/', '--json', json],
      packageDir,
    );
    expect(code).toBe(3);
    expect(last).toMatch(/^0 passed, \d+ failed$/);
    expect(stdout.split('no adapter (first line)').length - 1).toBe(1);
    expect(stdout).toMatch(/backend unavailable: none of the \d+ cases could run/);
    expect(stdout.trimEnd().split('\n').length).toBeLessThan(12);
    // the JSON report still has every case, each with the reason
    const report = JSON.parse(readFileSync(json, 'utf8'));
    expect(report.cases.length).toBeGreaterThan(20);
    expect(report.totals.failed).toBe(report.cases.length);
    expect(report.backend.error).toMatch(/no adapter/);
  });

  // Each of these used to end with exit code 0 and no output at all: Node leaves when nothing is
  // left to wait for, whatever promise is still pending, and CI recorded a pass.
  describe('never exits 0 without a verdict', () => {
    it('a factory whose promise never settles: exit 3, says so once, still ends with the closing line', () => {
      const { code, last, stdout, stderr } = run(
        ['./test/fixtures/factory-never-settles.mjs', '--filter', 'heads/', '--timeout', '500'],
        packageDir,
      );
      expect(code).toBe(3);
      expect(stdout + stderr).toMatch(/factory did not settle within 500 ms/);
      expect(last).toBe('0 passed, 8 failed');
    });

    it('a module whose top-level await never settles: exit 2 with the reason', () => {
      const { code, stdout, stderr } = run(
        ['./test/fixtures/tla-never-settles.mjs', '--filter', 'heads/', '--timeout', '500'],
        packageDir,
      );
      expect(code).toBe(2);
      expect(stderr).toMatch(/cannot load \.\/test\/fixtures\/tla-never-settles\.mjs: .*never settle/);
      expect(stdout).toBe('');
    });

    it('a replacement factory that never settles after a timed-out case: exit 1, every case reported', () => {
      const json = join(mkdtempSync(join(tmpdir(), 'attnkit-cli-')), 'report.json');
      const { code, last, stdout } = run(
        [
          './test/fixtures/replacement-never-settles.mjs',
          '--filter',
          'heads/',
          '--timeout',
          '500',
          '--json',
          json,
        ],
        packageDir,
      );
      expect(code).toBe(1);
      expect(last).toBe('0 passed, 8 failed');
      expect(stdout).toMatch(/did not finish within 500 ms/);
      expect(stdout).toMatch(/factory did not settle within 500 ms/);
      const report = JSON.parse(readFileSync(json, 'utf8'));
      expect(report.cases).toHaveLength(8);
    });
  });

  it('a case that blocks the thread fails as hung; a fresh process runs the rest', () => {
    const json = join(mkdtempSync(join(tmpdir(), 'attnkit-cli-')), 'report.json');
    const started = Date.now();
    const { code, last, stdout } = run(
      ['./test/fixtures/spin-sync.mjs', '--filter', 'heads/', '--timeout', '500', '--json', json],
      packageDir,
    );
    expect(code).toBe(1);
    expect(last).toBe('7 passed, 1 failed');
    expect(stdout).toMatch(/heads\/mqa-4-1\s+│ FAIL/);
    const report = JSON.parse(readFileSync(json, 'utf8'));
    const hung = report.cases.find((c: { id: string }) => c.id === 'heads/mqa-4-1');
    expect(hung.status).toBe('failed');
    expect(hung.message).toMatch(/hung: .*500 ms/);
    expect(report.cases.map((c: { id: string }) => c.id)).toContain('heads/gqa-cross-valueDim');
    expect(report.notes.join('\n')).toMatch(/restarted/);
    // killed by the watchdog, not waited out: the spin alone takes 3 s
    expect(Date.now() - started).toBeLessThan(3000 + 2500);
  });

  it('a backend process that dies in a case: the case fails as crashed, a fresh process runs the rest', () => {
    const json = join(mkdtempSync(join(tmpdir(), 'attnkit-cli-')), 'report.json');
    const { code, last, stdout } = run(
      ['./test/fixtures/crash-in-case.mjs', '--filter', 'heads/', '--timeout', '5000', '--json', json],
      packageDir,
    );
    expect(code).toBe(1);
    expect(last).toBe('7 passed, 1 failed');
    expect(stdout).toMatch(/heads\/mqa-4-1\s+│ FAIL/);
    const report = JSON.parse(readFileSync(json, 'utf8'));
    const crashed = report.cases.find((c: { id: string }) => c.id === 'heads/mqa-4-1');
    expect(crashed.message).toBe('crashed: the backend process exited with code 9 during the case');
    // not waited out: the crash is seen when it happens
    expect(crashed.timeMs).toBeLessThan(5000);
  });

  it('a backend process whose CLI is killed stops too', async () => {
    const pidFile = join(mkdtempSync(join(tmpdir(), 'attnkit-cli-')), 'pid');
    const parent = spawn(
      process.execPath,
      [cli, './test/fixtures/slow-case.mjs', '--filter', 'heads/gqa-4-2'],
      {
        cwd: packageDir,
        env: { ...process.env, ATTNKIT_FIXTURE_PID_FILE: pidFile },
        stdio: 'ignore',
      },
    );
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    try {
      await vi.waitFor(() => expect(existsSync(pidFile)).toBe(true), { timeout: 15_000, interval: 100 });
      const child = Number(readFileSync(pidFile, 'utf8'));
      expect(child).not.toBe(parent.pid);
      parent.kill('SIGKILL');
      // the case would go on for 20 s; an orphan must notice its CLI is gone and stop
      await vi.waitFor(() => expect(alive(child)).toBe(false), { timeout: 5_000, interval: 100 });
    } finally {
      parent.kill('SIGKILL');
    }
  });
});
