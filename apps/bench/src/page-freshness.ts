/**
 * Whether the bench page is older than the packages it bundles. The page is a Vite build of the
 * workspace packages' `dist`, made by `pnpm build`; rebuilding a package (say `@attnkit/webgpu`
 * after a kernel change) without rebuilding the page leaves the browser rows measuring the old
 * code under the new code's name, with nothing in the figures to show it.
 */
import { type Dirent, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

/** The newest modification time (ms) of the `.js` files under `dir`, or `null` if it has none. */
export function newestJsMtime(dir: string): number | null {
  let newest: number | null = null;
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return null;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    const time = entry.isDirectory()
      ? newestJsMtime(full)
      : entry.isFile() && entry.name.endsWith('.js')
        ? statSync(full).mtimeMs
        : null;
    if (time !== null && (newest === null || time > newest)) newest = time;
  }
  return newest;
}

/**
 * A warning naming every package under `packagesDir` whose `dist` has a `.js` file newer than the
 * page's `index.html`, or `null` when the page is at least as new as all of them (or not built:
 * the browser part reports that itself).
 */
export function stalePageWarning(pageIndex: string, packagesDir: string): string | null {
  let built: number;
  try {
    built = statSync(pageIndex).mtimeMs;
  } catch {
    return null;
  }
  let names: string[];
  try {
    names = readdirSync(packagesDir).sort();
  } catch {
    return null;
  }
  const newer = names.filter((name) => {
    const time = newestJsMtime(path.join(packagesDir, name, 'dist'));
    return time !== null && time > built;
  });
  if (newer.length === 0) return null;
  return `the bench page (${pageIndex}) is older than the build of ${newer.join(', ')}: its browser rows would time the code it was built from; run pnpm --filter @attnkit/bench build`;
}
