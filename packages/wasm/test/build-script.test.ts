import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('../scripts/build-wasm.mjs', import.meta.url));

function build(rustc: string) {
  return spawnSync(process.execPath, [script], {
    env: { ...process.env, ATTNKIT_RUSTC: rustc },
    encoding: 'utf8',
  });
}

describe('scripts/build-wasm.mjs without a usable rustc', () => {
  it('stops with the install instruction when the rustc does not exist', () => {
    const run = build('/nonexistent/rustc');
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('no rustc with the wasm32-unknown-unknown standard library');
    expect(run.stderr).toContain('/nonexistent/rustc: does not exist');
    expect(run.stderr).toContain('apt-get install -y rustc libstd-rust-dev-wasm32 lld');
    expect(run.stderr).toContain('rustup target add wasm32-unknown-unknown');
  });

  it('rejects a rustc whose wasm32 library directory has no libcore (rustup without the target)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'attnkit-rustc-'));
    const fake = join(dir, 'rustc');
    // answers --print target-libdir with an empty directory, as rustup does before `target add`
    writeFileSync(fake, `#!/bin/sh\necho ${dir}\n`);
    chmodSync(fake, 0o755);
    const run = build(fake);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`${fake}: has no wasm32-unknown-unknown libcore in ${dir}`);
  });
});
