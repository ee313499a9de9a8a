#!/usr/bin/env node
// Builds the two kernels from rust/lib.rs with a rustc that has the wasm32-unknown-unknown standard
// library: wasm/attnkit.wasm (single thread) and wasm/attnkit-threads.wasm (atomics, shared memory).
// No cargo, no crates, no wasm-pack/wasm-bindgen: one rustc invocation each.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, realpathSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'rust', 'lib.rs');
const outDir = join(root, 'wasm');
const TARGET = 'wasm32-unknown-unknown';

/** Every rustc worth asking, in order: an explicit choice, then PATH, then the usual places. */
function candidates() {
  const list = [];
  // an explicit choice is the only candidate, so a wrong one fails loudly instead of being skipped
  if (process.env.ATTNKIT_RUSTC) return [process.env.ATTNKIT_RUSTC];
  if (process.env.RUSTC) list.push(process.env.RUSTC);
  for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir) list.push(join(dir, 'rustc'));
  list.push('/usr/bin/rustc', join(homedir(), '.cargo', 'bin', 'rustc'));
  const seen = new Set();
  const unique = [];
  for (const path of list) {
    if (!existsSync(path)) continue;
    let real;
    try {
      real = realpathSync(path);
    } catch {
      continue;
    }
    // rustup's proxies all resolve to one binary but pick different toolchains: keep them by path
    const key = real.endsWith('rustup') ? path : real;
    if (seen.has(key)) continue;
    seen.add(key);
    unique.push(path);
  }
  return unique;
}

/** Why a rustc cannot build wasm32, or null when its target libdir has libcore. */
function probe(rustc) {
  if (!existsSync(rustc)) return 'does not exist';
  let libdir;
  try {
    libdir = execFileSync(rustc, ['--print', 'target-libdir', '--target', TARGET], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
  } catch (error) {
    return `does not know ${TARGET} (${
      String(error.stderr ?? error.message)
        .trim()
        .split('\n')[0]
    })`;
  }
  if (!existsSync(libdir)) return `has no ${TARGET} standard library (${libdir} does not exist)`;
  if (!readdirSync(libdir).some((f) => f.startsWith('libcore-') && f.endsWith('.rlib')))
    return `has no ${TARGET} libcore in ${libdir}`;
  return null;
}

const tried = [];
let rustc = null;
for (const candidate of candidates()) {
  const why = probe(candidate);
  if (why === null) {
    rustc = candidate;
    break;
  }
  tried.push(`  ${candidate}: ${why}`);
}
if (rustc === null) {
  console.error(
    [
      `@attnkit/wasm: no rustc with the ${TARGET} standard library was found.`,
      tried.length ? `Tried:\n${tried.join('\n')}` : 'No rustc on PATH, in /usr/bin or in ~/.cargo/bin.',
      'Install one of:',
      '  Debian/Ubuntu: apt-get install -y rustc libstd-rust-dev-wasm32 lld',
      `  rustup:        rustup target add ${TARGET}`,
      'or point ATTNKIT_RUSTC at a rustc that has it.',
    ].join('\n'),
  );
  process.exit(1);
}

const common = [
  '--edition=2021',
  '--crate-type=cdylib',
  `--target=${TARGET}`,
  '-Copt-level=3',
  // fat LTO recompiles the bits of libcore we use with our target features: without it the
  // prebuilt libcore (no atomics) makes rust-lld refuse --shared-memory
  '-Clto=fat',
  '-Ccodegen-units=1',
  '-Cpanic=abort',
  '-Cstrip=symbols',
  '-Clink-arg=--import-memory',
];
const builds = [
  { out: 'attnkit.wasm', flags: ['-Ctarget-feature=+simd128'] },
  {
    out: 'attnkit-threads.wasm',
    flags: [
      '-Ctarget-feature=+simd128,+atomics,+bulk-memory,+mutable-globals',
      '-Clink-arg=--shared-memory',
      '-Clink-arg=--max-memory=4294967296',
      // each worker's instance gets its own stack: the loader sets this global per instance
      '-Clink-arg=--export=__stack_pointer',
    ],
  },
];
mkdirSync(outDir, { recursive: true });
const version = execFileSync(rustc, ['--version'], { encoding: 'utf8' }).trim();
for (const { out, flags } of builds) {
  execFileSync(rustc, [...common, ...flags, source, '-o', join(outDir, out)], { stdio: 'inherit' });
}
console.log(
  `@attnkit/wasm: built ${builds.map((b) => `wasm/${b.out}`).join(', ')} with ${rustc} (${version})`,
);
