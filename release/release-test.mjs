#!/usr/bin/env node
// Release test: proves that what `pnpm release` would publish installs and works outside the workspace.
//
//   1. builds every publishable package in the workspace (turbo; cached when nothing changed),
//   2. copies the repository (tracked files + each package's built `files`) to a temp dir, where it
//      enters changesets pre mode with a per-run tag, adds a changeset, runs `changeset version` and
//      `changeset publish` -- the working tree is never modified,
//   3. publishes to a throwaway Verdaccio on 127.0.0.1 (storage in the temp dir; only non-@attnkit
//      packages are proxied to the public registry),
//   4. in a scratch project outside the workspace installs @attnkit/cpu, @attnkit/wasm and
//      @attnkit/conformance from it, runs attention from a plain Node ESM script, runs
//      `npx attnkit-conformance @attnkit/wasm`, bundles a tiny page with Vite and runs it in headless
//      Chromium.
// Verdaccio, the static server and the browser are stopped and the temp dir removed whatever happens
// (also on SIGINT/SIGTERM). `--keep` keeps the temp dir for debugging; `--skip-build` uses the dist/
// already built.
//
// Plain Node ESM, no build step. Its own dependencies live in release/node_modules (npm ci), never in
// the workspace; they are installed on first run.

import { spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromiumFlags, chromiumPath } from '../scripts/chromium.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '..');
const ARGS = new Set(process.argv.slice(2));
const KEEP = ARGS.has('--keep');
const SKIP_BUILD = ARGS.has('--skip-build');
/** Where Verdaccio proxies everything that is not @attnkit/* (vite, fast-check, commander...). */
const UPLINK = process.env.ATTNKIT_RELEASE_UPLINK ?? 'https://registry.npmjs.org/';
/** What the scratch project installs and checks (a user's path is backend + conformance). */
const FULL_BACKENDS = ['@attnkit/cpu', '@attnkit/wasm'];
// For working on the harness while packages are missing: ATTNKIT_RELEASE_ONLY=@attnkit/spec publishes
// only those and checks them as backends. Such a run says PARTIAL and never counts as the release test.
const ONLY = process.env.ATTNKIT_RELEASE_ONLY?.split(',').filter(Boolean) ?? null;
const BACKENDS =
  ONLY === null ? FULL_BACKENDS : ['@attnkit/spec', ...FULL_BACKENDS].filter((name) => ONLY.includes(name));
const WITH_CONFORMANCE = ONLY === null || ONLY.includes('@attnkit/conformance');
const CONFORMANCE_TARGET = BACKENDS.at(-1);
/** Installed from the registry (through the uplink) to bundle the page; pinned so runs are comparable. */
const VITE_VERSION = '7.3.8';
/** The slice of the conformance suite the bundled page runs (the CLI runs all of it in Node). */
const BROWSER_CONFORMANCE_FILTER = 'options/';
const CHROMIUM = chromiumPath;
const CHROMIUM_FLAGS = [...chromiumFlags, '--enable-unsafe-webgpu'];

// ---------------------------------------------------------------------------------------------------
// Cleanup: every resource registers an async closer; they run in reverse order exactly once.

const closers = [];
let cleaning = null;
function onCleanup(name, fn) {
  closers.push({ name, fn });
}
function cleanup() {
  if (cleaning === null) {
    cleaning = (async () => {
      // take the list: a child that exits during cleanup unregisters itself from `closers`
      for (const { name, fn } of closers.splice(0).reverse()) {
        try {
          await fn();
        } catch (error) {
          console.error(`release-test: cleanup of ${name} failed: ${error?.message ?? error}`);
        }
      }
    })();
  }
  return cleaning;
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    console.error(`release-test: ${signal}, cleaning up`);
    cleanup().finally(() => process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1)));
  });
}

// ---------------------------------------------------------------------------------------------------
// Small helpers.

const started = Date.now();
function step(message) {
  const seconds = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
  console.log(`[${seconds}s] ${message}`);
}

class StepError extends Error {}
function fail(message) {
  throw new StepError(message);
}

function tail(text, lines = 60) {
  const all = text.trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

/**
 * Runs a command to completion, output captured. Children run in their own process group so a timeout
 * or a signal takes the whole tree down (npx, pnpm and npm spawn grandchildren).
 */
function run(command, args, { cwd, env = process.env, timeoutMs = 300_000, allowFailure = false } = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
    });
    child.stderr.on('data', (chunk) => {
      output += chunk;
    });
    const killTree = () => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const closer = { name: `${command} ${args.join(' ')}`, fn: killTree };
    closers.push(closer);
    const timer = setTimeout(() => {
      output += `\n[release-test: killed after ${timeoutMs / 1000}s]`;
      killTree();
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new StepError(`cannot start ${command}: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const index = closers.indexOf(closer);
      if (index >= 0) closers.splice(index, 1);
      const result = { code: code ?? 128, signal, output };
      if (code !== 0 && !allowFailure) {
        reject(
          new StepError(
            `${command} ${args.join(' ')} (in ${cwd}) exited with ${code ?? signal}:\n${tail(output)}`,
          ),
        );
      } else {
        resolvePromise(result);
      }
    });
  });
}

function freePort() {
  return new Promise((resolvePromise, reject) => {
    const server = createNetServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePromise(port));
    });
  });
}

async function waitFor(what, check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  fail(`timed out after ${timeoutMs / 1000}s waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'));

// ---------------------------------------------------------------------------------------------------
// The harness's own dependencies (Verdaccio, playwright-core): installed into release/node_modules.

async function ensureHarnessDependencies() {
  const lock = join(HERE, 'package-lock.json');
  const installed = join(HERE, 'node_modules', '.package-lock.json');
  const fresh =
    existsSync(installed) &&
    JSON.stringify(readJson(installed).packages) ===
      JSON.stringify(
        Object.fromEntries(Object.entries(readJson(lock).packages).filter(([key]) => key !== '')),
      );
  if (fresh) return;
  step('installing the harness (npm ci in release/)');
  await run('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: HERE, timeoutMs: 600_000 });
}

// ---------------------------------------------------------------------------------------------------
// The packages to publish: every non-private package under packages/.

function publishablePackages() {
  const root = join(REPO, 'packages');
  const found = [];
  for (const name of readdirSync(root).sort()) {
    const manifestPath = join(root, name, 'package.json');
    if (!existsSync(manifestPath)) continue;
    const manifest = readJson(manifestPath);
    if (manifest.private) continue;
    if (ONLY !== null && !ONLY.includes(manifest.name)) continue;
    found.push({ dir: join('packages', name), manifest });
  }
  return found;
}

function checkManifest({ dir, manifest }) {
  const problems = [];
  const need = ['name', 'version', 'license', 'repository', 'exports', 'files', 'engines'];
  for (const field of need) if (manifest[field] === undefined) problems.push(`no "${field}"`);
  if (manifest.type !== 'module') problems.push('"type" is not "module"');
  if (manifest.sideEffects === undefined) problems.push('no "sideEffects"');
  const dot = manifest.exports?.['.'];
  const hasTypes = (entry) =>
    entry !== null &&
    typeof entry === 'object' &&
    (typeof entry.types === 'string' || Object.values(entry).some((value) => hasTypes(value)));
  if (!hasTypes(dot)) problems.push('exports["."] has no "types" condition');
  if (!existsSync(join(REPO, dir, 'README.md'))) problems.push('no README.md');
  return problems.map((problem) => `${manifest.name} (${dir}/package.json): ${problem}`);
}

// ---------------------------------------------------------------------------------------------------
// Steps.

async function buildWorkspace(packages) {
  if (SKIP_BUILD) {
    step('build skipped (--skip-build)');
    return;
  }
  step(`building ${packages.map((p) => p.manifest.name).join(', ')}`);
  const filters = packages.map((p) => `--filter=${p.manifest.name}`);
  await run('pnpm', ['turbo', 'run', 'build', '--output-logs=errors-only', ...filters], {
    cwd: REPO,
    timeoutMs: 900_000,
  });
}

/** A copy of the committed layout plus built outputs, so versioning never touches the working tree. */
function copyRepository(packages, target) {
  const listed = spawnSync('git', ['ls-files', '-z', '--cached'], { cwd: REPO, encoding: 'utf8' });
  if (listed.status !== 0) fail(`git ls-files failed: ${listed.stderr}`);
  let copied = 0;
  for (const file of listed.stdout.split('\0').filter(Boolean)) {
    if (file.startsWith(`release${sep}`) || file.startsWith('release/')) continue;
    const from = join(REPO, file);
    if (!existsSync(from)) continue; // deleted in the working tree, not yet committed
    mkdirSync(dirname(join(target, file)), { recursive: true });
    cpSync(from, join(target, file));
    copied++;
  }
  // Built outputs are ignored by git: copy what each package publishes (its "files").
  for (const { dir, manifest } of packages) {
    for (const entry of manifest.files ?? []) {
      const from = join(REPO, dir, entry);
      if (existsSync(from)) cpSync(from, join(target, dir, entry), { recursive: true });
    }
  }
  // changesets resolves its changelog generator from the repository: borrow the workspace's copy.
  mkdirSync(join(target, 'node_modules', '@changesets'), { recursive: true });
  symlinkSync(
    realpathSync(join(REPO, 'node_modules', '@changesets', 'cli')),
    join(target, 'node_modules', '@changesets', 'cli'),
    'dir',
  );
  linkWorkspaceDependencies(target);
  return copied;
}

/**
 * What `pnpm install` would link for the packages' own workspace dependencies: pnpm publish reads the
 * version behind `workspace:^` from node_modules/<dep>/package.json, and it must be the copy's bumped
 * version, never the working tree's.
 */
function linkWorkspaceDependencies(target) {
  const root = join(target, 'packages');
  const dirs = new Map();
  for (const name of readdirSync(root)) {
    const manifestPath = join(root, name, 'package.json');
    if (existsSync(manifestPath)) dirs.set(readJson(manifestPath).name, join(root, name));
  }
  for (const [name, dir] of dirs) {
    const manifest = readJson(join(dir, 'package.json'));
    if (ONLY !== null && !ONLY.includes(name)) {
      // a partial run must not publish what it did not select
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ ...manifest, private: true }, null, 2));
    }
    const ranges = {
      ...manifest.dependencies,
      ...manifest.devDependencies,
      ...manifest.peerDependencies,
      ...manifest.optionalDependencies,
    };
    for (const [dep, range] of Object.entries(ranges)) {
      if (!String(range).startsWith('workspace:')) continue;
      if (!dirs.has(dep)) fail(`${name} depends on ${dep} (${range}), which is not under packages/`);
      const link = join(dir, 'node_modules', ...dep.split('/'));
      mkdirSync(dirname(link), { recursive: true });
      symlinkSync(relative(dirname(link), dirs.get(dep)), link, 'dir');
    }
  }
}

/** TypeDoc over every package (typedoc.json at the root), into the temp dir: the docs must build. */
async function generateDocs(packages, work) {
  step('typedoc (API docs from TSDoc)');
  const out = join(work, 'api-docs');
  const { output } = await run(join(HERE, 'node_modules', '.bin', 'typedoc'), ['--out', out], {
    cwd: REPO,
    timeoutMs: 300_000,
  });
  const index = join(out, 'index.html');
  if (!existsSync(index)) fail(`typedoc wrote no ${index}:\n${tail(output)}`);
  const html = readFileSync(index, 'utf8');
  const missing = packages.map((p) => p.manifest.name).filter((name) => !html.includes(name));
  if (missing.length > 0) fail(`the API docs have no page for ${missing.join(', ')}:\n${tail(output)}`);
  const warnings = output.match(/Found (\d+) errors? and (\d+) warnings?/)?.[0] ?? 'no summary';
  step(`API docs for ${packages.length} packages (${warnings})`);
}

async function startRegistry(work) {
  const dir = join(work, 'registry');
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  const config = `# generated by release/release-test.mjs; lives only for one run
storage: ${JSON.stringify(join(dir, 'storage'))}
auth:
  htpasswd:
    file: ${JSON.stringify(join(dir, 'htpasswd'))}
    max_users: 1
uplinks:
  npmjs:
    url: ${JSON.stringify(UPLINK)}
    timeout: 60s
    max_fails: 5
packages:
  '@attnkit/*':
    # never proxied: what the test installs must be what it just published
    access: $all
    publish: $authenticated
    unpublish: $authenticated
  '**':
    access: $all
    publish: $authenticated
    proxy: npmjs
server:
  keepAliveTimeout: 60
web:
  enable: false
max_body_size: 200mb
log: { type: stdout, format: pretty, level: warn }
`;
  writeFileSync(join(dir, 'config.yaml'), config);
  const logPath = join(dir, 'verdaccio.log');
  const log = openSync(logPath, 'a');
  const bin = join(HERE, 'node_modules', 'verdaccio', 'bin', 'verdaccio');
  const child = spawn(
    process.execPath,
    [bin, '--config', join(dir, 'config.yaml'), '--listen', `127.0.0.1:${port}`],
    { cwd: dir, stdio: ['ignore', log, log], detached: true },
  );
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  onCleanup('verdaccio', async () => {
    if (exited) return;
    step('stopping verdaccio');
    process.kill(-child.pid, 'SIGTERM');
    const gone = await Promise.race([
      new Promise((r) => child.once('exit', () => r(true))),
      new Promise((r) => setTimeout(() => r(false), 5000)),
    ]);
    if (!gone) process.kill(-child.pid, 'SIGKILL');
  });
  try {
    await waitFor(
      `verdaccio on ${url}`,
      async () => {
        if (exited) fail(`verdaccio exited:\n${tail(readFileSync(logPath, 'utf8'))}`);
        return (await fetch(`${url}-/ping`)).ok;
      },
      60_000,
    );
  } catch (error) {
    if (existsSync(logPath)) console.error(tail(readFileSync(logPath, 'utf8')));
    throw error;
  }
  // A throwaway user: Verdaccio hands back a token that the temp .npmrc files carry.
  const user = `release-test-${process.pid}`;
  const response = await fetch(`${url}-/user/org.couchdb.user:${user}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: user, password: `pw-${Date.now()}-${Math.random()}` }),
  });
  const body = await response.json();
  if (!response.ok || typeof body.token !== 'string') {
    fail(`verdaccio did not create a user: ${response.status} ${JSON.stringify(body)}`);
  }
  return { url, port, token: body.token, logPath };
}

function npmrc(registry) {
  const host = registry.url.replace(/^http:/, '');
  return `registry=${registry.url}\n${host}:_authToken=${registry.token}\n`;
}

/** Environment for npm/pnpm/npx children: the local registry, a private cache, no user config. */
function toolEnv(work, registry) {
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    if (/^npm_(config|package|lifecycle)_/i.test(key) || key === 'INIT_CWD') delete env[key];
  }
  return {
    ...env,
    npm_config_registry: registry.url,
    npm_config_userconfig: join(work, 'npmrc'),
    npm_config_cache: join(work, 'npm-cache'),
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
    npm_config_yes: 'true',
    // pnpm's own store and state stay out of the user's, so a second run starts from the same place
    npm_config_store_dir: join(work, 'pnpm-store'),
    XDG_CACHE_HOME: join(work, 'xdg-cache'),
    COREPACK_ENABLE_STRICT: '0',
  };
}

async function versionAndPublish(packages, repoCopy, work, registry, env) {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', 't');
  const tag = `rt${stamp}`;
  const changeset = join(REPO, 'node_modules', '.bin', 'changeset');
  writeFileSync(join(repoCopy, '.npmrc'), npmrc(registry));
  writeFileSync(join(work, 'npmrc'), npmrc(registry));

  step(`changeset pre enter ${tag}`);
  await run(changeset, ['pre', 'enter', tag], { cwd: repoCopy, env });
  const frontmatter = packages.map((p) => `'${p.manifest.name}': patch`).join('\n');
  writeFileSync(
    join(repoCopy, '.changeset', 'release-test.md'),
    `---\n${frontmatter}\n---\n\nRelease test ${tag}: published to a throwaway local registry.\n`,
  );
  step('changeset version');
  await run(changeset, ['version'], { cwd: repoCopy, env });

  const versions = new Map();
  for (const { dir, manifest } of packages) {
    const after = readJson(join(repoCopy, dir, 'package.json'));
    if (!after.version.includes(`-${tag}.`)) {
      fail(`${manifest.name}: changeset version gave ${after.version}, expected a ${tag} prerelease`);
    }
    const changelog = join(repoCopy, dir, 'CHANGELOG.md');
    if (!existsSync(changelog) || !readFileSync(changelog, 'utf8').includes(after.version)) {
      fail(`${manifest.name}: changeset version did not write ${after.version} into CHANGELOG.md`);
    }
    versions.set(manifest.name, after.version);
  }
  step(`versions: ${[...versions].map(([n, v]) => `${n}@${v}`).join(', ')}`);

  step(`changeset publish (tag ${tag}) to ${registry.url}`);
  const published = await run(changeset, ['publish', '--no-git-tag'], {
    cwd: repoCopy,
    env,
    timeoutMs: 600_000,
  });
  for (const [name, version] of versions) {
    const response = await fetch(`${registry.url}${name.replace('/', '%2f')}`);
    const doc = response.ok ? await response.json() : null;
    if (doc?.versions?.[version] === undefined) {
      fail(`${name}@${version} is not on the local registry after publish:\n${tail(published.output)}`);
    }
    const manifest = doc.versions[version];
    for (const [dep, range] of Object.entries({
      ...manifest.dependencies,
      ...manifest.peerDependencies,
      ...manifest.optionalDependencies,
    })) {
      if (String(range).startsWith('workspace:'))
        fail(`${name}@${version} was published with ${dep}: ${range}`);
    }
  }
  step(`published ${versions.size} packages`);
  await checkTarballs(versions, work, registry);
  return { tag, versions };
}

/** Every string an `exports` map or `bin` points at. */
function exportTargets(value) {
  if (typeof value === 'string') return [value];
  if (value === null || typeof value !== 'object') return [];
  return Object.values(value).flatMap(exportTargets);
}

/** The published tarballs hold what their manifests promise: every export and bin target, docs, license. */
async function checkTarballs(versions, work, registry) {
  const dir = join(work, 'tarballs');
  mkdirSync(dir, { recursive: true });
  const problems = [];
  for (const [name, version] of versions) {
    const doc = await (await fetch(`${registry.url}${name.replace('/', '%2f')}`)).json();
    const manifest = doc.versions[version];
    const file = join(dir, `${name.replace('/', '-')}.tgz`);
    writeFileSync(file, Buffer.from(await (await fetch(manifest.dist.tarball)).arrayBuffer()));
    const listing = spawnSync('tar', ['tzf', file], { encoding: 'utf8' });
    if (listing.status !== 0) fail(`cannot list ${file}: ${listing.stderr}`);
    const entries = new Set(listing.stdout.split('\n').map((entry) => entry.replace(/^package\//, '')));
    const required = ['package.json', 'README.md', 'CHANGELOG.md', 'LICENSE'];
    const targets = [...exportTargets(manifest.exports), ...exportTargets(manifest.bin)];
    for (const target of [...required, ...targets]) {
      const path = target.replace(/^\.\//, '');
      const found = path.includes('*')
        ? [...entries].some((entry) => entry.startsWith(path.slice(0, path.indexOf('*'))))
        : entries.has(path);
      if (!found) problems.push(`${name}@${version}: the tarball has no ${path}`);
    }
    // A bundler or a server needs to reach the kernel binaries through the exports map.
    const exported = exportTargets(manifest.exports).map((target) => target.replace(/^\.\//, ''));
    for (const entry of entries) {
      if (!entry.endsWith('.wasm')) continue;
      const reachable = exported.some((target) =>
        target.includes('*') ? entry.startsWith(target.slice(0, target.indexOf('*'))) : target === entry,
      );
      if (!reachable) problems.push(`${name}@${version}: ${entry} is published but not in the exports map`);
    }
  }
  if (problems.length > 0) fail(`published tarballs are incomplete:\n${problems.join('\n')}`);
  step(`tarballs hold every export and bin target, README, CHANGELOG and LICENSE`);
}

// The case every installed backend must get right, derived by hand (scale 1, D = Dv = 2, Lq = Lk = 2):
//   keys k0 = [1, 0], k1 = [0, 1]; values v0 = [10, 0], v1 = [0, 20]
//   q0 = [ln 3, 0]: scores [ln 3, 0] -> weights [3/4, 1/4] -> out [7.5, 5],   lse ln 4
//   q1 = [0, 0]:    scores [0, 0]    -> weights [1/2, 1/2] -> out [5, 10],    lse ln 2
//   causal: q0 (position 0) sees only k0 -> out [10, 0], lse ln 3; q1 unchanged
// The same source runs in Node and, bundled by Vite, in Chromium.
const CASE_SOURCE = `
export const SHAPE = { batch: 1, queryHeads: 1, queryLength: 2, headDim: 2 };
export const Q = [Math.log(3), 0, 0, 0];
export const K = [1, 0, 0, 1];
export const V = [10, 0, 0, 20];
export const EXPECTED = {
  full: { output: [7.5, 5, 5, 10], lse: [Math.log(4), Math.log(2)] },
  causal: { output: [10, 0, 5, 10], lse: [Math.log(3), Math.log(2)] },
};

/** Runs the hand-derived case on a backend made by a zero-argument factory; returns plain data. */
export async function runCase(name, factory) {
  const backend = await factory();
  try {
    await backend.init();
    const inputs = { q: new Float32Array(Q), k: new Float32Array(K), v: new Float32Array(V), shape: SHAPE };
    const full = await backend.attention(inputs, { scale: 1, returnLse: true });
    const causal = await backend.attention(inputs, { scale: 1, causal: true, returnLse: true });
    let badInput = 'no error';
    try {
      await backend.attention({ ...inputs, q: new Float32Array(3) });
    } catch (error) {
      badInput = error && error.name === 'AttnkitError' ? error.code + ': ' + error.message : String(error);
    }
    return {
      name,
      backend: backend.name,
      engine: backend.capabilities.engine,
      full: { output: Array.from(full.output), lse: Array.from(full.lse ?? []) },
      causal: { output: Array.from(causal.output), lse: Array.from(causal.lse ?? []) },
      badInput,
    };
  } finally {
    await backend.dispose();
  }
}

/** Problems with a runCase result, [] when it matches the hand-derived values. */
export function checkCase(result) {
  const problems = [];
  for (const which of ['full', 'causal']) {
    for (const field of ['output', 'lse']) {
      const want = EXPECTED[which][field];
      const got = result[which][field];
      const ok = got.length === want.length && want.every((w, i) => Math.abs(got[i] - w) <= 1e-5 * Math.max(1, Math.abs(w)));
      if (!ok) problems.push(result.name + ' ' + which + ' ' + field + ': expected ' + JSON.stringify(want) + ', got ' + JSON.stringify(got));
    }
  }
  if (!/^invalid-argument: .*\\bq\\b/.test(result.badInput)) {
    problems.push(result.name + ': a q of the wrong length should throw AttnkitError invalid-argument naming q, got ' + result.badInput);
  }
  return problems;
}
`;

async function checkInNode(scratch, env) {
  writeFileSync(join(scratch, 'attention-case.mjs'), CASE_SOURCE);
  const imports = BACKENDS.map((name, i) => `import factory${i} from '${name}';`).join('\n');
  const calls = BACKENDS.map((name, i) => `await runCase('${name}', factory${i})`).join(', ');
  writeFileSync(
    join(scratch, 'node-check.mjs'),
    `// A user's first script: plain Node ESM against the installed packages.
${imports}
import { runCase, checkCase } from './attention-case.mjs';

const results = [${calls}];
const problems = results.flatMap(checkCase);
${
  BACKENDS.includes('@attnkit/wasm')
    ? `// the kernel binary is an exported asset: a server or bundler can resolve it by name
const { existsSync } = await import('node:fs');
const { fileURLToPath } = await import('node:url');
const wasmAsset = fileURLToPath(import.meta.resolve('@attnkit/wasm/wasm/attnkit.wasm'));
if (!existsSync(wasmAsset)) problems.push('@attnkit/wasm/wasm/attnkit.wasm resolves to a missing ' + wasmAsset);
else console.log('@attnkit/wasm/wasm/attnkit.wasm resolves to ' + wasmAsset);`
    : ''
}
for (const r of results) console.log(r.name + ' (' + r.engine + '): ' + JSON.stringify(r.full.output) + ' causal ' + JSON.stringify(r.causal.output));
if (problems.length > 0) {
  console.error(problems.join('\\n'));
  process.exit(1);
}
console.log('node check: ' + results.length + ' backends match the hand-derived values');
`,
  );
  step('node: plain ESM script computing attention with the installed backends');
  const { output } = await run('node', ['node-check.mjs'], { cwd: scratch, env, timeoutMs: 120_000 });
  console.log(output.trimEnd().replace(/^/gm, '    '));
}

async function checkConformanceCli(scratch, env) {
  step(`npx attnkit-conformance ${CONFORMANCE_TARGET}`);
  const { code, output } = await run('npx', ['attnkit-conformance', CONFORMANCE_TARGET], {
    cwd: scratch,
    env,
    timeoutMs: 600_000,
    allowFailure: true,
  });
  const summary = output.match(/(\d+) passed, (\d+) failed/g)?.at(-1);
  console.log(tail(output, 8).replace(/^/gm, '    '));
  if (code !== 0) fail(`attnkit-conformance exited with ${code}:\n${tail(output)}`);
  const [, passed, failed] = summary?.match(/(\d+) passed, (\d+) failed/) ?? [];
  if (summary === undefined || Number(failed) !== 0 || Number(passed) === 0) {
    fail(
      `attnkit-conformance did not end with "N passed, 0 failed" (N > 0): ${summary ?? 'no summary line'}`,
    );
  }
}

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.map': 'application/json',
};

function serveStatic(root, served) {
  return new Promise((resolvePromise, reject) => {
    const server = createServer((request, response) => {
      const path = decodeURIComponent(new URL(request.url, 'http://x').pathname);
      served.push(path);
      const file = resolve(root, `.${path.endsWith('/') ? `${path}index.html` : path}`);
      if (relative(root, file).startsWith('..') || !existsSync(file)) {
        response.writeHead(404).end('not found');
        return;
      }
      response.writeHead(200, {
        'content-type': MIME[extname(file)] ?? 'application/octet-stream',
        // cross-origin isolation, so a backend may use SharedArrayBuffer/workers if it wants to
        'cross-origin-opener-policy': 'same-origin',
        'cross-origin-embedder-policy': 'require-corp',
      });
      response.end(readFileSync(file));
    });
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => resolvePromise(server));
  });
}

async function checkInBrowser(scratch, env) {
  step(`npm install vite@${VITE_VERSION} (through the registry's uplink)`);
  await run('npm', ['install', '--save-dev', `vite@${VITE_VERSION}`], {
    cwd: scratch,
    env,
    timeoutMs: 600_000,
  });
  const web = join(scratch, 'web');
  mkdirSync(web, { recursive: true });
  writeFileSync(join(web, 'attention-case.js'), CASE_SOURCE);
  writeFileSync(
    join(web, 'index.html'),
    `<!doctype html>
<html lang="en">
  <head><meta charset="utf-8" /><title>attnkit release test</title></head>
  <body>
    <pre id="result">running</pre>
    <script type="module" src="./main.js"></script>
  </body>
</html>
`,
  );
  const imports = BACKENDS.map((name, i) => `import factory${i} from '${name}';`).join('\n');
  const calls = BACKENDS.map((name, i) => `await runCase('${name}', factory${i})`).join(', ');
  const target = BACKENDS.indexOf(CONFORMANCE_TARGET);
  // The conformance runner is meant to be browser-safe: run part of it in the page too.
  const conformanceCall = WITH_CONFORMANCE
    ? `(await import('@attnkit/conformance')).runConformance(factory${target}, { filter: '${BROWSER_CONFORMANCE_FILTER}', seed: 1 }).then((r) => ({ target: '${CONFORMANCE_TARGET}', totals: r.totals, failures: r.cases.filter((c) => c.status === 'failed').map((c) => c.id + ': ' + c.message) }))`
    : 'null';
  writeFileSync(
    join(web, 'main.js'),
    `${imports}
import { runCase } from './attention-case.js';

const element = document.getElementById('result');
try {
  const results = { cases: [${calls}], conformance: await ${conformanceCall} };
  element.textContent = JSON.stringify(results);
  element.dataset.status = 'done';
} catch (error) {
  element.textContent = String(error && error.stack ? error.stack : error);
  element.dataset.status = 'error';
}
`,
  );
  writeFileSync(
    join(scratch, 'vite.config.mjs'),
    `export default { root: 'web', base: './', logLevel: 'warn', build: { outDir: '../dist', emptyOutDir: true, target: 'es2022' } };\n`,
  );
  step('vite build of a page importing the installed packages');
  await run(join(scratch, 'node_modules', '.bin', 'vite'), ['build', '--config', 'vite.config.mjs'], {
    cwd: scratch,
    env,
    timeoutMs: 300_000,
  });
  const dist = join(scratch, 'dist');
  const served = [];
  const server = await serveStatic(dist, served);
  onCleanup('static server', () => new Promise((r) => server.close(() => r())));
  const pageUrl = `http://127.0.0.1:${server.address().port}/index.html`;

  step(`headless chromium on ${pageUrl}`);
  const { chromium } = await import(join(HERE, 'node_modules', 'playwright-core', 'index.mjs'));
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
  onCleanup('chromium', () => browser.close());
  const page = await browser.newPage();
  const logs = [];
  page.on('console', (message) => logs.push(`console.${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => logs.push(`pageerror: ${error.message}`));
  page.on('requestfailed', (request) => logs.push(`requestfailed: ${request.url()}`));
  await page.goto(pageUrl);
  try {
    await page.waitForSelector('#result[data-status]', { timeout: 120_000 });
  } catch {
    fail(`the page never finished:\n${logs.join('\n')}`);
  }
  const status = await page.getAttribute('#result', 'data-status');
  const text = await page.textContent('#result');
  if (status !== 'done') fail(`the page failed: ${text}\n${logs.join('\n')}`);
  const { checkCase } = await import(`file://${join(web, 'attention-case.js')}`);
  const { cases: results, conformance } = JSON.parse(text);
  const problems = results.flatMap(checkCase);
  for (const r of results)
    console.log(`    ${r.name} in chromium (${r.engine}): ${JSON.stringify(r.full.output)}`);
  if (conformance !== null) {
    const { totals, failures, target } = conformance;
    console.log(
      `    runConformance(${target}, '${BROWSER_CONFORMANCE_FILTER}') in chromium: ${JSON.stringify(totals)}`,
    );
    if (totals.failed !== 0 || totals.passed === 0) {
      problems.push(`conformance in the browser: ${JSON.stringify(totals)}\n${failures.join('\n')}`);
    }
  }
  if (problems.length > 0) fail(`wrong results in the browser:\n${problems.join('\n')}`);
  // the wasm backend really ran its kernel, bundled as an asset, rather than anything else
  if (BACKENDS.includes('@attnkit/wasm') && !served.some((path) => path.endsWith('.wasm'))) {
    fail(`the page never fetched a .wasm file; served: ${served.join(', ')}`);
  }
  step(`browser check: ${results.length} backends match the hand-derived values`);
}

/** The compilers a user's strict build is checked with (6, 7: WebGPU types from lib "dom"; 5: from @webgpu/types). */
const USER_TYPESCRIPTS = [
  'typescript@6.0.3',
  'typescript-5.9@npm:typescript@5.9.3',
  'typescript-7@npm:typescript@7.0.2',
];
const WEBGPU_NODE = 'webgpu@0.6.2';
const WEBGPU_ENV = {
  VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES ?? '/usr/lib/chromium/vk_swiftshader_icd.json',
  LD_LIBRARY_PATH: [process.env.LD_LIBRARY_PATH, '/usr/lib/chromium'].filter(Boolean).join(':'),
};

// A strict TypeScript user file over every backend: compiled with --strict --module nodenext and no
// skipLibCheck (the published declarations must be complete: GPUBuffer is not `any`, lse is a
// Float32Array when returnLse is true), then run in Node (webgpu on Dawn + SwiftShader).
const USER_SOURCE = `import { createCpuBackend } from '@attnkit/cpu';
import { type AttentionBackend, type AttentionResult, isAttnkitError } from '@attnkit/spec';
import { createWasmBackend } from '@attnkit/wasm';
import { createWebglBackend } from '@attnkit/webgl';
import { createWebGpuBackend, type GpuTensor, type WebGpuBackend } from '@attnkit/webgpu';

const shape = { batch: 1, queryHeads: 2, kvHeads: 1, queryLength: 3, keyLength: 5, headDim: 4 };
const q = new Float32Array(2 * 3 * 4).map((_, i) => Math.sin(i));
const k = new Float32Array(5 * 4).map((_, i) => Math.cos(i));
const v = new Float32Array(5 * 4).map((_, i) => i / 10);

async function attend(backend: AttentionBackend): Promise<Float32Array> {
  const { output, lse } = await backend.attention({ q, k, v, shape }, { causal: true, returnLse: true });
  const rows: number = lse.length; // no undefined check: returnLse is true
  if (rows !== 2 * 3 || output.length !== 2 * 3 * 4) throw new Error(backend.name + ': wrong result sizes');
  await backend.dispose();
  return output;
}

function typesOnly(plain: AttentionResult, gpu: WebGpuBackend): void {
  // @ts-expect-error without returnLse, lse may be undefined
  const lse: Float32Array = plain.lse;
  // @ts-expect-error GPUBuffer is WebGPU's type, not any
  const buffer: GPUBuffer = 5;
  const device: GPUDevice = gpu.device;
  void [lse, buffer, device];
}
void typesOnly;

const cpu = await attend(createCpuBackend());
const others = { wasm: await attend(createWasmBackend({ threads: 2 })), webgpu: await attend(createWebGpuBackend()) };
for (const [name, output] of Object.entries(others)) {
  const worst = Math.max(...output.map((x, i) => Math.abs(x - cpu[i])));
  if (!(worst <= 1e-4)) throw new Error(name + ' differs from cpu by ' + worst);
}

const gpu = createWebGpuBackend();
const uploaded: GpuTensor = await gpu.upload(q);
const uploadedBuffer: GPUBuffer = uploaded.buffer;
const back: Float32Array = await gpu.read(uploaded);
void uploadedBuffer;
gpu.release(uploaded);
await gpu.dispose();
if (back.some((x, i) => x !== q[i])) throw new Error('webgpu: upload/read round trip changed the data');

// No GL context in Node: init rejects with 'unavailable' (a browser runs it).
const webgl = createWebglBackend();
const webglInit = await webgl.init().then(
  () => 'ran',
  (error: unknown) => (isAttnkitError(error) ? error.code : String(error)),
);
if (webglInit !== 'unavailable' && webglInit !== 'ran') throw new Error('webgl init: ' + webglInit);
await webgl.dispose();
console.log('strict user file: cpu, wasm, webgpu agree; webgl init ' + webglInit);
`;

async function checkEveryBackendInstalledTogether(work, registry, env, versions) {
  const user = join(work, 'user');
  mkdirSync(user);
  writeFileSync(join(user, '.npmrc'), npmrc(registry));
  await run('npm', ['init', '-y'], { cwd: user, env });
  const pkg = readJson(join(user, 'package.json'));
  writeFileSync(join(user, 'package.json'), JSON.stringify({ ...pkg, type: 'module' }, null, 2));
  const at = (name) => `${name}@${versions.get(name)}`;
  // webgl (gpu.js pulls webgpu@0.2.9) and webgpu together, with webgpu@0.6.2 listed as the READMEs
  // say; then another install, which is where npm used to drop a peer-only webgpu as extraneous.
  const together = [at('@attnkit/spec'), at('@attnkit/webgl'), at('@attnkit/webgpu'), WEBGPU_NODE];
  step(`npm install --save-exact ${together.join(' ')}`);
  await run('npm', ['install', '--save-exact', ...together], { cwd: user, env, timeoutMs: 600_000 });
  const later = [at('@attnkit/cpu'), at('@attnkit/wasm'), ...USER_TYPESCRIPTS];
  step(`then npm install ${later.join(' ')}`);
  await run('npm', ['install', '--save-exact', ...later], { cwd: user, env, timeoutMs: 600_000 });
  const webgpu = join(user, 'node_modules', 'webgpu', 'package.json');
  if (!existsSync(webgpu) || readJson(webgpu).version !== '0.6.2') {
    fail(
      `node_modules/webgpu is not 0.6.2 after a later install: ${existsSync(webgpu) ? readJson(webgpu).version : 'missing'}`,
    );
  }
  const { output: tree } = await run('npm', ['ls', 'webgpu', '--all'], {
    cwd: user,
    env,
    allowFailure: true,
  });
  console.log(tree.trimEnd().replace(/^/gm, '    '));
  if (/extraneous|invalid|missing/.test(tree)) fail(`npm ls webgpu reports a problem:\n${tree}`);

  writeFileSync(join(user, 'user.mts'), USER_SOURCE);
  const strict = ['--strict', '--module', 'nodenext'];
  for (const [label, bin] of [
    ['TypeScript 6.0.3', join(user, 'node_modules', 'typescript', 'bin', 'tsc')],
    ['TypeScript 5.9.3', join(user, 'node_modules', 'typescript-5.9', 'bin', 'tsc')],
    ['TypeScript 7.0.2 (native)', join(user, 'node_modules', 'typescript-7', 'bin', 'tsc')],
  ]) {
    step(`${label}: tsc --strict --module nodenext --noEmit user.mts (no skipLibCheck)`);
    await run('node', [bin, ...strict, '--noEmit', 'user.mts'], { cwd: user, env, timeoutMs: 180_000 });
  }
  await run(
    'node',
    [join(user, 'node_modules', 'typescript', 'bin', 'tsc'), ...strict, '--outDir', 'out', 'user.mts'],
    {
      cwd: user,
      env,
      timeoutMs: 180_000,
    },
  );
  step('node out/user.mjs (cpu, wasm, webgpu on Dawn; webgl init)');
  const { output } = await run('node', ['out/user.mjs'], {
    cwd: user,
    env: { ...env, ...WEBGPU_ENV },
    timeoutMs: 180_000,
  });
  console.log(output.trimEnd().replace(/^/gm, '    '));
}

// ---------------------------------------------------------------------------------------------------

async function main() {
  await ensureHarnessDependencies();
  const packages = publishablePackages();
  if (ONLY !== null)
    console.warn(`release-test: PARTIAL run, only ${ONLY.join(', ')} (ATTNKIT_RELEASE_ONLY)`);
  const installs = WITH_CONFORMANCE ? [...BACKENDS, '@attnkit/conformance'] : BACKENDS;
  const problems = packages.flatMap(checkManifest);
  for (const name of installs) {
    if (!packages.some((p) => p.manifest.name === name))
      problems.push(`${name}: no such package under packages/`);
  }
  if (problems.length > 0) fail(`package manifests are not publishable:\n${problems.join('\n')}`);

  await buildWorkspace(packages);

  const work = mkdtempSync(join(tmpdir(), 'attnkit-release-'));
  onCleanup('temp dir', () => {
    if (KEEP) console.log(`release-test: kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  });
  step(`working in ${work}`);
  const repoCopy = join(work, 'repo');
  const copied = copyRepository(packages, repoCopy);
  step(`copied ${copied} tracked files and the built packages`);

  await generateDocs(packages, work);

  const registry = await startRegistry(work);
  step(`verdaccio listening on ${registry.url}`);
  const env = toolEnv(work, registry);
  const { versions } = await versionAndPublish(packages, repoCopy, work, registry, env);

  const scratch = join(work, 'scratch');
  mkdirSync(scratch);
  writeFileSync(join(scratch, '.npmrc'), npmrc(registry));
  await run('npm', ['init', '-y'], { cwd: scratch, env });
  const pkg = readJson(join(scratch, 'package.json'));
  writeFileSync(join(scratch, 'package.json'), JSON.stringify({ ...pkg, type: 'module' }, null, 2));
  const wanted = installs.map((name) => `${name}@${versions.get(name)}`);
  step(`npm install ${wanted.join(' ')}`);
  await run('npm', ['install', ...wanted], { cwd: scratch, env, timeoutMs: 600_000 });
  for (const name of [...installs, '@attnkit/spec']) {
    const installed = readJson(join(scratch, 'node_modules', ...name.split('/'), 'package.json'));
    if (installed.version !== versions.get(name)) {
      fail(`${name}: installed ${installed.version}, expected the just-published ${versions.get(name)}`);
    }
  }

  await checkInNode(scratch, env);
  if (WITH_CONFORMANCE) await checkConformanceCli(scratch, env);
  await checkInBrowser(scratch, env);
  if (ONLY === null) await checkEveryBackendInstalledTogether(work, registry, env, versions);
  step(ONLY === null ? 'release test passed' : 'PARTIAL release test run finished (not the release test)');
}

let exitCode = 0;
try {
  await main();
} catch (error) {
  exitCode = 1;
  console.error(`\nrelease-test FAILED: ${error instanceof StepError ? error.message : error?.stack}`);
} finally {
  await cleanup();
}
process.exit(exitCode);
